#!/usr/bin/env bash
# Regenerates formats/gguf/testdata/quant/{F16,BF16,Q8_0,Q4_0}.bin: the
# encodings llama.cpp's own ggml (libggml-base from node-llama-cpp) makes of
# formats/gguf/testdata/quant/input.f32. Needs the judge installed and cc.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
lib=$(echo "$here"/node_modules/@node-llama-cpp/linux-x64/bins/*/libggml-base.so)
out="$here/../../formats/gguf/testdata/quant"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc -O0 -o "$tmp/quantize" "$here/quantize.c" -ldl
for t in F16:1 BF16:30 Q8_0:8 Q4_0:2; do
	"$tmp/quantize" "$lib" "${t#*:}" 128 "$out/input.f32" "$out/${t%%:*}.bin"
done
ls -l "$out"
