package export

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/formats/gptq"
	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/mlx"
	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/fixture"
	"github.com/moeforge/moeforge/internal/gemm"
	"github.com/moeforge/moeforge/model"
	"github.com/moeforge/moeforge/quantize"
)

// fixtureCopy materializes testdata/rel into a fresh temporary directory.
func fixtureCopy(t *testing.T, rel string) string {
	t.Helper()
	root, err := fixture.Root()
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), filepath.Base(rel))
	if err := fixture.Materialize(filepath.Join(root, rel), dst); err != nil {
		t.Fatal(err)
	}
	return dst
}

func widen(m gemm.Matrix) []float32 {
	d := make([]float32, m.Rows()*m.Cols())
	m.Widen(d, m.Cols(), 0, m.Rows(), 0, m.Cols())
	return d
}

// TestMLXGPTQRepackExact: a GPTQ int4 checkpoint (group 64, so the expert
// down_proj with 32 inputs has one group of 32 and needs an override)
// exported to MLX dequantizes to the same float32 weights bit for bit.
func TestMLXGPTQRepackExact(t *testing.T) {
	for _, sym := range []bool{true, false} {
		src := fixtureCopy(t, "fixtures/qwen2_moe_tiny/model")
		ck, err := hf.Open(src)
		if err != nil {
			t.Fatal(err)
		}
		gdir := t.TempDir()
		opt := quantize.DefaultOptions()
		opt.Method = quantize.MethodRTN
		opt.Config = gptq.NewConfig(64, sym, false, false, true, 0.01)
		if _, err := quantize.Run(context.Background(), ck, gdir, nil, opt); err != nil {
			t.Fatal(err)
		}
		ck.Close()
		out := filepath.Join(t.TempDir(), "mlx")
		s, err := MLX(context.Background(), gdir, out, MLXOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]string{true: "F16", false: "F32"}[sym]; s.ScalesDType != want {
			t.Errorf("sym=%v: scales %s, want %s", sym, s.ScalesDType, want)
		}
		if s.Source != "gptq" || s.GroupSize != 64 || s.Overrides == 0 {
			t.Errorf("summary %+v: want gptq, group 64, overrides for the 32-input down_proj", s)
		}
		assertMLXRepackExact(t, gdir, out)
	}
}

// TestMLXFloatLayout checks the MLX layout of a float export: shard
// metadata, stacked switch_mlp experts, uint32 words, scales/biases in the
// model dtype, config keys and the router override, and that every weight
// dequantizes within one step of the float weight.
func TestMLXFloatLayout(t *testing.T) {
	src := fixtureCopy(t, "fixtures/qwen2_moe_tiny/model")
	out := filepath.Join(t.TempDir(), "mlx")
	if _, err := MLX(context.Background(), src, out, MLXOptions{Bits: 4, GroupSize: 32, EmbeddingBits: 8}); err != nil {
		t.Fatal(err)
	}
	if !mlx.IsDir(out) || mlx.IsDir(src) {
		t.Fatal("IsDir does not tell MLX from Hugging Face")
	}
	m, err := mlx.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, f := range m.Weights.Files {
		if f.Metadata["format"] != "mlx" {
			t.Errorf("%s: metadata %v", f.Path, f.Metadata)
		}
	}
	c := m.Config
	sw, err := m.Tensor(mlx.SwitchModule(c, 0, hf.GateProj) + ".weight")
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{c.NumExperts, c.MoEIntermediateSize, c.HiddenSize / 8}; sw.DType != "U32" || !slices.Equal(sw.Shape, want) {
		t.Errorf("switch_mlp gate weight %s %v, want U32 %v", sw.DType, sw.Shape, want)
	}
	sc, _ := m.Tensor(mlx.SwitchModule(c, 0, hf.DownProj) + mlx.SuffixScales)
	if want := []int{c.NumExperts, c.HiddenSize, c.MoEIntermediateSize / 32}; sc == nil || sc.DType != "F32" || !slices.Equal(sc.Shape, want) {
		t.Errorf("down scales %v, want F32 %v", sc, want)
	}
	if _, ok := m.Weights.Tensor("model.layers.0.mlp.experts.0.gate_proj.weight"); ok {
		t.Error("per-expert tensor written")
	}
	var cfg map[string]json.RawMessage
	data, _ := os.ReadFile(filepath.Join(out, "config.json"))
	json.Unmarshal(data, &cfg)
	for _, k := range []string{"quantization", "quantization_config"} {
		var q map[string]any
		json.Unmarshal(cfg[k], &q)
		if q["bits"] != 4.0 || q["group_size"] != 32.0 || q["mode"] != "affine" {
			t.Errorf("%s = %s", k, cfg[k])
		}
		for _, module := range []string{"model.layers.0.mlp.gate", "model.layers.2.mlp.shared_expert_gate", "model.embed_tokens", "lm_head"} {
			if r, ok := q[module].(map[string]any); !ok || r["bits"] != 8.0 {
				t.Errorf("%s: 8-bit override of %s missing: %s", k, module, cfg[k])
			}
		}
	}
	if n := assertMLXNearFloat(t, src, m); n != 0 {
		t.Errorf("%d linears stayed float", n)
	}
}

