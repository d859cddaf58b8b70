package quantize

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/moeforge/moeforge/corpus"
	"github.com/moeforge/moeforge/formats/gptq"
	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
	"github.com/moeforge/moeforge/model"
	"github.com/moeforge/moeforge/verify"
)

func TestMain(m *testing.M) {
	code := m.Run()
	fixturetest.Cleanup()
	os.Exit(code)
}

// tinyModel returns the materialized model directory of a tiny fixture.
func tinyModel(t testing.TB, name string) string {
	t.Helper()
	return filepath.Join(fixturetest.Dir(t, "fixtures/"+name), "model")
}

func openCheckpoint(t testing.TB, dir string) *hf.Checkpoint {
	t.Helper()
	ck, err := hf.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ck.Close() })
	return ck
}

// quantizeTo runs Run from src into a new directory and returns it, the
// report and every quantized layer by module name.
func quantizeTo(t *testing.T, src string, calib [][]int, opt Options) (string, *Report, map[string]*gptq.Layer) {
	t.Helper()
	ck := openCheckpoint(t, src)
	dir := t.TempDir()
	layers := map[string]*gptq.Layer{}
	opt.observe = func(name string, l *gptq.Layer) { layers[name] = l }
	rep, err := Run(context.Background(), ck, dir, calib, opt)
	if err != nil {
		t.Fatal(err)
	}
	return dir, rep, layers
}

func defaultOptions() Options {
	return Options{Method: MethodGPTQ, Config: gptq.Config{GroupSize: 32, Sym: true, DampPercent: 0.01, TrueSequential: true},
		MinExpertTokens: -1, ExpertFallback: FallbackRTN, ChunkTokens: 100}
}

// TestRunTinyCheckpoints quantizes the tiny fixtures (group 32 so that
// layers have several groups; act-order, asymmetric and non-true-sequential
// variants) and checks the output checkpoint: it opens and loads, every
// quantized linear dequantizes exactly (tolerance 0) to the Q the algorithm
// chose, non-quantized tensors are byte-identical to the input's, biases are
// the input's rounded to float16, the configs carry every field, the extra
// files are copied, and the quantized model's predictions stay close to the
// original's (KL below 0.5 nats on random tokens for these random-weight
// models).
func TestRunTinyCheckpoints(t *testing.T) {
	tests := []struct {
		name    string
		fixture string
		edit    func(o *Options)
	}{
		{"qwen2_moe group 32", "qwen2_moe_tiny", nil},
		{"qwen2_moe act-order asym", "qwen2_moe_tiny", func(o *Options) { o.Config.DescAct, o.Config.Sym = true, false }},
		{"qwen2_moe act-order static groups", "qwen2_moe_tiny", func(o *Options) { o.Config.DescAct, o.Config.StaticGroups = true, true }},
		{"qwen2_moe not true-sequential, all-tokens fallback", "qwen2_moe_tiny", func(o *Options) {
			o.Config.TrueSequential, o.ExpertFallback = false, FallbackAllTokens
		}},
		{"qwen2_moe sharded bf16, group 128", "qwen2_moe_tiny_sharded", func(o *Options) { o.Config.GroupSize = 128 }},
		{"mixtral group 32 act-order", "mixtral_tiny", func(o *Options) { o.Config.DescAct = true }},
		{"mixtral all-tokens fallback", "mixtral_tiny", func(o *Options) { o.ExpertFallback = FallbackAllTokens }},
		{"qwen2 dense tied, group -1", "qwen2_dense_tiny", func(o *Options) { o.Config.GroupSize = -1 }},
		{"qwen2_moe rtn", "qwen2_moe_tiny", func(o *Options) { o.Method = MethodRTN }},
		{"mixtral all-experts calibration, 3-bit", "mixtral_tiny", func(o *Options) { o.MoECalib, o.Config.Bits = MoECalib{Mode: MoECalibAll}, 3 }},
		{"qwen2_moe top-k=2 calibration, 8-bit gptq_v2 asym", "qwen2_moe_tiny", func(o *Options) {
			o.MoECalib = MoECalib{Mode: MoECalibTopK, TopK: 2}
			o.Config.Bits, o.Config.CheckpointFormat, o.Config.Sym = 8, gptq.FormatV2, false
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := tinyModel(t, tc.fixture)
			opt := defaultOptions()
			if tc.edit != nil {
				tc.edit(&opt)
			}
			ck := openCheckpoint(t, src)
			calib := corpus.RandomIDs(8, 48, ck.Config.VocabSize, 1)
			dir, rep, layers := quantizeTo(t, src, calib, opt)
			checkOutput(t, ck, dir, rep, layers, opt)
		})
	}
}

