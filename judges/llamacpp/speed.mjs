// speed.mjs: llama.cpp's prompt-processing speed on given token ids (no
// logits read back: llama.cpp then computes the last layer and the output
// for the final position only), for comparison with `moeforge eval ppl`.
//
//   node speed.mjs MODEL.gguf IDS.json [THREADS] [REPEATS]
//
// Each sequence is evaluated from an empty context; prints tokens/s of the
// evaluations alone (model loading excluded), best of REPEATS (default 3).
import fs from "node:fs";
import {getLlama} from "node-llama-cpp";

const [model, idsPath, threadsArg, repeatsArg] = process.argv.slice(2);
const threads = Number(threadsArg ?? 1);
const repeats = Number(repeatsArg ?? 3);
const seqs = JSON.parse(fs.readFileSync(idsPath, "utf8"));
const longest = Math.max(...seqs.map((s) => s.length));
const llama = await getLlama({gpu: false, build: "never", skipDownload: true, usePrebuiltBinaries: true, logLevel: "error"});
const m = await llama.loadModel({modelPath: model, gpuLayers: 0});
const context = await m.createContext({contextSize: Math.max(256, 2 * longest), batchSize: Math.max(256, longest), threads, flashAttention: false});
const sequence = context.getSequence();
// Wall time is at the mercy of a loaded machine; CPU time (the whole
// process's, llama.cpp's threads included) is steadier.
let best = Infinity, bestCPU = Infinity, n = 0;
for (let r = 0; r < repeats; r++) {
	const t0 = performance.now(), c0 = process.cpuUsage();
	n = 0;
	for (const ids of seqs) {
		await sequence.clearHistory();
		await sequence.evaluateWithoutGeneratingNewTokens(ids);
		n += ids.length;
	}
	const c = process.cpuUsage(c0);
	best = Math.min(best, performance.now() - t0);
	bestCPU = Math.min(bestCPU, (c.user + c.system) / 1e6);
}
console.log(JSON.stringify({tokens: n, seconds: best / 1000, cpu_seconds: bestCPU, tokens_per_second: n / (best / 1000), threads}));
await context.dispose();
await m.dispose();
await llama.dispose();
