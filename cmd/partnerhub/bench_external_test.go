package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/partnerhub/partnerhub/connectors"
	"github.com/partnerhub/partnerhub/hub"
)

// readTargets reads the vegeta targets the bench wrote.
func readTargets(t *testing.T, path string) []vegetaTarget {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []vegetaTarget
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var tg vegetaTarget
		if err := json.Unmarshal(sc.Bytes(), &tg); err != nil {
			t.Fatalf("line %d: %v", len(out)+1, err)
		}
		out = append(out, tg)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// readRawRequests reads path+".wrk": each request after a line with its
// length.
func readRawRequests(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path + ".wrk")
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for len(b) > 0 {
		line, rest, ok := bytes.Cut(b, []byte("\n"))
		n, err := strconv.Atoi(string(line))
		if !ok || err != nil || n > len(rest) {
			t.Fatalf("request %d: bad length line %q", len(out)+1, line)
		}
		out = append(out, rest[:n])
		b = rest[n:]
	}
	return out
}

// TestBenchRequestsOut: the bench writes signed sales for another load
// generator, in vegeta's format and as raw requests for wrk that say the
// same, and measures the hub while something else sends them: the sales
// it expects are those the hub accepted.
func TestBenchRequestsOut(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	h := startHub(t, testEnv(t), Options{})
	path := filepath.Join(t.TempDir(), "sales.jsonl")
	var out, errb bytes.Buffer
	cmd := newRootCmd(func(string) string { return "" }, &out, &errb)
	cmd.SetArgs([]string{"bench", "--url", h.base, "--key", testAdminKey, "-o", "json",
		"--hub-pid", strconv.Itoa(os.Getpid()), "--drain-timeout", "30s",
		"--events", "40", "--requests-out", path})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("bench ended before writing the requests: %v\n%s", err, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the requests file did not appear")
		}
		time.Sleep(20 * time.Millisecond)
	}
	targets := readTargets(t, path)
	raws := readRawRequests(t, path)
	if len(targets) != 40 || len(raws) != 40 {
		t.Fatalf("%d targets and %d raw requests, want 40 of each", len(targets), len(raws))
	}
	for i, tg := range targets {
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raws[i])))
		if err != nil {
			t.Fatalf("raw request %d: %v", i+1, err)
		}
		body, _ := io.ReadAll(req.Body)
		if req.Method != tg.Method || "http://"+req.Host+req.URL.RequestURI() != tg.URL || !bytes.Equal(body, tg.Body) {
			t.Errorf("raw request %d: %s %s%s (%d bytes) differs from the target %s %s (%d bytes)",
				i+1, req.Method, req.Host, req.URL, len(body), tg.Method, tg.URL, len(tg.Body))
		}
		for k, v := range tg.Header {
			if got := req.Header.Values(k); strings.Join(got, ",") != strings.Join(v, ",") {
				t.Errorf("raw request %d: %s: %q, want %q", i+1, k, got, v)
			}
		}
	}

	// Another tool sends 30 of the 40, in two bursts, and one of them
	// twice.
	send := func(tg vegetaTarget) {
		req, err := http.NewRequest(tg.Method, tg.URL, bytes.NewReader(tg.Body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header = tg.Header
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("the hub answered %s", resp.Status)
		}
	}
	for _, tg := range targets[:15] {
		send(tg)
	}
	time.Sleep(500 * time.Millisecond)
	for _, tg := range targets[15:30] {
		send(tg)
	}
	send(targets[3])

	if err := <-done; err != nil {
		t.Fatalf("bench: %v\n%s", err, errb.String())
	}
	var rep benchReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("bench -o json printed %q: %v", out.String(), err)
	}
	b, _ := json.MarshalIndent(rep, "", " ")
	t.Logf("%s", b)
	if rep.Mode != "external" || rep.Written != 40 || rep.Sent != 31 || rep.Accepted != 30 ||
		rep.Inbound["accepted"] != 30 || rep.Inbound["duplicate"] != 1 || len(rep.Inbound) != 2 {
		t.Errorf("mode %q, written %d, sent %d, accepted %d, outcomes %v; want external, 40 written, 31 received, 30 accepted, 1 duplicate",
			rep.Mode, rep.Written, rep.Sent, rep.Accepted, rep.Inbound)
	}
	if rep.Completed != 30 || rep.DeliveriesReceived != 60 || rep.DeliveriesExpected != 60 || rep.Missing != 0 ||
		rep.Duplicates != 0 || rep.BadSignatures != 0 || rep.Unmatched != 0 || !rep.Pass {
		t.Errorf("completed %d, deliveries %d of %d, missing %d, duplicates %d, bad signatures %d, unmatched %d, pass %v",
			rep.Completed, rep.DeliveriesReceived, rep.DeliveriesExpected, rep.Missing, rep.Duplicates, rep.BadSignatures, rep.Unmatched, rep.Pass)
	}
	if !(rep.AcceptedPerSec > 0) || !(rep.SendSeconds > 0) || !(rep.CPUPerConversion > 0) || !(rep.SQLPerConversion > 0) || !(rep.DeliveriesPerSec > 0) {
		t.Errorf("accepted/s %v over %vs, CPU per conversion %v, SQL per conversion %v, deliveries/s %v: want all measured",
			rep.AcceptedPerSec, rep.SendSeconds, rep.CPUPerConversion, rep.SQLPerConversion, rep.DeliveriesPerSec)
	}
	if !strings.Contains(errb.String(), "-s "+path+".wrk.lua") || !strings.Contains(errb.String(), "bench: accepted ") {
		t.Errorf("stderr does not show how to send the requests and the progress: %q", errb.String())
	}
}