// assertMLXNearFloat checks every linear of the MLX directory m against the
// float checkpoint src it was exported from: an affine module dequantizes
// within one step of the float weight, a float module equals it. It returns
// the number of float modules.
func assertMLXNearFloat(t *testing.T, src string, m *mlx.Checkpoint) (floats int) {
	t.Helper()
	ref, err := hf.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	for _, l := range m.Linears() {
		w, _, err := m.Linear(l)
		if err != nil {
			t.Fatal(err)
		}
		lw, err := ref.Linear(l)
		if err != nil {
			t.Fatal(err)
		}
		fw, _ := lw.Weight.Float32()
		if w.Affine == nil {
			got, _ := w.Float.Float32()
			if !slices.Equal(got, fw) {
				t.Errorf("%s: float module differs from the source", l.Name)
			}
			floats++
			continue
		}
		got := widen(*w.Affine)
		a := w.Affine
		for i := range fw {
			s := a.Scales[(i/a.K)*(a.K/a.Group)+(i%a.K)/a.Group]
			if d := math.Abs(float64(got[i] - fw[i])); d > math.Abs(float64(s))*1.01+1e-6 {
				t.Fatalf("%s element %d: %g dequantizes to %g (step %g)", l.Name, i, fw[i], got[i], s)
			}
		}
	}
	return floats
}

// TestMLXRefusals: configs mlx-lm computes differently are refused,
// naming the key, and nothing is left behind.
func TestMLXRefusals(t *testing.T) {
	src := fixtureCopy(t, "fixtures/qwen2_moe_tiny/model")
	cfgPath := filepath.Join(src, "config.json")
	orig, _ := os.ReadFile(cfgPath)
	for key, val := range map[string]any{"norm_topk_prob": true, "decoder_sparse_step": 3, "mlp_only_layers": []int{1}, "head_dim": 32} {
		var c map[string]any
		json.Unmarshal(orig, &c)
		c[key] = val
		b, _ := json.Marshal(c)
		os.WriteFile(cfgPath, b, 0o644)
		out := filepath.Join(t.TempDir(), "mlx")
		_, err := MLX(context.Background(), src, out, MLXOptions{Bits: 4, GroupSize: 32})
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s=%v: error %v does not name the key", key, val, err)
		}
		if _, serr := os.Stat(out); serr == nil {
			t.Errorf("%s: output left behind", key)
		}
	}
	os.WriteFile(cfgPath, orig, 0o644)
	if _, err := MLX(context.Background(), src, filepath.Join(t.TempDir(), "x"), MLXOptions{Bits: 4, GroupSize: 48}); err == nil || !strings.Contains(err.Error(), "group_size") {
		t.Errorf("group 48: %v", err)
	}
}