func checkOutput(t *testing.T, in *hf.Checkpoint, dir string, rep *Report, layers map[string]*gptq.Layer, opt Options) {
	t.Helper()
	out := openCheckpoint(t, dir)
	if len(out.Unexpected) > 0 {
		t.Errorf("unexpected tensors in the output: %v", out.Unexpected)
	}
	c := in.Config
	wantModules := 0
	for i := 0; i < c.NumHiddenLayers; i++ {
		for _, spec := range c.LayerLinears(i) {
			lw, err := out.Linear(spec)
			if err != nil {
				t.Fatal(err)
			}
			src, err := in.Linear(spec)
			if err != nil {
				t.Fatal(err)
			}
			mc, quantized := opt.module(spec)
			if !quantized {
				if lw.Quantized() || !bytes.Equal(lw.Weight.Bytes(), src.Weight.Bytes()) || lw.Weight.DType != src.Weight.DType {
					t.Errorf("%s: not quantized modules must be copied unchanged", spec.Name)
				}
				continue
			}
			wantModules++
			if !lw.Quantized() {
				t.Fatalf("%s is not quantized", spec.Name)
			}
			if spec.Bias {
				b, _ := src.Bias.Float32()
				got, _ := lw.Bias.Float32()
				if lw.Bias.DType != safetensors.F16 {
					t.Errorf("%s.bias is %s, want F16", spec.Name, lw.Bias.DType)
				}
				for k := range b {
					if math.Abs(float64(got[k]-b[k])) > 1e-3*math.Abs(float64(b[k]))+1e-7 {
						t.Fatalf("%s.bias[%d] = %v, want %v rounded to float16", spec.Name, k, got[k], b[k])
					}
				}
			}
			gi, _ := lw.GIdx.Int32s()
			if opt.Method == MethodRTN || !mc.DescAct || mc.StaticGroups {
				if diff := cmp.Diff(gptq.GroupIndex(spec.In, mc.GroupSize, nil), gi); diff != "" {
					t.Fatalf("%s g_idx (-want +got):\n%s", spec.Name, diff)
				}
			}
			if groups := gptq.NumGroups(spec.In, mc.GroupSize); lw.Scales.Shape[0] != groups {
				t.Errorf("%s has %d groups, want %d", spec.Name, lw.Scales.Shape[0], groups)
			}
			if mc.Sym && mc.Bits == 4 && mc.CheckpointFormat == gptq.FormatV1 {
				qz, _ := lw.QZeros.Int32s()
				for _, z := range qz {
					if uint32(z) != 0x77777777 {
						t.Fatalf("%s: symmetric qzeros word %#08x, want 0x77777777", spec.Name, uint32(z))
					}
				}
			}
			if l := layers[spec.Name]; mc.Sym && l != nil {
				for k, z := range l.Zeros {
					if int(z) != (l.Layout.MaxQ()+1)/2 {
						t.Fatalf("%s: symmetric zero %d at %d, want %d", spec.Name, z, k, (l.Layout.MaxQ()+1)/2)
					}
				}
			}
		}
	}
	for _, n := range []string{hf.EmbedTokens, hf.FinalNorm, hf.InputNorm(0), hf.PostAttentionNorm(c.NumHiddenLayers - 1)} {
		a, _ := in.Tensor(n)
		b, err := out.Tensor(n)
		if err != nil || a.DType != b.DType || !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Errorf("%s differs from the input's (err %v)", n, err)
		}
	}
	if len(rep.Modules) != wantModules || len(layers) != wantModules || rep.Totals.Modules != wantModules {
		t.Errorf("report has %d modules (totals %d), %d observed; want %d", len(rep.Modules), rep.Totals.Modules, len(layers), wantModules)
	}
	// The loaded model dequantizes to exactly the Q the algorithm chose.
	qm, err := model.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, lin := range qm.Linears() {
		l, ok := layers[lin.Name]
		if !quantizable(lin.Spec) {
			continue
		}
		if !ok {
			t.Fatalf("%s was not observed", lin.Name)
		}
		got := make([]float32, lin.Out()*lin.In())
		lin.W.Widen(got, lin.In(), 0, lin.Out(), 0, lin.In())
		want := l.Dequantize()
		for k := range got {
			if got[k] != want[k] {
				t.Fatalf("%s W[%d, %d]: loaded %v, quantized %v", lin.Name, k/lin.In(), k%lin.In(), got[k], want[k])
			}
		}
	}
	// configs
	oc := out.Config
	q := oc.Quantization
	if q == nil {
		t.Fatal("config.json has no quantization_config")
	}
	wantQ := gptq.NewConfig(opt.Config.GroupSize, opt.Config.Sym, opt.Config.DescAct, opt.Config.StaticGroups, opt.Config.TrueSequential, opt.Config.DampPercent)
	wantQ = wantQ.WithDefaults()
	if opt.Config.Bits != 0 {
		wantQ.Bits = opt.Config.Bits
	}
	if opt.Config.CheckpointFormat != "" {
		wantQ.CheckpointFormat = opt.Config.CheckpointFormat
	}
	if q.QuantMethod != "gptq" || q.Bits != wantQ.Bits || q.GroupSize != wantQ.GroupSize || q.Sym != wantQ.Sym || q.DescAct != wantQ.DescAct ||
		q.StaticGroups != wantQ.StaticGroups || q.TrueSequential != opt.Config.TrueSequential || q.DampPercent != opt.Config.DampPercent || q.CheckpointFormat != wantQ.CheckpointFormat {
		t.Errorf("quantization_config = %+v", q)
	}
	if len(q.ModulesInBlock) == 0 || !slices.Contains(q.ModulesInBlock[0], "self_attn.q_proj") {
		t.Errorf("modules_in_block_to_quantize = %v", q.ModulesInBlock)
	}
	for _, g := range q.ModulesInBlock {
		for _, n := range g {
			if strings.HasSuffix(n, "mlp.gate") || strings.Contains(n, "shared_expert_gate") || strings.HasSuffix(n, "moe.gate") {
				t.Errorf("modules_in_block_to_quantize lists the router or shared expert gate: %s", n)
			}
		}
	}
	qc, err := gptq.ReadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	wantQ.Dynamic = opt.Config.Dynamic
	if diff := cmp.Diff(wantQ, qc, cmpopts.IgnoreUnexported(gptq.Rule{})); diff != "" {
		t.Errorf("quantize_config.json (-want +got):\n%s", diff)
	}
	for _, f := range []string{"tokenizer.json", "generation_config.json", "tokenizer_config.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s not copied: %v", f, err)
		}
	}
	// The quantized model runs and stays close to the original.
	fm, err := model.Load(in)
	if err != nil {
		t.Fatal(err)
	}
	seqs := corpus.RandomIDs(2, 24, c.VocabSize, 99)
	met, err := verify.Compare(context.Background(), fm, qm, seqs, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if math.IsNaN(met.MeanKL) || met.MeanKL > 0.5 {
		t.Errorf("mean KL(original‖quantized) = %g on random tokens, want ≤ 0.5", met.MeanKL)
	}
	t.Logf("mean KL %.4g, top-1 %.3f, %d modules, %d starved experts", met.MeanKL, met.Top1Agreement, rep.Totals.Modules, len(rep.Starved))
}

