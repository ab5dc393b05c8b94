-- Sends the signed webhooks that `partnerhub bench --requests-out FILE`
-- wrote, each once, shared out among wrk's threads:
--
--   wrk -t2 -c64 -d20s -s FILE.wrk.lua http://127.0.0.1:8080 -- FILE.wrk 2
--
-- FILE.wrk holds the requests as they go on the wire, each after a line
-- with its length in bytes. The number after it is wrk's -t (1 when left
-- out): thread k of T sends requests k, k+T, k+2T, ... A thread whose share
-- is sent leaves its connections idle until -d ends: write more webhooks
-- than the run can send (the bench expects only those the hub accepted),
-- and read the hub's rate from the bench's report.

local setups = 0

-- setup runs in wrk's main script state just before each thread's init:
-- it numbers the threads.
function setup(thread)
  thread:set("share_index", setups)
  setups = setups + 1
end

-- checked is false on the first thread until wrk has made the one call
-- of request() that checks the request parses, before the run: that call
-- is given the first request without counting it as sent.
local requests, sent, checked = {}, 0, true

-- init reads the thread's share; args[0] is the URL.
function init(args)
  local file, count = args[1], tonumber(args[2] or "1")
  if file == nil or count == nil or count < 1 then
    error("name the requests file and wrk's -t after --: wrk -tT ... -s FILE.wrk.lua URL -- FILE.wrk T")
  end
  local index = share_index or 0
  checked = index ~= 0
  if index >= count then
    error("wrk runs more threads than the " .. count .. " named after the file: pass wrk's -t after it")
  end
  local f = assert(io.open(file, "rb"))
  local n = 0
  while true do
    local line = f:read("*l")
    if line == nil then
      break
    end
    local size = tonumber(line)
    if size == nil then
      error(file .. ": request " .. (n + 1) .. " has no length line")
    end
    if n % count == index then
      local r = f:read(size)
      if r == nil or #r ~= size then
        error(file .. ": request " .. (n + 1) .. " is cut short")
      end
      requests[#requests + 1] = r
    else
      f:seek("cur", size)
    end
    n = n + 1
  end
  f:close()
end

-- delay holds a connection for an hour once the thread's share is sent
-- (wrk asks before every request, a connection's first included).
function delay()
  if sent < #requests then
    return 0
  end
  return 3600000
end

-- request hands out the thread's share in order; past it (only if wrk
-- did not wait as delay asks), the hub's health check.
function request()
  if not checked then
    checked = true
    return requests[1] or wrk.format("GET", "/healthz", {}, nil)
  end
  sent = sent + 1
  return requests[sent] or wrk.format("GET", "/healthz", {}, nil)
end