// TestMLXArchitectures: for each architecture, the MLX repack of a GPTQ
// (RTN) checkpoint gives the forward pass the GPTQ logits (to float32
// summation order), and
// a float 8-bit export stays close to the float model; tied qwen2 writes no
// lm_head (mlx-lm's qwen2 drops it), tied qwen2_moe writes one.
func TestMLXArchitectures(t *testing.T) {
	for _, fx := range []string{"fixtures/mixtral_tiny/model", "fixtures/qwen2_dense_tiny/model", "fixtures/qwen2_moe_tiny/model"} {
		src := fixtureCopy(t, fx)
		ck, err := hf.Open(src)
		if err != nil {
			t.Fatal(err)
		}
		tied := ck.Config.TieWordEmbeddings
		gdir := t.TempDir()
		opt := quantize.DefaultOptions()
		opt.Method = quantize.MethodRTN
		opt.Config = gptq.NewConfig(32, true, false, false, true, 0.01)
		if _, err := quantize.Run(context.Background(), ck, gdir, nil, opt); err != nil {
			t.Fatal(err)
		}
		ck.Close()
		out := filepath.Join(t.TempDir(), "mlx")
		if _, err := MLX(context.Background(), gdir, out, MLXOptions{}); err != nil {
			t.Fatalf("%s: %v", fx, err)
		}
		m, err := mlx.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		if _, has := m.Weights.Tensor("lm_head.weight"); tied && has != (m.Config.ModelType == hf.Qwen2MoE) {
			t.Errorf("%s: tied input, lm_head written = %v", fx, has)
		}
		m.Close()
		seqs := [][]int{{1, 5, 9, 200, 3, 77, 12, 0}, {4, 4, 8, 15, 16, 23, 42, 99}}
		// The weights are equal bit for bit (TestMLXGPTQRepackExact); the
		// products may still sum in another order (GPTQ's int4 paths are
		// specialized), so the logits are compared at float32 rounding.
		ref := logits(t, gdir, seqs)
		got := logits(t, out, seqs)
		var maxRef, maxDiff float64
		for i := range ref {
			maxRef = max(maxRef, math.Abs(float64(ref[i])))
			maxDiff = max(maxDiff, math.Abs(float64(ref[i]-got[i])))
		}
		if maxDiff > 1e-5*maxRef {
			t.Errorf("%s: MLX repack logits differ from GPTQ by %g (max |logit| %g)", fx, maxDiff, maxRef)
		}
		f8 := filepath.Join(t.TempDir(), "mlx8")
		if _, err := MLX(context.Background(), src, f8, MLXOptions{Bits: 8, GroupSize: 32}); err != nil {
			t.Fatalf("%s: %v", fx, err)
		}
		fl, q8 := logits(t, src, seqs), logits(t, f8, seqs)
		maxRef, maxDiff = 0, 0
		for i := range fl {
			maxRef = max(maxRef, math.Abs(float64(fl[i])))
			maxDiff = max(maxDiff, math.Abs(float64(fl[i]-q8[i])))
		}
		if maxDiff > 0.05*maxRef {
			t.Errorf("%s: 8-bit MLX logits differ by %g (max |logit| %g)", fx, maxDiff, maxRef)
		}
		t.Logf("%s: 8-bit max |Δlogit| %.3g of %.3g", fx, maxDiff, maxRef)
	}
}