// TestStarvedExperts calibrates qwen2_moe_tiny on so few tokens that some
// experts see none: every expert below the threshold must fall back (even
// with threshold 0 for experts with no token), be listed with its token
// count, and the RTN fallback must give exactly RTN's matrix.
func TestStarvedExperts(t *testing.T) {
	src := tinyModel(t, "qwen2_moe_tiny")
	ck := openCheckpoint(t, src)
	calib := corpus.RandomIDs(1, 6, ck.Config.VocabSize, 3) // 6 tokens × top-4 = 24 routings over 16 experts
	for _, tc := range []struct {
		name     string
		min      int
		fallback Fallback
	}{
		{"threshold 0, rtn", 0, FallbackRTN},
		{"default threshold, rtn", -1, FallbackRTN},
		{"default threshold, all-tokens", -1, FallbackAllTokens},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opt := defaultOptions()
			opt.MinExpertTokens, opt.ExpertFallback = tc.min, tc.fallback
			_, rep, layers := quantizeTo(t, src, calib, opt)
			m, err := model.Load(ck)
			if err != nil {
				t.Fatal(err)
			}
			starved := 0
			for _, mr := range rep.Modules {
				if mr.Expert < 0 {
					if mr.Fallback != "" || mr.Tokens != 6 {
						t.Errorf("%s: fallback %q, tokens %d; want none, 6", mr.Name, mr.Fallback, mr.Tokens)
					}
					continue
				}
				limit := max(tc.min, 1)
				if tc.min < 0 {
					limit = DefaultMinTokens(mr.In)
				}
				if (mr.Tokens < limit) != (mr.Fallback != "") {
					t.Errorf("%s: %d tokens, threshold %d, fallback %q", mr.Name, mr.Tokens, limit, mr.Fallback)
				}
				if mr.Fallback == "" {
					continue
				}
				if mr.Fallback != tc.fallback {
					t.Errorf("%s: fallback %q, want %q", mr.Name, mr.Fallback, tc.fallback)
				}
				if strings.HasSuffix(mr.Name, ".gate_proj") {
					starved++
				}
				if tc.fallback == FallbackRTN {
					lin := findLinear(m, mr.Name)
					w := make([]float32, lin.Out()*lin.In())
					lin.W.Widen(w, lin.In(), 0, lin.Out(), 0, lin.In())
					r, err := RTN(w, lin.Out(), lin.In(), opt.Config)
					if err != nil {
						t.Fatal(err)
					}
					if diff := cmp.Diff(r.Layer, layers[mr.Name]); diff != "" {
						t.Fatalf("%s: RTN fallback differs from RTN", mr.Name)
					}
				} else if mr.Method != "gptq+all-tokens" {
					t.Errorf("%s: method %q, want gptq+all-tokens", mr.Name, mr.Method)
				}
			}
			if starved == 0 || len(rep.Starved) < starved {
				t.Fatalf("%d starved gate projections, %d starved experts listed", starved, len(rep.Starved))
			}
			zero := 0
			for _, s := range rep.Starved {
				if s.Tokens == 0 {
					zero++
				}
				if s.Fallback != tc.fallback || len(s.Modules) == 0 {
					t.Errorf("starved expert %+v", s)
				}
			}
			if zero == 0 {
				t.Error("no expert with 0 tokens listed: the test lost its point")
			}
			var sum bytes.Buffer
			if err := rep.WriteSummary(&sum); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(sum.String(), "experts saw too few calibration tokens") {
				t.Errorf("summary does not list the starved experts:\n%s", sum.String())
			}
		})
	}
}

