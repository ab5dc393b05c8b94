// Cross-check of partnerhub's Shopify webhook verification with Shopify's
// own library, @shopify/shopify-api. Run by TestShopifyCrossCheck
// (connectors/shopify_test.go); install first with `npm ci` here.
//
// stdin:  {"secret": "...", "cases": [{"body": "<raw body>", "headers": {...}}]}
// stdout: {"results": [{"hmac": "...", "valid": true|false, "reason": "...",
//          "missingHeaders": [...], "topic": "...", "webhookId": "...",
//          "eventId": "..."}]}, one result per case, in order.
//
// hmac is the library's own X-Shopify-Hmac-Sha256 of the body under the
// secret; valid/reason are what webhooks.validate says of a POST with the
// case's headers (which carry the HMAC partnerhub computed). Neither the
// secret nor the bodies are ever printed.
import '@shopify/shopify-api/adapters/node';
import {ApiVersion, LogSeverity, shopifyApi} from '@shopify/shopify-api';
import {HashFormat, createSHA256HMAC} from '@shopify/shopify-api/runtime';

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) {
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

const input = JSON.parse(await readStdin());
if (typeof input.secret !== 'string' || !Array.isArray(input.cases)) {
  throw new Error('stdin must be {"secret": string, "cases": [...]}');
}

const shopify = shopifyApi({
  apiKey: 'partnerhub-crosscheck',
  apiSecretKey: input.secret,
  apiVersion: ApiVersion.October25,
  hostName: 'localhost',
  isEmbeddedApp: false,
  logger: {
    level: LogSeverity.Error,
    log: async (_severity, message) => {
      process.stderr.write(`shopify-api: ${message}\n`);
    },
  },
});

const results = [];
for (const c of input.cases) {
  const hmac = await createSHA256HMAC(input.secret, c.body, HashFormat.Base64);
  const headers = {};
  for (const [name, value] of Object.entries(c.headers ?? {})) {
    headers[name.toLowerCase()] = value; // as node's http module delivers them
  }
  const check = await shopify.webhooks.validate({
    rawBody: c.body,
    rawRequest: {method: 'POST', url: '/in/src_crosscheck', headers},
    rawResponse: {},
  });
  results.push({
    hmac,
    valid: check.valid,
    reason: check.reason ?? '',
    missingHeaders: check.missingHeaders ?? [],
    topic: check.topic ?? '',
    webhookId: check.webhookId ?? '',
    eventId: check.eventId ?? '',
  });
}
process.stdout.write(JSON.stringify({results}) + '\n');
