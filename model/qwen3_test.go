package model_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/safetensors"
)

// Cross-checks of the Qwen3 forward pass that do not depend on the float64
// reference of reference_test.go (which the branch tests use): properties
// that hold only if q_norm/k_norm are applied per head, to both q and k,
// after the projections and before the dot product; and exact equivalences
// with the Qwen2 forward pass that transformers fixtures already pin down.
// Parity with transformers-made Qwen3 fixtures is pending a session with a
// GPU device (testdata/fixtures/qwen3_recipe.md says how to make them).

// editTensors rewrites a checkpoint with the tensors edit returns and the
// config edit applies (nil: unchanged).
func editTensors(t testing.TB, src string, cfgEdit func(map[string]any), edit func([]tensorData) []tensorData, dtype safetensors.DType, shard int64) string {
	t.Helper()
	cfg := readConfigMap(t, src)
	if cfgEdit != nil {
		cfgEdit(cfg)
	}
	ts := readTensors(t, src)
	if edit != nil {
		ts = edit(ts)
	}
	dir := filepath.Join(t.TempDir(), "model")
	writeCheckpoint(t, dir, cfg, ts, dtype, shard)
	return dir
}

// scale multiplies the tensors whose name ends in suffix by f.
func scale(suffix string, f float32) func([]tensorData) []tensorData {
	return func(ts []tensorData) []tensorData {
		for i := range ts {
			if strings.HasSuffix(ts[i].name, suffix) {
				v := make([]float32, len(ts[i].data))
				for j, x := range ts[i].data {
					v[j] = x * f
				}
				ts[i].data = v
			}
		}
		return ts
	}
}

func chain(fs ...func([]tensorData) []tensorData) func([]tensorData) []tensorData {
	return func(ts []tensorData) []tensorData {
		for _, f := range fs {
			ts = f(ts)
		}
		return ts
	}
}

// TestQKNormProperties: q/k norm makes attention invariant to the scale of
// q_proj and k_proj (RMSNorm per head), scores depend on the product of
// the q_norm and k_norm weights (×2 and ×½ cancel), while scaling q_norm
// alone changes them. A forward pass that skipped the norm, applied it to
// only one of q and k, or after the dot product fails one of these.
func TestQKNormProperties(t *testing.T) {
	for _, cfg := range []map[string]any{
		qwen3Config(nil),
		qwen3MoEConfig(map[string]any{"num_key_value_heads": 1}),
	} {
		t.Run(cfg["model_type"].(string), func(t *testing.T) {
			src := randomCheckpoint(t, cfg, 21)
			seqs := randomSeqs(3, 97, 13, 6)
			base := logitsOf(t, loadModel(t, src), seqs)
			for _, tc := range []struct {
				name string
				edit func([]tensorData) []tensorData
				same bool
			}{
				{"q_proj ×3", scale("q_proj.weight", 3), true},
				{"k_proj ×0.25", scale("k_proj.weight", 0.25), true},
				{"q_norm ×2 k_norm ×½", chain(scale("q_norm.weight", 2), scale("k_norm.weight", 0.5)), true},
				{"q_norm ×2", scale("q_norm.weight", 2), false},
				{"k_norm ×½", scale("k_norm.weight", 0.5), false},
			} {
				got := logitsOf(t, loadModel(t, editTensors(t, src, nil, tc.edit, safetensors.F32, 0)), seqs)
				d := relDiff(got, base)
				if tc.same && d > 1e-5 {
					t.Errorf("%s: logits moved by %.3g relative, want ≤ 1e-5 (q/k norm should cancel it)", tc.name, d)
				}
				if !tc.same && d < 1e-3 {
					t.Errorf("%s: logits moved by only %.3g relative, want > 1e-3", tc.name, d)
				}
				t.Logf("%s: %.3g", tc.name, d)
			}
		})
	}
}

// asQwen2 turns a Qwen3(-MoE) checkpoint into the Qwen2(-MoE) one with the
// same weights: q_norm/k_norm dropped, zero q/k/v biases (qwen2 always has
// them), no shared expert, qkv_bias false for qwen2_moe.
func asQwen2(t testing.TB, src string) string {
	t.Helper()
	c, err := hf.ReadConfig(src)
	if err != nil {
		t.Fatal(err)
	}
	return editTensors(t, src, func(cfg map[string]any) {
		if cfg["model_type"] == "qwen3" {
			cfg["model_type"], cfg["architectures"] = "qwen2", []string{"Qwen2ForCausalLM"}
		} else {
			cfg["model_type"], cfg["architectures"] = "qwen2_moe", []string{"Qwen2MoeForCausalLM"}
			cfg["qkv_bias"], cfg["shared_expert_intermediate_size"] = false, 0
		}
		delete(cfg, "attention_bias")
	}, func(ts []tensorData) []tensorData {
		var out []tensorData
		for _, td := range ts {
			if !strings.HasSuffix(td.name, "_norm.weight") {
				out = append(out, td)
			}
		}
		if c.ModelType == hf.Qwen3 {
			for i := 0; i < c.NumHiddenLayers; i++ {
				for _, p := range []string{hf.QProj, hf.KProj, hf.VProj} {
					n := c.NumKeyValueHeads * c.HeadDim
					if p == hf.QProj {
						n = c.NumAttentionHeads * c.HeadDim
					}
					out = append(out, tensorData{hf.AttnLinear(i, p) + ".bias", []int{n}, make([]float32, n)})
				}
			}
		}
		return out
	}, safetensors.F32, 0)
}

