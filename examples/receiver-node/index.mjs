// Receives partnerhub's webhooks: verifies each delivery's Standard
// Webhooks signature with the npm package standardwebhooks, refuses bad
// ones with 400, skips deliveries it has already seen (same webhook-id) and
// answers 200 at once, leaving the work to a queue.
//
//   WEBHOOK_SECRET=whsec_… PORT=4000 node index.mjs
import http from 'node:http';
import {Webhook} from 'standardwebhooks';

const MAX_BODY = 1 << 20; // partnerhub's events are a few kilobytes

const secret = process.env.WEBHOOK_SECRET ?? '';
const port = Number(process.env.PORT ?? 4000);
const host = process.env.HOST; // all interfaces unless set

let wh;
try {
  if (!secret) throw new Error('no secret');
  wh = new Webhook(secret);
} catch (err) {
  console.error(`WEBHOOK_SECRET must be the endpoint's whsec_… signing secret (${err.message})`);
  process.exit(2);
}

// The last SEEN_MAX webhook ids. A production receiver keeps them in its
// database (a unique index on the event id) so restarts and several
// replicas agree: partnerhub retries a delivery for more than a day, and an
// operator may replay an event, with the same id, any time.
const SEEN_MAX = 100_000;
const seen = new Set();

function firstSeen(id) {
  if (seen.has(id)) return false;
  seen.add(id);
  if (seen.size > SEEN_MAX) seen.delete(seen.values().next().value);
  return true;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new Error('body too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function answer(res, status, text) {
  res.writeHead(status, {'content-type': 'text/plain; charset=utf-8'});
  res.end(text ? text + '\n' : undefined);
}

const server = http.createServer(async (req, res) => {
  if (req.method !== 'POST') {
    res.setHeader('allow', 'POST');
    return answer(res, 405, 'use POST');
  }
  let body;
  try {
    body = await readBody(req);
  } catch {
    return answer(res, 400, 'body too large or unreadable');
  }
  let event;
  try {
    // verify() checks the signature over webhook-id, webhook-timestamp and
    // the raw body, and that the timestamp is within five minutes; it
    // returns the parsed JSON.
    event = wh.verify(body, req.headers);
  } catch (err) {
    console.warn(`webhook refused: ${err.message}`);
    return answer(res, 400, 'invalid signature');
  }
  if (!event || typeof event.id !== 'string' || !event.id) {
    return answer(res, 400, 'not a partnerhub event');
  }
  // webhook-id is the event id, the same on every retry: a delivery seen
  // before was handled already.
  if (!firstSeen(req.headers['webhook-id'])) {
    console.log(`duplicate webhook ignored: ${event.type} ${event.id}`);
    return answer(res, 200);
  }
  console.log(`webhook received: ${event.type} ${event.id}`);
  // Answer now; real work (updating a CRM, paying a partner) belongs in a
  // queue fed from here, so partnerhub never waits on it.
  return answer(res, 200);
});

server.listen(port, host, () => {
  const a = server.address();
  console.log(`listening for partnerhub webhooks on ${a.address}:${a.port}`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