func logits(t *testing.T, dir string, seqs [][]int) []float32 {
	t.Helper()
	m, err := model.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	l, err := m.Logits(context.Background(), &model.Batch{Seqs: seqs}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestMLXGPTQWidths repacks GPTQ checkpoints of every width MLX packs
// along words (2, 4, 8 bits, and 4-bit gptq_v2) and checks every
// dequantized weight against the GPTQ reader's, bit for bit.
func TestMLXGPTQWidths(t *testing.T) {
	for _, tc := range []struct {
		bits   int
		format string
	}{{2, gptq.FormatV1}, {8, gptq.FormatV1}, {4, gptq.FormatV2}} {
		t.Run(fmt.Sprintf("%d-bit-%s", tc.bits, tc.format), func(t *testing.T) {
			mlxGPTQWidthCase(t, tc.bits, tc.format)
		})
	}
}

func mlxGPTQWidthCase(t *testing.T, bits int, format string) {
	src := fixtureCopy(t, "fixtures/qwen2_moe_tiny/model")
	ck, err := hf.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	gdir := t.TempDir()
	opt := quantize.DefaultOptions()
	opt.Method = quantize.MethodRTN
	opt.Config = gptq.NewConfig(32, true, false, false, true, 0.01)
	opt.Config.Bits, opt.Config.CheckpointFormat = bits, format
	if _, err := quantize.Run(context.Background(), ck, gdir, nil, opt); err != nil {
		t.Fatal(err)
	}
	ck.Close()
	out := filepath.Join(t.TempDir(), "mlx")
	s, err := MLX(context.Background(), gdir, out, MLXOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Bits != bits {
		t.Errorf("summary bits %d, want %d", s.Bits, bits)
	}
	assertMLXRepackExact(t, gdir, out)
}

// assertMLXRepackExact checks that every GPTQ linear of gdir is quantized in
// the MLX export out and dequantizes there to the GPTQ weights bit for bit,
// and that every float linear stays float.
func assertMLXRepackExact(t *testing.T, gdir, out string) {
	t.Helper()
	g, err := hf.Open(gdir)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	lay, err := g.Config.Quantization.Layout()
	if err != nil {
		t.Fatal(err)
	}
	m, err := mlx.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	quantized := 0
	for _, l := range m.Linears() {
		lw, err := g.Linear(l)
		if err != nil {
			t.Fatal(err)
		}
		w, _, err := m.Linear(l)
		if err != nil {
			t.Fatal(err)
		}
		if !lw.Quantized() {
			if w.Affine != nil {
				t.Errorf("%s: float in GPTQ, quantized in MLX", l.Name)
			}
			continue
		}
		p, err := lay.Read(l.Name, l.Out, l.In, lw.GPTQ())
		if err != nil {
			t.Fatal(err)
		}
		layer, err := p.Unpack()
		if err != nil {
			t.Fatal(err)
		}
		ref := layer.Dequantize()
		if w.Affine == nil {
			t.Fatalf("%s: GPTQ layer exported as float", l.Name)
		}
		got := widen(*w.Affine)
		for i := range ref {
			if math.Float32bits(ref[i]) != math.Float32bits(got[i]) {
				t.Fatalf("%s element %d: MLX %g, GPTQ %g", l.Name, i, got[i], ref[i])
			}
		}
		quantized++
	}
	if quantized == 0 {
		t.Fatal("no quantized layer compared")
	}
}

// maxRelDiff is max |a−b| over max |a|.
func maxRelDiff(a, b []float32) float64 {
	var maxRef, maxDiff float64
	for i := range a {
		maxRef = max(maxRef, math.Abs(float64(a[i])))
		maxDiff = max(maxDiff, math.Abs(float64(a[i]-b[i])))
	}
	return maxDiff / maxRef
}

// TestMLXQwen3 exports tiny qwen3 and qwen3_moe checkpoints (head_dim 16 ≠
// hidden/heads; qwen3_moe with a dense layer and renormalized top-k): the
// GPTQ (RTN) repack dequantizes to the GPTQ weights bit for bit and gives
// the forward pass the GPTQ logits; a float 8-bit export keeps q_norm and
// k_norm float, stacks the experts under mlp.switch_mlp, writes the
// top-level keys mlx-lm's ModelArgs require, and stays close to the float
// model; a tied qwen3 writes no lm_head (mlx-lm's sanitize drops it).
func TestMLXQwen3(t *testing.T) {
	seqs := [][]int{{1, 5, 9, 200, 3, 77, 12, 0}, {4, 4, 8, 15, 16, 23, 42, 99}}
	for _, tc := range []struct {
		name string
		moe  bool
		edit map[string]any
	}{
		{"qwen3", false, nil},
		{"qwen3_tied", false, map[string]any{"tie_word_embeddings": true}},
		{"qwen3_moe", true, map[string]any{"moe_intermediate_size": 32, "num_hidden_layers": 3, "mlp_only_layers": []int{1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := writeQwen3Ckpt(t, tc.moe, tc.edit)
			gdir := rtnCheckpoint(t, src, 32, true)
			out := filepath.Join(t.TempDir(), "mlx")
			s, err := MLX(context.Background(), gdir, out, MLXOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if s.Source != "gptq" || s.ScalesDType != "F16" {
				t.Errorf("summary %+v", s)
			}
			assertMLXRepackExact(t, gdir, out)
			if d := maxRelDiff(logits(t, gdir, seqs), logits(t, out, seqs)); d > 1e-5 {
				t.Errorf("MLX repack logits differ from GPTQ by %g relative", d)
			}

			f8 := filepath.Join(t.TempDir(), "mlx8")
			if _, err := MLX(context.Background(), src, f8, MLXOptions{Bits: 8, GroupSize: 32}); err != nil {
				t.Fatal(err)
			}
			m, err := mlx.Open(f8)
			if err != nil {
				t.Fatal(err)
			}
			c := m.Config
			floats := assertMLXNearFloat(t, src, m)
			if want := len(c.MoELayers()); floats != want { // the routers: 32 inputs, not a group of 64
				t.Errorf("%d float linears, want %d", floats, want)
			}
			for _, n := range []string{hf.QNorm(0), hf.KNorm(0)} {
				if w, err := m.Tensor(n); err != nil || w.DType != "F32" || !slices.Equal(w.Shape, []int{c.HeadDim}) {
					t.Errorf("%s: %v %v", n, w, err)
				}
			}
			if _, has := m.Weights.Tensor(hf.LMHead + ".weight"); has != !c.TieWordEmbeddings {
				t.Errorf("lm_head written = %v with tie_word_embeddings %v", has, c.TieWordEmbeddings)
			}
			if tc.moe {
				sw, err := m.Tensor(mlx.SwitchModule(c, 0, hf.DownProj) + ".weight")
				if want := []int{c.NumExperts, c.HiddenSize, c.MoEIntermediateSize / 4}; err != nil || sw.DType != "U32" || !slices.Equal(sw.Shape, want) {
					t.Errorf("switch_mlp down_proj %v %v, want U32 %v", sw, err, want)
				}
				if _, has := m.Weights.Tensor("model.layers.1.mlp.gate_proj.weight"); !has {
					t.Error("dense layer 1 (mlp_only_layers) has no mlp.gate_proj")
				}
			}
			m.Close()
			var cfg map[string]any
			data, _ := os.ReadFile(filepath.Join(f8, "config.json"))
			json.Unmarshal(data, &cfg)
			want := map[string]any{"head_dim": 16.0, "rope_theta": 1e6}
			if tc.moe {
				want["num_experts"], want["norm_topk_prob"], want["decoder_sparse_step"] = 8.0, true, 1.0
			}
			for k, v := range want {
				if cfg[k] != v {
					t.Errorf("config.json %s = %v, want %v", k, cfg[k], v)
				}
			}
			// The MLX model is the one its dequantized weights make: same
			// logits to float32 rounding, same expert choices.
			deq := dequantizedCopy(t, src, f8)
			ref, wantRoutes := logitsAndRoutes(t, deq, seqs)
			got, gotRoutes := logitsAndRoutes(t, f8, seqs)
			if d := maxRelDiff(ref, got); d > 1e-5 {
				t.Errorf("8-bit MLX logits differ from its dequantized weights' by %g relative", d)
			}
			if diff := cmp.Diff(wantRoutes, gotRoutes); diff != "" {
				t.Errorf("expert choices (-dequantized +MLX):\n%s", diff)
			}
			if tc.moe && len(gotRoutes) != 2 {
				t.Errorf("routes of %d MoE layers, want 2", len(gotRoutes))
			}
			// Against the float model, only the dense qwen3 is compared:
			// the tiny random qwen3_moe's near-tied routers flip under
			// 8-bit noise (measured: up to 0.9 of max |logit| at a flipped
			// position), which says nothing about the export.
			if d := maxRelDiff(logits(t, src, seqs), logits(t, f8, seqs)); !tc.moe && d > 0.05 {
				t.Errorf("8-bit MLX logits differ from the float model's by %g relative", d)
			} else {
				t.Logf("8-bit vs float: max |Δlogit| / max |logit| = %.3g", d)
			}
		})
	}
}

// TestMLXQwen3Refusals: attention_bias (mlx-lm's Qwen3 has no biases) and
// sliding-window attention are refused naming the key, nothing left behind.
func TestMLXQwen3Refusals(t *testing.T) {
	for _, tc := range []struct {
		moe  bool
		edit map[string]any
		key  string
	}{
		{false, map[string]any{"attention_bias": true}, "attention_bias"},
		{true, map[string]any{"attention_bias": true}, "attention_bias"},
		{false, map[string]any{"use_sliding_window": true, "sliding_window": 4, "max_window_layers": 0}, "sliding_window"},
	} {
		src := writeQwen3Ckpt(t, tc.moe, tc.edit)
		out := filepath.Join(t.TempDir(), "mlx")
		if _, err := MLX(context.Background(), src, out, MLXOptions{Bits: 4, GroupSize: 32}); err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%v: error %v does not name %s", tc.edit, err, tc.key)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%v: output left behind", tc.edit)
		}
	}
}

// dequantizedCopy writes, next to the MLX directory mdir exported from the
// float checkpoint src, a float32 Hugging Face checkpoint of src's config
// holding the weights mdir dequantizes to (norms and float modules as
// mdir stores them): the model an MLX runtime computes, in the layout the
// reference forward pass reads.
func dequantizedCopy(t *testing.T, src, mdir string) string {
	t.Helper()
	m, err := mlx.Open(mdir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c := m.Config
	values := map[string][]float32{}
	for _, l := range append(m.Linears(), hf.Linear{Name: strings.TrimSuffix(hf.EmbedTokens, ".weight"), Out: c.VocabSize, In: c.HiddenSize, Expert: -1}) {
		module, e := m.ModuleOf(l)
		w, err := m.Module(module, l.Out, l.In, e, true)
		if err != nil {
			t.Fatal(err)
		}
		if w.Affine != nil {
			values[l.Name+".weight"] = widen(*w.Affine)
		} else if values[l.Name+".weight"], err = w.Float.Float32(); err != nil {
			t.Fatal(err)
		}
		if l.Bias {
			b, err := m.Tensor(l.Name + ".bias")
			if err != nil {
				t.Fatal(err)
			}
			values[l.Name+".bias"], _ = b.Float32()
		}
	}
	var plan []safetensors.Info
	for _, spec := range c.Tensors() {
		if _, ok := values[spec.Name]; !ok {
			v, err := m.Tensor(spec.Name) // norms
			if err != nil {
				t.Fatal(err)
			}
			values[spec.Name], _ = v.Float32()
		}
		plan = append(plan, safetensors.Info{Name: spec.Name, DType: safetensors.F32, Shape: spec.Shape})
	}
	dir := filepath.Join(t.TempDir(), "dequantized")
	if err := fixture.Materialize(src, dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{safetensors.SingleFile, safetensors.IndexFile} {
		os.Remove(filepath.Join(dir, f))
	}
	w, err := safetensors.NewDirWriter(dir, plan, safetensors.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range plan {
		var b []byte
		for _, v := range values[info.Name] {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
		if err := w.Write(info.Name, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestMLXRopeTheta: config.json carries rope_theta at the top level, where
// mlx-lm's qwen2 and mixtral read it (they ignore rope_parameters and
// default to 1e6), also when the input keeps it in rope_parameters.
func TestMLXRopeTheta(t *testing.T) {
	for _, fx := range []string{"fixtures/qwen2_dense_tiny/model", "fixtures/mixtral_tiny/model"} {
		src := fixtureCopy(t, fx)
		path := filepath.Join(src, "config.json")
		var cfg map[string]any
		data, _ := os.ReadFile(path)
		json.Unmarshal(data, &cfg)
		delete(cfg, "rope_theta")
		cfg["rope_parameters"] = map[string]any{"rope_type": "default", "rope_theta": 12345.0}
		data, _ = json.Marshal(cfg)
		os.WriteFile(path, data, 0o644)
		out := filepath.Join(t.TempDir(), "mlx")
		if _, err := MLX(context.Background(), src, out, MLXOptions{Bits: 8, GroupSize: 32}); err != nil {
			t.Fatal(err)
		}
		data, _ = os.ReadFile(filepath.Join(out, "config.json"))
		cfg = nil
		json.Unmarshal(data, &cfg)
		if cfg["rope_theta"] != 12345.0 {
			t.Errorf("%s: config.json rope_theta = %v, want 12345", fx, cfg["rope_theta"])
		}
		m, err := mlx.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		if m.Config.RopeTheta != 12345 {
			t.Errorf("%s: read back rope_theta %g", fx, m.Config.RopeTheta)
		}
		m.Close()
	}
}