func findLinear(m *model.Model, name string) *model.Linear {
	for _, l := range m.Linears() {
		if l.Name == name {
			return l
		}
	}
	return nil
}

// TestRunDeterministicAndSpill quantizes three times: plainly, with
// activations spilled to disk, and with every capture pass run to the end of
// the layer instead of stopping once its inputs are captured. The outputs
// must be byte-identical.
func TestRunDeterministicAndSpill(t *testing.T) {
	for _, fixture := range []string{"qwen2_moe_tiny", "mixtral_tiny"} {
		src := tinyModel(t, fixture)
		ck := openCheckpoint(t, src)
		calib := corpus.RandomIDs(6, 40, ck.Config.VocabSize, 5)
		opt := defaultOptions()
		opt.ExpertFallback = FallbackAllTokens
		a, _, _ := quantizeTo(t, src, calib, opt)
		spill := opt
		spill.SpillDir = t.TempDir()
		b, _, _ := quantizeTo(t, src, calib, spill)
		full := opt
		full.fullPasses = true
		c, _, _ := quantizeTo(t, src, calib, full)
		sameFiles(t, a, b, "the in-memory and the spilled run")
		sameFiles(t, a, c, "runs with and without early-stopped capture passes")
		if left, _ := os.ReadDir(spill.SpillDir); len(left) != 0 {
			t.Errorf("spill directory not cleaned: %v", left)
		}
	}
}

