// logits.mjs: llama.cpp's raw next-token logits for given token ids.
//
//   node logits.mjs MODEL.gguf IDS.json OUT.f32 [THREADS]
//
// IDS.json is a list of sequences of token ids. OUT.f32 receives, for every
// sequence and position, the vocabulary's logits as little-endian float32
// ([sequences, positions, vocab]). Each sequence is evaluated from an empty
// context of at least twice its length (llama.cpp shifts a full context),
// with an F32 KV cache and no flash attention, for tight parity; THREADS
// defaults to 1 (llama.cpp's threads spin on a busy machine).
import fs from "node:fs";
import {getLlama} from "node-llama-cpp";

const [model, idsPath, outPath, threadsArg] = process.argv.slice(2);
if (!model || !idsPath || !outPath) {
	console.error("usage: node logits.mjs MODEL.gguf IDS.json OUT.f32 [THREADS]");
	process.exit(2);
}
const threads = Number(threadsArg ?? 1);
const seqs = JSON.parse(fs.readFileSync(idsPath, "utf8"));
const longest = Math.max(...seqs.map((s) => s.length));

const llama = await getLlama({gpu: false, build: "never", skipDownload: true, usePrebuiltBinaries: true, logLevel: "error"});
const m = await llama.loadModel({modelPath: model, gpuLayers: 0, useMmap: true});
const context = await m.createContext({
	contextSize: Math.max(256, 2 * longest),
	batchSize: Math.max(256, longest),
	threads,
	flashAttention: false,
	experimentalKvCacheKeyType: "F32",
	experimentalKvCacheValueType: "F32",
});
const sequence = context.getSequence();
const vocab = m.tokens.length ?? m.fileInsights?.tokenizer?.length;
const out = fs.openSync(outPath, "w");
let evalMs = 0, nTokens = 0;
for (const ids of seqs) {
	await sequence.clearHistory();
	const t0 = performance.now();
	const res = await sequence.controlledEvaluate(ids.map((t) => [t, {generateNext: {logits: true}}]));
	evalMs += performance.now() - t0;
	nTokens += ids.length;
	for (let i = 0; i < ids.length; i++) {
		const logits = res[i]?.next?.logits;
		if (!logits) {
			console.error(`no logits at position ${i}`);
			process.exit(1);
		}
		// logits is a Map token → logit (or an array); write them in id order.
		const n = logits instanceof Map ? logits.size : logits.length;
		const row = new Float32Array(n);
		if (logits instanceof Map) {
			for (const [tok, v] of logits) row[tok] = v;
		} else {
			row.set(logits);
		}
		fs.writeSync(out, Buffer.from(row.buffer));
	}
}
fs.closeSync(out);
// Timing of the evaluations alone (not loading), for speed comparisons.
console.error(`llama.cpp: ${nTokens} tokens in ${(evalMs / 1000).toFixed(3)} s, ${(nTokens / (evalMs / 1000)).toFixed(0)} tokens/s, ${threads} threads`);
await context.dispose();
await m.dispose();
await llama.dispose();
