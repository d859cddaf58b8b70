// tokenize_many.mjs: like tokenize.mjs, for many texts with one model load:
// reads a JSON array of strings, prints a JSON array of id arrays (special
// tokens written in the text are parsed, no BOS or EOS added).
//
//   node tokenize_many.mjs MODEL.gguf TEXTS.json
import fs from "node:fs";
import {getLlama} from "node-llama-cpp";

const [model, textsPath] = process.argv.slice(2);
if (!model || !textsPath) {
	console.error("usage: node tokenize_many.mjs MODEL.gguf TEXTS.json");
	process.exit(2);
}
const texts = JSON.parse(fs.readFileSync(textsPath, "utf8"));
const llama = await getLlama({gpu: false, build: "never", skipDownload: true, usePrebuiltBinaries: true, logLevel: "error"});
const m = await llama.loadModel({modelPath: model, gpuLayers: 0, vocabOnly: true});
const out = texts.map((t) => Array.from(m.tokenize(t, true)));
process.stdout.write(JSON.stringify(out) + "\n");
await m.dispose();
await llama.dispose();
