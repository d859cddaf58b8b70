package model_test

import (
	"context"
	"maps"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/model"
)

// branchCase is a small random-weight model that exercises config branches
// no transformers fixture covers, checked against the float64 reference.
type branchCase struct {
	name string
	cfg  map[string]any
	// moeLayers are the layers expected to be sparse; window the attention
	// window of each layer (nil: none), both as transformers defines them.
	moeLayers []int
	window    []int
}

func qwenMoEConfig(edit map[string]any) map[string]any {
	c := map[string]any{
		"model_type":                      "qwen2_moe",
		"architectures":                   []string{"Qwen2MoeForCausalLM"},
		"hidden_size":                     48,
		"intermediate_size":               80,
		"num_hidden_layers":               2,
		"num_attention_heads":             4,
		"num_key_value_heads":             2,
		"vocab_size":                      97,
		"rms_norm_eps":                    1e-6,
		"max_position_embeddings":         64,
		"rope_parameters":                 map[string]any{"rope_theta": 10000.0, "rope_type": "default"},
		"num_experts":                     8,
		"num_experts_per_tok":             3,
		"moe_intermediate_size":           24,
		"shared_expert_intermediate_size": 40,
		"norm_topk_prob":                  false,
		"decoder_sparse_step":             1,
		"mlp_only_layers":                 []int{},
		"qkv_bias":                        true,
		"tie_word_embeddings":             false,
		"eos_token_id":                    0,
	}
	maps.Copy(c, edit)
	return c
}

func without(c map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		delete(c, k)
	}
	return c
}

var branchCases = []branchCase{
	{
		name:      "qwen2_moe norm_topk_prob MQA head_dim",
		cfg:       qwenMoEConfig(map[string]any{"norm_topk_prob": true, "num_key_value_heads": 1, "head_dim": 16}),
		moeLayers: []int{0, 1},
	},
	{
		name: "qwen2_moe mlp_only_layers no shared expert no qkv bias",
		cfg: qwenMoEConfig(map[string]any{"num_hidden_layers": 4, "mlp_only_layers": []int{2},
			"shared_expert_intermediate_size": 0, "qkv_bias": false}),
		moeLayers: []int{0, 1, 3},
	},
	{
		name:      "qwen2_moe decoder_sparse_step 2",
		cfg:       qwenMoEConfig(map[string]any{"num_hidden_layers": 4, "decoder_sparse_step": 2, "norm_topk_prob": true}),
		moeLayers: []int{1, 3},
	},
	{
		name:      "qwen2_moe top-level rope_theta",
		cfg:       without(qwenMoEConfig(map[string]any{"rope_theta": 500000.0}), "rope_parameters"),
		moeLayers: []int{0, 1},
	},
	{
		name: "qwen2_moe sliding window from layer_types",
		cfg: qwenMoEConfig(map[string]any{"use_sliding_window": true, "sliding_window": 3,
			"layer_types": []string{"sliding_attention", "full_attention"}}),
		moeLayers: []int{0, 1},
		window:    []int{3, 0},
	},
	{
		name: "qwen2 sliding window from max_window_layers tied embeddings",
		cfg: without(qwenMoEConfig(map[string]any{"model_type": "qwen2", "architectures": []string{"Qwen2ForCausalLM"},
			"num_hidden_layers": 3, "use_sliding_window": true, "sliding_window": 4, "max_window_layers": 1,
			"tie_word_embeddings": true}),
			"num_experts", "num_experts_per_tok", "moe_intermediate_size", "shared_expert_intermediate_size",
			"norm_topk_prob", "decoder_sparse_step", "mlp_only_layers", "qkv_bias"),
		window: []int{0, 4, 4},
	},
	{
		name: "mixtral sliding window top-level rope_theta",
		cfg: map[string]any{
			"model_type": "mixtral", "architectures": []string{"MixtralForCausalLM"},
			"hidden_size": 32, "intermediate_size": 40, "num_hidden_layers": 2, "num_attention_heads": 4,
			"num_key_value_heads": 2, "head_dim": nil, "vocab_size": 97, "rms_norm_eps": 1e-5,
			"max_position_embeddings": 64, "rope_theta": 1e6, "num_local_experts": 6, "num_experts_per_tok": 2,
			"sliding_window": 5, "tie_word_embeddings": false,
		},
		moeLayers: []int{0, 1},
		window:    []int{5, 5},
	},
}

