package export

import (
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/formats/gguf"
	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/internal/fixture"
	"github.com/moeforge/moeforge/internal/judge"
	"github.com/moeforge/moeforge/tokenizer"
)

var updateSPMGolden = flag.Bool("update-spm-golden", false, "rewrite testdata/spm_llamacpp.json.zst from the llama.cpp judge")

// mistralVocabGGUF writes the tokenizer metadata of Mistral's real
// 32000-token tokenizer.json (testdata/tokenizers/mistral) as a vocab-only
// GGUF file and returns the tokenizer directory and the file. (mistral_tiny,
// the tokenizer of the mixtral_tiny fixture, is a cut of that vocabulary
// whose merges are incomplete — "▁a" is a token but "a" is not — so llama.cpp,
// which joins any two pieces whose concatenation is a token, cannot match it;
// see docs/gguf.md.)
func mistralVocabGGUF(t *testing.T) (string, string) {
	t.Helper()
	root, err := fixture.Root()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "mistral")
	if err := fixture.Materialize(filepath.Join(root, "tokenizers/mistral"), dir); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "golden.json"))
	c, err := hf.ParseConfig([]byte(`{"model_type": "mixtral", "vocab_size": 32000, "bos_token_id": 1, "eos_token_id": 2,
		"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 4,
		"intermediate_size": 128, "num_local_experts": 2, "num_experts_per_tok": 1}`))
	if err != nil {
		t.Fatal(err)
	}
	kvs, err := tokenizerKVs(dir, c)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "vocab.gguf")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := gguf.NewWriter(f)
	if err := w.AddKV("general.architecture", "llama"); err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvs {
		if err := w.AddKV(kv.Key, kv.Value); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WriteHeader(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

type spmGolden struct {
	Text string `json:"text"`
	IDs  []int  `json:"ids"`
}

// TestGGUFLlamaTokenizerGolden: moeforge tokenizes the corpus from Mistral's
// tokenizer.json, and from the GGUF metadata it exports, exactly as llama.cpp
// did from that metadata (testdata/spm_llamacpp.json.zst, written by
// TestGGUFLlamaTokenizerJudge with -update-spm-golden).
func TestGGUFLlamaTokenizerGolden(t *testing.T) {
	tmp := filepath.Join(t.TempDir(), "golden.json")
	if err := fixture.Materialize(filepath.Join("testdata", "spm_llamacpp.json.zst"), tmp+".zst"); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(tmp)
	if err != nil {
		t.Fatal(err)
	}
	var golden []spmGolden
	if err := json.Unmarshal(raw, &golden); err != nil {
		t.Fatal(err)
	}
	if len(golden) < 10 {
		t.Fatalf("golden has %d cases", len(golden))
	}
	dir, path := mistralVocabGGUF(t)
	src, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	fromGGUF, err := GGUFTokenizer(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range golden {
		if diff := cmp.Diff(g.IDs, src.Encode(g.Text)); diff != "" {
			t.Errorf("%.40q: moeforge (tokenizer.json) differs from llama.cpp (-llama.cpp +moeforge):\n%s", g.Text, diff)
		}
		if diff := cmp.Diff(g.IDs, fromGGUF.Encode(g.Text)); diff != "" {
			t.Errorf("%.40q: moeforge (GGUF metadata) differs from llama.cpp (-llama.cpp +moeforge):\n%s", g.Text, diff)
		}
	}
}

// TestGGUFLlamaTokenizerJudge: llama.cpp tokenizes the corpus from the
// exported metadata of Mistral's tokenizer exactly as moeforge does from
// tokenizer.json, special tokens written in the text included. With
// llama.cpp's own converter's scores for a tokenizer.json (−1000 for every
// piece) 453 of the 1953 texts differ.
func TestGGUFLlamaTokenizerJudge(t *testing.T) {
	jd := judge.Dir(t, "llamacpp")
	dir, path := mistralVocabGGUF(t)
	src, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	texts := spmCorpus(t)
	in := filepath.Join(t.TempDir(), "texts.json")
	data, err := json.Marshal(texts)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", filepath.Join(jd, "tokenize_many.mjs"), path, in)
	cmd.Dir = jd
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("llama.cpp tokenize: %v", err)
	}
	var all [][]int
	if err := json.Unmarshal(out, &all); err != nil || len(all) != len(texts) {
		t.Fatalf("llama.cpp answered %d tokenizations for %d texts (%v)", len(all), len(texts), err)
	}
	var golden []spmGolden
	n := 0
	for i, text := range texts {
		llama := all[i]
		if llama == nil {
			llama = []int{}
		}
		ours := src.Encode(text)
		if ours == nil {
			ours = []int{}
		}
		if diff := cmp.Diff(ours, llama); diff != "" {
			t.Errorf("case %d %.40q: llama.cpp (%d ids) differs from moeforge (%d) (-moeforge +llama.cpp):\n%s", i, text, len(llama), len(ours), diff)
		}
		n += len(ours)
		golden = append(golden, spmGolden{text, llama})
	}
	t.Logf("%d texts → %d tokens, identical in llama.cpp", len(golden), n)
	if *updateSPMGolden && !t.Failed() {
		data, err := json.MarshalIndent(golden, "", " ")
		if err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(t.TempDir(), "spm_llamacpp.json")
		if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := fixture.Compress(tmp, filepath.Join("testdata", "spm_llamacpp.json.zst")); err != nil {
			t.Fatal(err)
		}
	}
}
