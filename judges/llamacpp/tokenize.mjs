// tokenize.mjs: llama.cpp's tokenization of a text with a GGUF file's own
// tokenizer metadata (special tokens written in the text are parsed, no BOS
// or EOS added), printed as a JSON array of ids.
//
//   node tokenize.mjs MODEL.gguf TEXT.txt
import fs from "node:fs";
import {getLlama} from "node-llama-cpp";

const [model, textPath] = process.argv.slice(2);
if (!model || !textPath) {
	console.error("usage: node tokenize.mjs MODEL.gguf TEXT.txt");
	process.exit(2);
}
const llama = await getLlama({gpu: false, build: "never", skipDownload: true, usePrebuiltBinaries: true, logLevel: "error"});
const m = await llama.loadModel({modelPath: model, gpuLayers: 0, vocabOnly: true});
const ids = m.tokenize(fs.readFileSync(textPath, "utf8"), true);
process.stdout.write(JSON.stringify(Array.from(ids)) + "\n");
await m.dispose();
await llama.dispose();