// qwen3Config is a small dense Qwen3 config (head_dim 16 ≠ hidden/heads 12).
func qwen3Config(edit map[string]any) map[string]any {
	c := without(qwenMoEConfig(map[string]any{"model_type": "qwen3", "architectures": []string{"Qwen3ForCausalLM"},
		"head_dim": 16, "attention_bias": false}),
		"num_experts", "num_experts_per_tok", "moe_intermediate_size", "shared_expert_intermediate_size",
		"norm_topk_prob", "decoder_sparse_step", "mlp_only_layers", "qkv_bias")
	maps.Copy(c, edit)
	return c
}

// qwen3MoEConfig is a small Qwen3-MoE config: no shared expert, 8 experts top-3.
func qwen3MoEConfig(edit map[string]any) map[string]any {
	c := without(qwenMoEConfig(map[string]any{"model_type": "qwen3_moe", "architectures": []string{"Qwen3MoeForCausalLM"},
		"head_dim": 16, "attention_bias": false, "norm_topk_prob": true}),
		"shared_expert_intermediate_size", "qkv_bias")
	maps.Copy(c, edit)
	return c
}

func init() {
	branchCases = append(branchCases,
		branchCase{
			name: "qwen3 GQA head_dim tied embeddings",
			cfg:  qwen3Config(map[string]any{"tie_word_embeddings": true}),
		},
		branchCase{
			name: "qwen3 attention_bias sliding window from max_window_layers",
			cfg: qwen3Config(map[string]any{"num_hidden_layers": 3, "attention_bias": true,
				"use_sliding_window": true, "sliding_window": 4, "max_window_layers": 1}),
			window: []int{0, 4, 4},
		},
		branchCase{
			name: "qwen3_moe norm_topk_prob mlp_only_layers num_local_experts",
			cfg: without(qwen3MoEConfig(map[string]any{"num_hidden_layers": 3, "mlp_only_layers": []int{1},
				"num_local_experts": 8}), "num_experts"),
			moeLayers: []int{0, 2},
		},
		branchCase{
			name: "qwen3_moe norm_topk_prob false attention_bias MQA sliding window every layer",
			cfg: qwen3MoEConfig(map[string]any{"norm_topk_prob": false, "attention_bias": true, "num_key_value_heads": 1,
				"use_sliding_window": true, "sliding_window": 3, "max_window_layers": 1}),
			moeLayers: []int{0, 1},
			window:    []int{3, 3},
		},
		branchCase{
			name:      "qwen3_moe decoder_sparse_step 2",
			cfg:       qwen3MoEConfig(map[string]any{"num_hidden_layers": 4, "decoder_sparse_step": 2}),
			moeLayers: []int{1, 3},
		},
	)
}

func randomSeqs(seed uint64, vocab int, lengths ...int) [][]int {
	rng := rand.New(rand.NewPCG(seed, 11))
	var seqs [][]int
	for _, n := range lengths {
		s := make([]int, n)
		for i := range s {
			s[i] = rng.IntN(vocab)
		}
		seqs = append(seqs, s)
	}
	return seqs
}

