package convert

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/safetensors"
)

// qwen3FromDense writes a dense qwen3 checkpoint with qwen2_dense_tiny's
// weights (FFN 256, GQA 4/2, tied embeddings): q/k/v biases dropped
// (attention_bias false), q_norm/k_norm weights 1 + 0.3·sin(i) so that the
// norm is not the identity; edit changes config keys.
func qwen3FromDense(t *testing.T, edit map[string]any) string {
	t.Helper()
	return qwen3From(t, denseTiny(t), edit)
}

// qwen3From writes the dense qwen2 checkpoint src as a qwen3 checkpoint the
// way qwen3FromDense does, in float32, head_dim hidden/heads. No tokenizer
// files are copied.
func qwen3From(t *testing.T, src string, edit map[string]any) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["model_type"], cfg["architectures"], cfg["attention_bias"] = "qwen3", []string{"Qwen3ForCausalLM"}, false
	cfg["head_dim"] = cfg["hidden_size"].(float64) / cfg["num_attention_heads"].(float64) // qwen2's; absent, Qwen3Config would mean 128
	for k, v := range edit {
		cfg[k] = v
	}
	raw, _ = json.Marshal(cfg)
	c, err := hf.ParseConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	in := openCheckpoint(t, src)
	dir := t.TempDir()
	var plan []safetensors.Info
	data := map[string][]byte{}
	for _, spec := range c.Tensors() {
		plan = append(plan, safetensors.Info{Name: spec.Name, DType: safetensors.F32, Shape: spec.Shape})
		if tt, ok := in.Weights.Tensor(spec.Name); ok {
			v, err := tt.Float32()
			if err != nil {
				t.Fatal(err)
			}
			data[spec.Name], _ = encode(spec.Name, safetensors.F32, v)
			continue
		}
		v := make([]float32, spec.Shape[0]) // q_norm / k_norm
		for i := range v {
			v[i] = float32(1 + 0.3*math.Sin(float64(i+len(spec.Name))))
		}
		data[spec.Name], _ = encode(spec.Name, safetensors.F32, v)
	}
	w, err := safetensors.NewDirWriter(dir, plan, safetensors.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range plan {
		if err := w.Write(info.Name, data[info.Name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteFile(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestUpcycleQwen3: qwen3 → qwen3_moe by virtual-group is exact (all
// layers, and some layers kept dense), the output has no shared expert and
// every tensor transformers builds for the config; splitting the result is
// exact too. (This replaces the refactor's stand-in test that faked a
// target without a shared expert.)
func TestUpcycleQwen3(t *testing.T) {
	dense := qwen3FromDense(t, nil)
	seqs := randomSeqs(1024)
	ref := openModel(t, dense)
	for _, tc := range []struct {
		name string
		opts UpcycleOptions
	}{
		{"every layer", UpcycleOptions{Mode: VirtualGroup, ExpertSize: 64}},
		{"layers 0,2", UpcycleOptions{Mode: VirtualGroup, ExpertSize: 32, Experts: 16, TopK: 8, MoELayers: []int{0, 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Upcycle(openCheckpoint(t, dense), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if p.Config.ModelType != hf.Qwen3MoE || p.Config.HasSharedExpert() || p.Summary.SharedSize != 0 ||
				!strings.Contains(p.Summary.Upcycle.SharedExpert, "none") {
				t.Errorf("config %s, shared %d, summary %+v", p.Config.ModelType, p.Summary.SharedSize, p.Summary.Upcycle)
			}
			out := writePlan(t, p, 0)
			checkLoadable(t, out)
			m := parity(t, ref, openModel(t, out), seqs)
			if m.MaxRelLogitDiff > exactTol || m.Top1Agreement != 1 {
				t.Errorf("upcycled qwen3_moe: max rel Δlogit %.3g, top-1 %.4f", m.MaxRelLogitDiff, m.Top1Agreement)
			}
			sp, err := Split(openCheckpoint(t, out), SplitOptions{Factor: 2})
			if err != nil {
				t.Fatal(err)
			}
			split := writePlan(t, sp, 0)
			checkLoadable(t, split)
			if m := parity(t, ref, openModel(t, split), seqs); m.MaxRelLogitDiff > exactTol {
				t.Errorf("split of the upcycled model: max rel Δlogit %.3g", m.MaxRelLogitDiff)
			}
		})
	}
	// megatron-scaled (approximate) builds no shared expert either.
	for _, mode := range []Mode{MegatronScaled} {
		p, err := Upcycle(openCheckpoint(t, dense), UpcycleOptions{Mode: mode, ExpertSize: 64})
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		checkLoadable(t, writePlan(t, p, 0))
	}
}

// TestUpcycleQwen3Refusals: recipes that need a shared expert, and a
// sliding window that qwen3_moe would apply to other layers, are refused
// with the reason.
func TestUpcycleQwen3Refusals(t *testing.T) {
	dense := openCheckpoint(t, qwen3FromDense(t, nil))
	for _, tc := range []struct {
		opts UpcycleOptions
		want []string
	}{
		{UpcycleOptions{Mode: SharedExact}, []string{"shared-exact", "qwen3_moe has no shared expert", "virtual-group"}},
		// The silent shared expert of virtual-group is left out; an explicit width is an error.
		{UpcycleOptions{Mode: HybridExact}, []string{"hybrid-exact", "no shared expert"}},
		{UpcycleOptions{Mode: Qwen2Report}, []string{"qwen2-report", "no shared expert"}},
		{UpcycleOptions{Mode: VirtualGroup, SharedSize: 64}, []string{"--shared-size 64", "no shared expert"}},
	} {
		_, err := Upcycle(dense, tc.opts)
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: error %v, want it to mention %q", tc.opts, err, w)
			}
		}
	}
	windowed := openCheckpoint(t, qwen3FromDense(t, map[string]any{"use_sliding_window": true, "sliding_window": 8,
		"layer_types": []string{"full_attention", "sliding_attention", "sliding_attention"}}))
	if _, err := Upcycle(windowed, UpcycleOptions{Mode: VirtualGroup}); err == nil || !strings.Contains(err.Error(), "layer 0") || !strings.Contains(err.Error(), "window") {
		t.Errorf("per-layer windows: %v", err)
	}
	every := openCheckpoint(t, qwen3FromDense(t, map[string]any{"use_sliding_window": true, "sliding_window": 8,
		"layer_types": []string{"sliding_attention", "sliding_attention", "sliding_attention"}}))
	p, err := Upcycle(every, UpcycleOptions{Mode: VirtualGroup})
	if err != nil {
		t.Fatalf("window on every layer: %v", err)
	}
	seqs := randomSeqs(1024)
	if m := parity(t, openModel(t, every.Dir), openModel(t, writePlan(t, p, 0)), seqs); m.MaxRelLogitDiff > exactTol {
		t.Errorf("windowed upcycle: max rel Δlogit %.3g", m.MaxRelLogitDiff)
	}
}
