package export

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
)

// FuzzTokenizerConfig feeds arbitrary tokenizer_config.json files to the
// GGUF export's tokenizer metadata (tokenizerKVs) over the tokenizer.json
// and config of qwen2_moe_tiny. It must never panic, and every special id
// it writes is a row of the vocabulary.
func FuzzTokenizerConfig(f *testing.F) {
	src := filepath.Join(fixturetest.Dir(f, "fixtures/qwen2_moe_tiny"), "model")
	c, err := hf.ReadConfig(src)
	if err != nil {
		f.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "tokenizers", "*", "tokenizer_config.json"))
	files = append(files, filepath.Join(src, "tokenizer_config.json"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil && len(b) < 16<<10 {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"eos_token": {"content": "<|im_end|>"}, "pad_token": null, "bos_token": "<|endoftext|>", "add_bos_token": 1, "chat_template": [{"name": "default", "template": "x"}]}`))
	dir := f.TempDir() // tokenizer_config.json rewritten by each input: a worker runs one at a time
	tj, err := os.ReadFile(filepath.Join(src, "tokenizer.json"))
	if err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), tj, 0o644); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		kvs, err := tokenizerKVs(dir, c)
		if err != nil {
			return
		}
		for _, kv := range kvs {
			if id, ok := kv.Value.(uint32); ok && int(id) >= c.VocabSize {
				t.Fatalf("%s = %d outside the vocabulary of %d", kv.Key, id, c.VocabSize)
			}
		}
	})
}
