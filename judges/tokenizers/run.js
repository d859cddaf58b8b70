// Encodes and decodes with Hugging Face tokenizers, the reference for
// package tokenizer. Reads one JSON request on stdin:
//   {"tokenizer": "path/to/tokenizer.json",
//    "texts": ["...", ...],            // each encoded without and with special tokens
//    "decode": [[id, ...], ...]}       // optional extra id lists to decode
// and prints {"results": [{"ids": [...], "ids_special": [...], "decoded": "..."}],
//            "decoded": ["...", ...]} where decoded is decode(ids, false).
// With "bench": N it instead encodes texts[0] N times and prints the best
// seconds per encode (after one warm-up).
'use strict';
const { Tokenizer } = require('tokenizers');

async function main() {
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  const req = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  const tok = Tokenizer.fromFile(req.tokenizer);
  if (req.bench) {
    let best = Infinity;
    await tok.encode(req.texts[0], null, { addSpecialTokens: false });
    for (let i = 0; i < req.bench; i++) {
      const t0 = process.hrtime.bigint();
      await tok.encode(req.texts[0], null, { addSpecialTokens: false });
      best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
    }
    process.stdout.write(JSON.stringify({ seconds: best }) + '\n');
    return;
  }
  const results = [];
  for (const text of req.texts) {
    const plain = await tok.encode(text, null, { addSpecialTokens: false });
    const special = await tok.encode(text, null, { addSpecialTokens: true });
    const ids = plain.getIds();
    results.push({ ids, ids_special: special.getIds(), decoded: await tok.decode(ids, false) });
  }
  const decoded = [];
  for (const ids of req.decode || []) decoded.push(await tok.decode(ids, false));
  process.stdout.write(JSON.stringify({ results, decoded }) + '\n');
}

main().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
