package export

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/moeforge/moeforge/formats/gguf"
	"github.com/moeforge/moeforge/formats/hf"
)

// FuzzGGUFSource feeds mutated GGUF files (seeded with the F32 and Q4_0
// exports of very small qwen3 and qwen3_moe checkpoints, shrunk by
// fuzzSeed) to the GGUF →
// Hugging Face mapping. It must never panic: ConfigFromGGUF accepts or
// refuses the metadata, and every norm and linear layer the accepted config
// names is either an error or a matrix of the config's shape whose first
// and last rows widen in bounds.
func FuzzGGUFSource(f *testing.F) {
	small := map[string]any{"hidden_size": 16, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
		"intermediate_size": 32, "num_hidden_layers": 1, "num_experts": 4, "moe_intermediate_size": 32}
	for _, c := range qwen3Cases {
		dir := writeQwen3Ckpt(f, c.moe, small)
		for _, opt := range []GGUFOptions{{Type: ggufF32, TypeSet: true}, {Type: gguf.Q4_0, TypeSet: true}} {
			path, _ := exportFile(f, dir, opt)
			seed := fuzzSeed(f, path, 16)
			if ok, failed := walkGGUF(f, seed); !ok || failed > 0 {
				f.Fatalf("%s seed: accepted %v, %d lookups failed", c.name, ok, failed)
			}
			f.Add(seed)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) { walkGGUF(t, data) })
}

// walkGGUF parses data and looks up every norm and linear layer of the
// config it describes; it returns whether the config was accepted and how
// many lookups failed.
func walkGGUF(t testing.TB, data []byte) (accepted bool, failed int) {
	file, err := gguf.Parse("fuzz.gguf", data)
	if err != nil {
		return false, 0
	}
	c, err := ConfigFromGGUF(file)
	if err != nil {
		return false, 0
	}
	if c.NumHiddenLayers > 8 || c.NumExperts > 64 || c.HiddenSize > 4096 || c.VocabSize > 1<<16 {
		return true, 0 // valid but too large to walk here
	}
	s := &ggufSource{f: file, c: c}
	for _, spec := range c.Tensors() {
		if len(spec.Shape) != 1 || !strings.HasSuffix(spec.Name, "norm.weight") {
			continue
		}
		v, err := s.Vector(spec.Name)
		if err != nil {
			failed++
		} else if len(v) != spec.Shape[0] {
			t.Fatalf("%s: %d values, want %d", spec.Name, len(v), spec.Shape[0])
		}
	}
	if m, err := s.Matrix(hf.EmbedTokens); err == nil {
		widenEnds(t, hf.EmbedTokens, m.Rows(), m.Cols(), c.VocabSize, c.HiddenSize, m.Widen)
	} else {
		failed++
	}
	linears := []hf.Linear{{Name: hf.LMHead, Out: c.VocabSize, In: c.HiddenSize, Kind: hf.KindLMHead, Layer: -1, Expert: -1}}
	for i := 0; i < c.NumHiddenLayers; i++ {
		linears = append(linears, c.LayerLinears(i)...)
	}
	for _, l := range linears {
		m, _, err := s.Linear(l)
		if err != nil {
			failed++
			continue
		}
		widenEnds(t, l.Name, m.Rows(), m.Cols(), l.Out, l.In, m.Widen)
	}
	return true, failed
}

func widenEnds(t testing.TB, name string, rows, cols, wantRows, wantCols int, widen func(dst []float32, ld, r0, r1, c0, c1 int)) {
	t.Helper()
	if rows != wantRows || cols != wantCols {
		t.Fatalf("%s: matrix [%d, %d], want [%d, %d]", name, rows, cols, wantRows, wantCols)
	}
	if rows == 0 || cols == 0 {
		return
	}
	dst := make([]float32, cols)
	widen(dst, cols, 0, 1, 0, cols)
	widen(dst, cols, rows-1, rows, 0, cols)
}

// fuzzSeed rewrites the GGUF file at path without its tokenizer.* metadata
// and with token_embd and output cut to the first vocab tokens, so that
// seeds are a few kB.
func fuzzSeed(f *testing.F, path string, vocab int) []byte {
	data, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	in, err := gguf.Parse(path, data)
	if err != nil {
		f.Fatal(err)
	}
	var buf bytes.Buffer
	w := gguf.NewWriter(&buf)
	for _, kv := range in.KVs {
		if !strings.HasPrefix(kv.Key, "tokenizer.") {
			if err := w.AddKV(kv.Key, kv.Value); err != nil {
				f.Fatal(err)
			}
		}
	}
	body := map[string][]byte{}
	for _, t := range in.Tensors {
		dims, b := t.Dims, t.Bytes()
		if t.Name == "token_embd.weight" || t.Name == "output.weight" {
			dims = []int{dims[0], vocab}
			b = b[:len(b)/t.Dims[1]*vocab]
		}
		body[t.Name] = b
		if err := w.AddTensor(t.Name, t.Type, dims); err != nil {
			f.Fatal(err)
		}
	}
	if err := w.WriteHeader(); err != nil {
		f.Fatal(err)
	}
	for _, t := range in.Tensors {
		if err := w.WriteTensor(body[t.Name]); err != nil {
			f.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		f.Fatal(err)
	}
	return buf.Bytes()
}
