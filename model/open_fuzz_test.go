package model

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
)

// FuzzOpenConfig feeds arbitrary config.json files to Open over the real
// weights of qwen2_moe_tiny, and runs a forward step on what it opens. A
// config that parses but does not fit the weights must be an error, never
// a panic in Open or in the forward pass, and one it accepts gives finite
// logits (this weights' values are far from overflow).
func FuzzOpenConfig(f *testing.F) {
	src := filepath.Join(fixturetest.Dir(f, "fixtures/qwen2_moe_tiny"), "model")
	config, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(config)
	f.Add([]byte(strings.Replace(string(config), `"rope_theta": 1000000.0`, `"rope_theta": 0`, 1))) // was accepted: NaN logits
	f.Add([]byte(`{"model_type":"qwen2_moe","hidden_size":64,"intermediate_size":128,"num_hidden_layers":3,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":1024,"num_experts":16,"num_experts_per_tok":4,"moe_intermediate_size":32,"shared_expert_intermediate_size":128,"qkv_bias":true,"max_position_embeddings":2,"rms_norm_eps":-1}`))
	dir := f.TempDir() // config.json rewritten by each input: a worker runs one at a time
	if err := os.Symlink(filepath.Join(src, "model.safetensors"), filepath.Join(dir, "model.safetensors")); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, config []byte) {
		if err := os.WriteFile(filepath.Join(dir, "config.json"), config, 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := Open(dir)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		defer m.Close()
		ids := []int{1, 2, 3}
		for i := range ids {
			ids[i] %= m.Config.VocabSize
		}
		out, err := m.StepLogits(context.Background(), [][]int{ids}, []*KVCache{m.NewKVCache()})
		if err != nil {
			return
		}
		if len(out) != 1 || len(out[0]) != m.Config.VocabSize {
			t.Fatalf("logits for %d sequences, want 1 row of %d", len(out), m.Config.VocabSize)
		}
		for i, v := range out[0] {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("an accepted config gives logit %d = %v", i, v)
			}
		}
	})
}
