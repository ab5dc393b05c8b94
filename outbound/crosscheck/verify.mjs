// Cross-check of partnerhub's outbound signatures with the Standard
// Webhooks reference library for JavaScript, the npm package
// standardwebhooks. Run by TestRotationCrossCheck (outbound/api_test.go);
// install first with `npm ci` here.
//
// stdin:  {"cases": [{"secret": "whsec_...", "body": "<raw body>",
//          "headers": {"webhook-id": ..., "webhook-timestamp": ...,
//          "webhook-signature": ...}}]}
// stdout: {"results": [{"valid": true|false, "error": "...", "id": "...",
//          "signature": "v1,..."}]}, one result per case, in order.
//
// valid is whether Webhook(secret).verify(body, headers) accepts the
// delivery (the library also checks that the timestamp is within five
// minutes of now); id is the envelope id it returns; signature is the
// library's own signature of the case's webhook-id, webhook-timestamp and
// body (for the specification's test vector, whose timestamp is too old to
// verify). Neither secrets nor bodies are ever printed.
import {Webhook} from 'standardwebhooks';

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) {
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

const input = JSON.parse(await readStdin());
if (!Array.isArray(input.cases)) {
  throw new Error('stdin must be {"cases": [...]}');
}

const results = [];
for (const c of input.cases) {
  const wh = new Webhook(c.secret);
  const headers = c.headers ?? {};
  const ts = parseInt(headers['webhook-timestamp'] ?? '0', 10);
  const signature = wh.sign(headers['webhook-id'] ?? '', new Date(ts * 1000), c.body);
  try {
    const payload = wh.verify(c.body, headers);
    results.push({valid: true, error: '', id: payload?.id ?? '', signature});
  } catch (err) {
    results.push({valid: false, error: String(err?.message ?? err), id: '', signature});
  }
}
process.stdout.write(JSON.stringify({results}) + '\n');
