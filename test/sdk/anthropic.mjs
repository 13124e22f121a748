// anthropic.mjs - one Messages API call through the official @anthropic-ai/sdk,
// made as an application makes it; prints what came back as one JSON line.
//   node anthropic.mjs '{"baseURL": "http://127.0.0.1:PORT", "body": {...}, "mode": "create", "maxRetries": 2}'
// baseURL is the host without /v1: the SDK adds /v1/messages itself.
// mode: "create" (a whole message), "events" (stream: true, every event as
// the SDK yields it) or "stream" (the SDK's messages.stream() helper, which
// assembles the deltas into its finalMessage(): text and tool input alike).
// Output: {"ok", "message" | "events" | "final", "request_id", "error":
// {"class", "status", "type", "message", "headers"}, "elapsed_ms"}. An error
// is data, not a failure: the tests assert on what the SDK raised.
import { createRequire } from 'node:module';

// Loaded with require, not import: ESM resolution ignores NODE_PATH, and
// require finds the SDK both in test/sdk/node_modules and on a NODE_PATH
// (an SDK installed elsewhere, before it is in package.json).
const require = createRequire(import.meta.url);
const { Anthropic } = require('@anthropic-ai/sdk');

const spec = JSON.parse(process.argv[2]);
const client = new Anthropic({
  apiKey: spec.apiKey ?? 'no-key',
  baseURL: spec.baseURL,
  maxRetries: spec.maxRetries ?? 2,
  timeout: spec.timeoutMs ?? 30000,
});
const out = {};
const t0 = Date.now();
try {
  const mode = spec.mode ?? 'create';
  if (mode === 'events') {
    out.events = [];
    const stream = await client.messages.create({ ...spec.body, stream: true });
    for await (const event of stream) out.events.push(structuredClone(event));
  } else if (mode === 'stream') {
    out.events = [];
    const stream = client.messages.stream(spec.body);
    // a copy: the helper goes on filling message_start's message in place
    for await (const event of stream) out.events.push(structuredClone(event));
    out.final = await stream.finalMessage();
    out.request_id = stream.request_id ?? null;
  } else {
    out.message = await client.messages.create(spec.body);
    out.request_id = out.message._request_id ?? null;
  }
  out.ok = true;
} catch (e) {
  out.ok = false;
  out.error = {
    class: e.constructor.name,
    status: e.status ?? null,
    type: e.error?.error?.type ?? e.type ?? null,
    message: String(e.message),
    headers: e.headers ? Object.fromEntries(e.headers.entries()) : null,
  };
}
out.elapsed_ms = Date.now() - t0;
console.log(JSON.stringify(out));