func sameFiles(t *testing.T, a, b, what string) {
	t.Helper()
	for _, f := range []string{"model.safetensors", "config.json", "quantize_config.json"} {
		da, err := os.ReadFile(filepath.Join(a, f))
		if err != nil {
			t.Fatal(err)
		}
		db, err := os.ReadFile(filepath.Join(b, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(da, db) {
			t.Errorf("%s differs between %s", f, what)
		}
	}
}

// TestRunRejectsBadInput checks the one-line errors for NaN weights (naming
// the module), NaN in a copied tensor (naming it) and an already quantized
// input.
func TestRunRejectsBadInput(t *testing.T) {
	src := tinyModel(t, "qwen2_moe_tiny")
	ck := openCheckpoint(t, src)
	calib := corpus.RandomIDs(2, 16, ck.Config.VocabSize, 1)
	poison := func(name string) string {
		dir := t.TempDir()
		var ts []*safetensors.Tensor
		for _, n := range ck.Weights.Names() {
			tt, _ := ck.Weights.Tensor(n)
			if n == name {
				data := append([]byte(nil), tt.Bytes()...)
				copy(data[8:12], []byte{0, 0, 0xc0, 0x7f}) // float32 NaN at element 2
				tt, _ = safetensors.NewTensor(n, tt.DType, tt.Shape, data)
			}
			ts = append(ts, tt)
		}
		if err := safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), ts, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := hf.CopyExtraFiles(src, dir); err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(filepath.Join(src, "config.json"))
		os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644)
		return dir
	}
	quantized, _, _ := quantizeTo(t, src, calib, defaultOptions())
	tests := []struct {
		name, dir, want string
	}{
		{"NaN expert weight", poison("model.layers.1.mlp.experts.3.up_proj.weight"), "model.layers.1.mlp.experts.3.up_proj: weight [0, 2] is NaN"},
		{"NaN norm", poison("model.layers.2.post_attention_layernorm.weight"), "post_attention_layernorm.weight holds NaN"},
		{"already quantized", quantized, "already GPTQ-quantized"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ck := openCheckpoint(t, tc.dir)
			_, err := Run(context.Background(), ck, t.TempDir(), calib, defaultOptions())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestIDCalibration(t *testing.T) {
	dir := t.TempDir()
	files := 0
	mk := func(name string, dtype safetensors.DType, shape []int, vals []int64) string {
		files++
		var data []byte
		for _, v := range vals {
			if dtype == safetensors.I64 {
				data = append(data, byte(v), byte(v>>8), 0, 0, 0, 0, 0, 0)
			} else {
				data = append(data, byte(v), byte(v>>8), 0, 0)
			}
		}
		tt, err := safetensors.NewTensor(name, dtype, shape, data)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, fmt.Sprintf("ids%d.safetensors", files))
		if err := safetensors.WriteFile(p, []*safetensors.Tensor{tt}, nil); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := mk("input_ids", safetensors.I64, []int{2, 3}, []int64{1, 2, 3, 4, 5, 6})
	seqs, err := IDCalibration(good, 10)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([][]int{{1, 2, 3}, {4, 5, 6}}, seqs); diff != "" {
		t.Errorf("ids (-want +got):\n%s", diff)
	}
	i32 := mk("input_ids", safetensors.I32, []int{1, 2}, []int64{7, 8})
	if seqs, err := IDCalibration(i32, 10); err != nil || !cmp.Equal([][]int{{7, 8}}, seqs) {
		t.Errorf("I32 ids: %v, %v", seqs, err)
	}
	for _, tc := range []struct{ path, want string }{
		{good, "input_ids[1, 1] = 5 outside the vocabulary [0, 5)"},
		{mk("ids", safetensors.I64, []int{1, 1}, []int64{1}), "no tensor input_ids"},
		{mk("input_ids", safetensors.I64, []int{3}, []int64{1, 2, 3}), "want [N, T]"},
	} {
		vocab := 5
		if _, err := IDCalibration(tc.path, vocab); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("IDCalibration(%s) error = %v, want %q", filepath.Base(tc.path), err, tc.want)
		}
	}
}

// TestReportJSON checks the report's JSON field names (the --report format).
func TestReportJSON(t *testing.T) {
	r := &Report{Method: MethodGPTQ, Modules: []ModuleReport{{Name: "a", Expert: 2, Tokens: 5, Fallback: FallbackRTN, Method: "rtn"}, {Name: "b", Expert: -1, Loss: 1.5, Method: "gptq"}},
		Starved: []StarvedExpert{{Layer: 0, Expert: 2, Tokens: 5, MinTokens: 64, Fallback: FallbackRTN, Modules: []string{"gate_proj"}}}}
	r.finish()
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"starved_experts":[{"layer":0,"expert":2,"tokens":5,"min_tokens":64,"fallback":"rtn","modules":["gate_proj"]}]`,
		`"totals":{"modules":2,"gptq":1,"rtn":1,"all_tokens":0,"starved_experts":1,"damp_raised":0,"loss":1.5`} {
		if !strings.Contains(string(data), k) {
			t.Errorf("report JSON lacks %s:\n%s", k, data)
		}
	}
}
