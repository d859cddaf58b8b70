package model

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/moeforge/moeforge/formats/hf"
)

// FuzzLoadGenerationConfig feeds arbitrary generation_config.json files to
// LoadGenerationConfig. It must never panic, and what it accepts samples:
// valid options whose sampler returns a token of the vocabulary.
func FuzzLoadGenerationConfig(f *testing.F) {
	root := filepath.Join("..", "testdata")
	files, _ := filepath.Glob(filepath.Join(root, "fixtures", "*", "model", "generation_config.json"))
	more, _ := filepath.Glob(filepath.Join(root, "models", "*", "generation_config.json"))
	for _, p := range append(files, more...) {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"do_sample": true, "temperature": 0.7, "top_k": 20, "top_p": 0.8, "repetition_penalty": 1.05, "eos_token_id": [151645, 151643], "max_new_tokens": 64}`))
	f.Add([]byte(`{"do_sample": true, "temperature": 1e-320, "eos_token_id": null}`)) // was: NaN softmax, drew the 50th most likely token
	f.Add([]byte(`{"eos_token_id": "x"}`))
	cfgData, err := os.ReadFile(filepath.Join(root, "fixtures", "qwen2_moe_tiny", "model", "config.json"))
	if err != nil {
		f.Fatal(err)
	}
	cfg, err := hf.ParseConfig(cfgData)
	if err != nil {
		f.Fatal(err)
	}
	m := &Model{Config: cfg}
	logits := make([]float32, cfg.VocabSize)
	for i := range logits {
		logits[i] = float32(math.Sin(float64(i))) * 30
	}
	dir := f.TempDir() // rewritten by each input: a worker runs one at a time
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, "generation_config.json"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		gc, err := LoadGenerationConfig(dir, m)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if err := gc.Sampling.Validate(); err != nil {
			t.Fatalf("accepted invalid sampling %+v: %v", gc.Sampling, err)
		}
		s := NewSampler(gc.Sampling)
		s.Observe(1, 2, 3)
		for i := 0; i < 3; i++ {
			l := append([]float32(nil), logits...)
			id := s.Sample(l)
			if id < 0 || id >= len(logits) {
				t.Fatalf("sampled %d from %d logits with %+v", id, len(logits), gc.Sampling)
			}
			// a vanishing temperature is greedy (the penalty leaves the argmax alone here)
			if gc.Sampling.Temperature < 1e-9 && id != argmax(logits) {
				t.Fatalf("temperature %g sampled %d (logit %g), not the argmax %d", gc.Sampling.Temperature, id, logits[id], argmax(logits))
			}
		}
	})
}