// TestQwen3EqualsQwen2WhereQKNormCannotAct: on one-token sequences
// attention returns v whatever q and k are, so a Qwen3 model computes
// exactly what the Qwen2 model with the same weights computes; on longer
// sequences it does not (the norm acts). Dense and MoE, so embeddings,
// v/o, MLP, routing and experts are checked against the Qwen2 path.
func TestQwen3EqualsQwen2WhereQKNormCannotAct(t *testing.T) {
	for _, cfg := range []map[string]any{
		qwen3Config(map[string]any{"tie_word_embeddings": true}),
		qwen3MoEConfig(map[string]any{"num_hidden_layers": 3, "mlp_only_layers": []int{1}, "norm_topk_prob": false}),
	} {
		t.Run(cfg["model_type"].(string), func(t *testing.T) {
			src := randomCheckpoint(t, cfg, 22)
			q3, q2 := loadModel(t, src), loadModel(t, asQwen2(t, src))
			one := [][]int{{5}, {17}, {96}, {0}}
			if d := relDiff(logitsOf(t, q3, one), logitsOf(t, q2, one)); d > 1e-6 {
				t.Errorf("one-token sequences: qwen3 and qwen2 differ by %.3g relative", d)
			}
			long := randomSeqs(4, 97, 12)
			if d := relDiff(logitsOf(t, q3, long), logitsOf(t, q2, long)); d < 1e-3 {
				t.Errorf("12-token sequence: qwen3 and qwen2 agree to %.3g: q/k norm had no effect", d)
			}
		})
	}
}

// TestQwen3MoEFusedAndBF16: the fused-expert layout of a qwen3_moe
// checkpoint gives the per-expert logits (same weights), and a bf16 copy
// sharded into several files gives the logits of the float32 checkpoint
// holding the same bf16-rounded values (bf16 rounding itself moves these
// random models' logits by 1e-2 to 2e-1 relative when it flips a near-tied
// expert choice, so the exact comparison is the one that can fail).
func TestQwen3MoEFusedAndBF16(t *testing.T) {
	cfg := qwen3MoEConfig(map[string]any{"num_hidden_layers": 3, "mlp_only_layers": []int{0}})
	src := randomCheckpoint(t, cfg, 23)
	c, err := hf.ReadConfig(src)
	if err != nil {
		t.Fatal(err)
	}
	seqs := randomSeqs(5, 97, 10, 7)
	base := logitsOf(t, loadModel(t, src), seqs)
	fused := editTensors(t, src, nil, func(ts []tensorData) []tensorData { return fuseExperts(t, c, ts) }, safetensors.F32, 0)
	ck, err := hf.Open(fused)
	if err != nil {
		t.Fatal(err)
	}
	gu, _ := c.FusedExpertTensors(1)
	if _, ok := ck.Weights.Tensor(gu); !ok || len(ck.Unexpected) != 0 {
		t.Fatalf("fused checkpoint: %s present %v, unexpected %v", gu, ok, ck.Unexpected)
	}
	ck.Close()
	if d := relDiff(logitsOf(t, loadModel(t, fused), seqs), base); d > 1e-6 {
		t.Errorf("fused experts: logits differ by %.3g relative", d)
	}
	bf := editTensors(t, src, func(m map[string]any) { m["dtype"] = "bfloat16" }, nil, safetensors.BF16, 20_000)
	if n, _ := filepath.Glob(filepath.Join(bf, "*.safetensors")); len(n) < 2 {
		t.Fatalf("wanted a sharded bf16 checkpoint, got %v", n)
	}
	rounded := editTensors(t, bf, nil, nil, safetensors.F32, 0) // the bf16 values, widened, stored as f32
	want := logitsOf(t, loadModel(t, rounded), seqs)
	if d := relDiff(logitsOf(t, loadModel(t, bf), seqs), want); d > 1e-6 {
		t.Errorf("bf16 sharded: logits differ from the f32 copy of the same values by %.3g relative", d)
	}
	if d := relDiff(want, base); d == 0 {
		t.Error("bf16 rounding changed nothing: the checkpoint was not rounded")
	}
}

// BenchmarkQwen3Forward measures the forward pass of Qwen3 and Qwen3-MoE
// models of the shape of the shipped small models (hidden 256, 4 layers,
// 8 q / 4 kv heads of 32, FFN 1024; 16 experts × 128 top-4) on 4 × 256
// tokens, against their Qwen2 twins (same weights without q/k norm): the
// ratio is the cost of q/k norm. tokens/s counts every input token.
func BenchmarkQwen3Forward(b *testing.B) {
	shape := map[string]any{"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4,
		"num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 32, "vocab_size": 1024, "max_position_embeddings": 512}
	dense, moe := qwen3Config(shape), qwen3MoEConfig(shape)
	moe["num_experts"], moe["num_experts_per_tok"], moe["moe_intermediate_size"] = 16, 4, 128
	seqs := randomSeqs(9, 1024, 256, 256, 256, 256)
	for _, tc := range []struct {
		name string
		cfg  map[string]any
	}{{"qwen3", dense}, {"qwen3_moe", moe}} {
		q3 := randomCheckpoint(b, tc.cfg, 31)
		for _, v := range []struct{ name, dir string }{{tc.name, q3}, {tc.name + "/qwen2-twin", asQwen2(b, q3)}} {
			b.Run(v.name, func(b *testing.B) {
				m := loadModel(b, v.dir)
				for b.Loop() {
					logitsOf(b, m, seqs)
				}
				b.ReportMetric(float64(b.N*4*256)/b.Elapsed().Seconds(), "tokens/s")
			})
		}
	}
}
