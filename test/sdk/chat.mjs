// chat.mjs - one chat completion through the official openai SDK, made as an
// application makes it; prints what came back as one JSON line.
//   node chat.mjs '{"baseURL": "...", "body": {...}, "stream": false, "maxRetries": 2}'
// Output: {"ok", "completion" | "chunks", "error": {"class", "status", "code",
// "message", "headers"}, "elapsed_ms"}. An error is data, not a failure:
// the tests assert on what the SDK raised.
import OpenAI from 'openai';

const spec = JSON.parse(process.argv[2]);
const client = new OpenAI({
  apiKey: spec.apiKey ?? 'no-key',
  baseURL: spec.baseURL,
  maxRetries: spec.maxRetries ?? 2,
  timeout: spec.timeoutMs ?? 30000,
});
const out = { chunks: [] };
const t0 = Date.now();
try {
  if (spec.stream) {
    const stream = await client.chat.completions.create({ ...spec.body, stream: true });
    for await (const chunk of stream) out.chunks.push(chunk);
  } else {
    out.completion = await client.chat.completions.create(spec.body);
  }
  out.ok = true;
} catch (e) {
  out.ok = false;
  out.error = {
    class: e.constructor.name,
    status: e.status ?? null,
    code: e.code ?? e.error?.code ?? null,
    message: String(e.message),
    headers: e.headers ? Object.fromEntries(e.headers.entries()) : null,
  };
}
out.elapsed_ms = Date.now() - t0;
console.log(JSON.stringify(out));