// TestBenchWrkScript runs the wrk script the bench writes, in a Lua
// interpreter with wrk's calls: two threads share the requests, each sent
// once in order (wrk's check of the first thread's request before the run
// is not one of them); a thread whose share is sent idles its
// connections.
func TestBenchWrkScript(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sales.jsonl")
	src := &hub.Source{ID: "src_wrk", ProgramID: hub.DefaultProgramID, Provider: "stripe", Secret: "whsec_" + strings.Repeat("cd", 16)}
	target := benchTarget{base: "http://127.0.0.1:8080", setup: &benchSetup{source: src, codes: []string{"a", "b"}},
		event: connectors.SampleEvents("stripe")[0]}
	if err := writeBenchRequests(path, target, newBenchTracker(7, 1, time.Now()), 7); err != nil {
		t.Fatal(err)
	}
	raws := readRawRequests(t, path)
	index := map[string]int{}
	for k, r := range raws {
		index[string(r)] = k + 1
	}

	// wrk calls setup(thread) in its main script state for each thread
	// before the thread's init.
	const threads = 2
	globals := make([]map[string]lua.LValue, threads)
	main := lua.NewState()
	defer main.Close()
	if err := main.DoFile(path + ".wrk.lua"); err != nil {
		t.Fatal(err)
	}
	for i := range threads {
		globals[i] = map[string]lua.LValue{}
		thread := main.NewTable()
		thread.RawSetString("set", main.NewFunction(func(L *lua.LState) int {
			globals[i][L.CheckString(2)] = L.Get(3)
			return 0
		}))
		if err := main.CallByParam(lua.P{Fn: main.GetGlobal("setup"), Protect: true}, thread); err != nil {
			t.Fatal(err)
		}
	}

	sent := map[string]int{}
	for i := range threads {
		L := lua.NewState()
		defer L.Close()
		if err := L.DoFile(path + ".wrk.lua"); err != nil {
			t.Fatal(err)
		}
		// wrk.format as wrk defines it, enough for the health check.
		if err := L.DoString(`wrk = { format = function(method, path) return method .. " " .. path end }`); err != nil {
			t.Fatal(err)
		}
		for k, v := range globals[i] {
			L.SetGlobal(k, v)
		}
		args := L.NewTable()
		args.RawSetInt(0, lua.LString("http://127.0.0.1:8080"))
		args.RawSetInt(1, lua.LString(path+".wrk"))
		args.RawSetInt(2, lua.LString(strconv.Itoa(threads)))
		if err := L.CallByParam(lua.P{Fn: L.GetGlobal("init"), Protect: true}, args); err != nil {
			t.Fatalf("thread %d init: %v", i, err)
		}
		call := func(name string) lua.LValue {
			t.Helper()
			if err := L.CallByParam(lua.P{Fn: L.GetGlobal(name), NRet: 1, Protect: true}); err != nil {
				t.Fatalf("thread %d %s: %v", i, name, err)
			}
			v := L.Get(-1)
			L.Pop(1)
			return v
		}
		if i == 0 {
			// wrk checks that the first thread's request parses, once,
			// before the run.
			if got := call("request").String(); got != string(raws[0]) {
				t.Errorf("the check got %.40q, want the first request", got)
			}
		}
		// Thread i sends requests i, i+2, i+4, ...
		for k := i; k < len(raws); k += threads {
			if d := call("delay"); d.String() != "0" {
				t.Errorf("thread %d: delay %s before request %d, want 0", i, d, k+1)
			}
			got := call("request").String()
			if got != string(raws[k]) {
				t.Errorf("thread %d sent %.40q (request %d of the file, 0 for none) in the place of request %d", i, got, index[got], k+1)
			}
			sent[got]++
		}
		if d := call("delay"); d.String() != "3600000" {
			t.Errorf("thread %d: delay %s once its share is sent, want an hour", i, d)
		}
		if got := call("request").String(); got != "GET /healthz" {
			t.Errorf("thread %d: request %q beyond its share, want the health check", i, got)
		}
	}
	for k, r := range raws {
		if sent[string(r)] != 1 {
			t.Errorf("request %d sent %d times, want once", k+1, sent[string(r)])
		}
	}

	// More threads than named after the file: init refuses.
	L := lua.NewState()
	defer L.Close()
	if err := L.DoFile(path + ".wrk.lua"); err != nil {
		t.Fatal(err)
	}
	L.SetGlobal("share_index", lua.LNumber(1))
	args := L.NewTable()
	args.RawSetInt(1, lua.LString(path+".wrk"))
	err := L.CallByParam(lua.P{Fn: L.GetGlobal("init"), Protect: true}, args)
	if err == nil || !strings.Contains(err.Error(), "pass wrk's -t") {
		t.Errorf("thread 2 of a run that named no thread count: %v, want a refusal", err)
	}
}