// TestConfigBranchesAgainstFloat64Reference runs each branch model on two
// sequences in one batch and requires logits within 1e-4 × max|logit| of the
// float64 reference and the same experts, in the same order, for every token.
func TestConfigBranchesAgainstFloat64Reference(t *testing.T) {
	for i, bc := range branchCases {
		t.Run(bc.name, func(t *testing.T) {
			dir := randomCheckpoint(t, bc.cfg, uint64(100+i))
			m := loadModel(t, dir)
			var gotMoE []int
			for _, l := range m.Layers {
				if l.MoE != nil {
					gotMoE = append(gotMoE, l.Index)
				}
			}
			if diff := cmp.Diff(bc.moeLayers, gotMoE); diff != "" {
				t.Errorf("MoE layers (-want +got):\n%s", diff)
			}
			window := bc.window
			if window == nil {
				window = make([]int, len(m.Layers))
			}
			for _, l := range m.Layers {
				if l.SlidingWindow != window[l.Index] {
					t.Errorf("layer %d: sliding window %d, want %d", l.Index, l.SlidingWindow, window[l.Index])
				}
			}

			ref := loadRefModel(t, dir, window)
			seqs := randomSeqs(uint64(i), m.Config.VocabSize, 11, 7)
			K := m.Config.NumExpertsPerTok
			chosen := map[int][]int32{}
			hooks := &model.Hooks{Routing: func(layer int, _ []float32, experts []int32, _ []float32) {
				chosen[layer] = append([]int32(nil), experts...)
			}}
			logits, err := m.Logits(context.Background(), &model.Batch{Seqs: seqs}, hooks)
			if err != nil {
				t.Fatal(err)
			}
			V := m.Config.VocabSize
			var want []float64
			row := 0
			for _, s := range seqs {
				out := ref.forward(s)
				for _, l := range out.logits {
					want = append(want, l...)
				}
				for layer, perTok := range out.experts {
					for tt, exps := range perTok {
						got := make([]int, K)
						for j := range got {
							got[j] = int(chosen[layer][(row+tt)*K+j])
						}
						if diff := cmp.Diff(exps, got); diff != "" {
							t.Errorf("layer %d token %d: experts differ (-reference +got):\n%s", layer, row+tt, diff)
						}
					}
				}
				row += len(s)
			}
			if len(want) != len(logits) || len(logits) != row*V {
				t.Fatalf("logits: %d values, reference %d", len(logits), len(want))
			}
			d := relDiff64(logits, want)
			if d > 1e-4 {
				t.Errorf("logits: max |Δ| / max |ref| = %.3g > 1e-4", d)
			}
			t.Logf("logits relative max diff %.3g", d)
		})
	}
}

// TestBranchModelsDiffer guards the branch tests against a reference that
// agrees because the branch does nothing: changing each branch's key (same
// weights) must change the logits well beyond the 1e-4 tolerance. Which
// layers are sparse is checked directly by the reference test.
func TestBranchModelsDiffer(t *testing.T) {
	edits := []struct {
		name string
		base int // index into branchCases
		edit map[string]any
	}{
		{"norm_topk_prob", 0, map[string]any{"norm_topk_prob": false}},
		{"rope_theta", 3, map[string]any{"rope_theta": 10000.0}},
		{"sliding window", 5, map[string]any{"use_sliding_window": false}},
		{"qwen3 sliding window", 8, map[string]any{"use_sliding_window": false}},
		{"qwen3_moe norm_topk_prob", 9, map[string]any{"norm_topk_prob": false}},
	}
	for _, e := range edits {
		t.Run(e.name, func(t *testing.T) {
			bc := branchCases[e.base]
			seqs := randomSeqs(1, 97, 11)
			a := loadModel(t, randomCheckpoint(t, bc.cfg, 5))
			cfg := maps.Clone(bc.cfg)
			maps.Copy(cfg, e.edit)
			b := loadModel(t, randomCheckpoint(t, cfg, 5))
			la, err := a.Logits(context.Background(), &model.Batch{Seqs: seqs}, nil)
			if err != nil {
				t.Fatal(err)
			}
			lb, err := b.Logits(context.Background(), &model.Batch{Seqs: seqs}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if d := relDiff(lb, la); d < 1e-3 {
				t.Errorf("changing %s moved the logits by only %.3g relative", e.name, d)
			}
		})
	}
}
