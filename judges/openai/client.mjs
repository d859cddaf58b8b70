// Exercises a moeforge server with the official openai client.
// Usage: node client.mjs BASE_URL MODEL_ID  (BASE_URL like http://127.0.0.1:PORT/v1)
// Prints one JSON document with what it saw; exits 1 on a failed check.
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, timeout: 120_000 });
const out = { checks: [] };
let failed = false;
const check = (name, ok, detail) => {
  out.checks.push({ name, ok: !!ok, detail });
  if (!ok) failed = true;
};

const seed = [
  { role: "system", content: "You are a helpful assistant." },
  { role: "user", content: "Give me a short introduction to large language model." },
];

async function streamText(messages, extra = {}) {
  const s = await client.chat.completions.create({ model, messages, stream: true, temperature: 0, max_tokens: 16, ...extra });
  let text = "";
  let usage = null;
  let finish = null;
  for await (const chunk of s) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.delta?.content ?? "";
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  return { text, usage, finish };
}

// plain
const plain = await client.chat.completions.create({ model, messages: seed, temperature: 0, max_tokens: 16 });
out.plain = plain.choices[0].message.content;
check("plain: one assistant choice", plain.choices.length === 1 && plain.choices[0].message.role === "assistant", plain.choices[0]);
check("plain: usage adds up", plain.usage.total_tokens === plain.usage.prompt_tokens + plain.usage.completion_tokens && plain.usage.completion_tokens > 0, plain.usage);

// streamed, with usage
const st = await streamText(seed, { stream_options: { include_usage: true } });
out.streamed = st.text;
check("streamed text equals the plain reply", st.text === out.plain, { streamed: st.text, plain: out.plain });
check("streamed usage chunk", st.usage && st.usage.prompt_tokens === plain.usage.prompt_tokens, st.usage);
check("streamed finish_reason", st.finish === plain.choices[0].finish_reason, st.finish);

// 8 concurrent streams, each equal to the same request alone
const users = ["ROMEO:", "JULIET:", "First Citizen:", "KING HENRY:", "To be, or not", "O, speak again", "What say you?", "MENENIUS:"];
const msgs = users.map((u) => [{ role: "user", content: u }]);
const alone = [];
for (const m of msgs) alone.push((await streamText(m)).text);
const t0 = Date.now();
const together = (await Promise.all(msgs.map((m) => streamText(m)))).map((r) => r.text);
out.concurrent_ms = Date.now() - t0;
out.concurrent = together;
check("8 concurrent streams equal their replies alone", JSON.stringify(together) === JSON.stringify(alone), { alone, together });

// a client that disconnects mid-stream
const ac = new AbortController();
let chunks = 0;
try {
  const s = await client.chat.completions.create({ model, messages: seed, stream: true, temperature: 0, max_tokens: 400 }, { signal: ac.signal });
  for await (const _ of s) {
    if (++chunks === 3) ac.abort();
  }
} catch (e) {
  out.abort_error = e.constructor.name; // some versions end the loop quietly instead
}
check("disconnect: no chunk after the abort", chunks === 3, { chunks, error: out.abort_error });
const after = await client.chat.completions.create({ model, messages: seed, temperature: 0, max_tokens: 4 });
check("the server answers after a disconnect", after.choices.length === 1);

// errors: malformed JSON (raw), and a request the client sends that is too long
const raw = await fetch(baseURL + "/chat/completions", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{\"messages\": [" });
const rawBody = await raw.json();
check("malformed JSON: 400 with an OpenAI error", raw.status === 400 && typeof rawBody.error?.message === "string", { status: raw.status, body: rawBody });
try {
  await client.chat.completions.create({ model, messages: seed, max_tokens: 1_000_000 });
  check("max_tokens beyond the context raises", false);
} catch (e) {
  check("max_tokens beyond the context: BadRequestError 400", e instanceof OpenAI.BadRequestError && e.status === 400, { name: e.constructor.name, status: e.status, message: e.message });
}
try {
  await client.chat.completions.create({ model: "no-such-model", messages: seed, max_tokens: 2 });
  check("unknown model raises", false);
} catch (e) {
  check("unknown model: NotFoundError 404", e instanceof OpenAI.NotFoundError, { name: e.constructor.name, status: e.status });
}

// models and text completions
const models = [];
for await (const m of client.models.list()) models.push(m.id);
check("models.list names the model", models.length === 1 && models[0] === model, models);
const comp = await client.completions.create({ model, prompt: "ROMEO:", max_tokens: 8, temperature: 0, stop: ["\n\n"] });
out.completion = comp.choices[0].text;
check("completions: text and usage", typeof comp.choices[0].text === "string" && comp.usage.completion_tokens > 0, comp.usage);

out.ok = !failed;
process.stdout.write(JSON.stringify(out, null, 1) + "\n");
process.exit(failed ? 1 : 0);
