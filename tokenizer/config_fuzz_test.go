package tokenizer

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
)

// FuzzApplyConfig feeds arbitrary tokenizer_config.json files to what Load
// takes from them (applyConfig), over the mistral_tiny tokenizer (a Llama
// class, so bos/eos handling runs). It must never panic, and an accepted
// config leaves a tokenizer whose special tokens are its own.
func FuzzApplyConfig(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "tokenizers", "*", "tokenizer_config.json"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil && len(b) < 16<<10 {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"tokenizer_class": "LlamaTokenizerFast", "add_bos_token": true, "add_eos_token": true, "bos_token": {"content": "<s>"}, "eos_token": "</s>"}`))
	f.Add([]byte(`{"tokenizer_class": "LlamaTokenizer", "add_bos_token": false, "add_eos_token": true, "eos_token": null}`))
	data, err := os.ReadFile(filepath.Join(fixturetest.Dir(f, "tokenizers/mistral_tiny"), "tokenizer.json"))
	if err != nil {
		f.Fatal(err)
	}
	tok, err := Parse(data) // this target's own: applyConfig changes it
	if err != nil {
		f.Fatal(err)
	}
	orig := tok.post
	dir := f.TempDir() // rewritten by each input: a worker runs one at a time
	f.Fuzz(func(t *testing.T, cfg []byte) {
		if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), cfg, 0o644); err != nil {
			t.Fatal(err)
		}
		tok.post = orig
		if err := tok.applyConfig(dir); err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		ids := tok.EncodeWithSpecialTokens("Hello world")
		if _, err := tok.Decode(ids); err != nil {
			t.Fatalf("decoding %v: %v", ids, err)
		}
	})
}
