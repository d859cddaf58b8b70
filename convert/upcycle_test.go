package convert

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
)

func ptr[T any](v T) *T { return &v }

// TestUpcycleExact converts the dense fixtures with every exact mode and
// checks that the converted model's logits equal the dense model's within
// exactTol relative, that tokens select whole replicas, and that the output
// holds exactly the tensors its config describes.
func TestUpcycleExact(t *testing.T) {
	tests := []struct {
		name  string
		small bool // qwen2_dense_small (bf16, F=1024) instead of qwen2_dense_tiny (f32, F=256)
		opts  UpcycleOptions
		// want: E, K, I, S, norm_topk_prob, pieces per replica (group size), MoE layers
		E, K, I, S int
		norm       bool
		group      int
		moe        []int
	}{
		{name: "tiny/shared-exact", opts: UpcycleOptions{Mode: SharedExact},
			E: 16, K: 4, I: 64, S: 256, group: 1, moe: []int{0, 1, 2}},
		{name: "tiny/shared-exact wide shared norm", opts: UpcycleOptions{Mode: SharedExact, SharedSize: 300, NormTopKProb: ptr(true), Experts: 6, TopK: 2, Shuffle: true},
			E: 6, K: 2, I: 64, S: 300, norm: true, group: 1, moe: []int{0, 1, 2}},
		{name: "tiny/virtual-group", opts: UpcycleOptions{Mode: VirtualGroup},
			E: 16, K: 4, I: 64, S: 64, norm: true, group: 4, moe: []int{0, 1, 2}},
		{name: "tiny/virtual-group shuffled top-2 replicas", opts: UpcycleOptions{Mode: VirtualGroup, ExpertSize: 32, Experts: 24, TopK: 16, Shuffle: true, Seed: 3},
			E: 24, K: 16, I: 32, S: 32, norm: true, group: 8, moe: []int{0, 1, 2}},
		{name: "tiny/virtual-group padded G=3 (f32)", opts: UpcycleOptions{Mode: VirtualGroup, ExpertSize: 96, Experts: 9, TopK: 3, PadZeros: true},
			E: 9, K: 3, I: 96, S: 96, norm: true, group: 3, moe: []int{0, 1, 2}},
		{name: "tiny/hybrid-exact", opts: UpcycleOptions{Mode: HybridExact},
			E: 8, K: 2, I: 64, S: 128, norm: true, group: 2, moe: []int{0, 1, 2}},
		{name: "tiny/hybrid-exact padded", opts: UpcycleOptions{Mode: HybridExact, ExpertSize: 96, SharedSize: 96, Experts: 4, TopK: 2, PadZeros: true, Shuffle: true},
			E: 4, K: 2, I: 96, S: 96, norm: true, group: 2, moe: []int{0, 1, 2}},
		{name: "tiny/virtual-group layer 1 only", opts: UpcycleOptions{Mode: VirtualGroup, MoELayers: []int{1}},
			E: 16, K: 4, I: 64, S: 64, norm: true, group: 4, moe: []int{1}},
		{name: "tiny/hybrid-exact sparse step 2", opts: UpcycleOptions{Mode: HybridExact, DecoderSparseStep: 2},
			E: 8, K: 2, I: 64, S: 128, norm: true, group: 2, moe: []int{1}},
		{name: "small/shared-exact", small: true, opts: UpcycleOptions{Mode: SharedExact},
			E: 16, K: 4, I: 256, S: 1024, group: 1, moe: []int{0, 1, 2}},
		{name: "small/virtual-group", small: true, opts: UpcycleOptions{Mode: VirtualGroup, Shuffle: true},
			E: 16, K: 4, I: 256, S: 256, norm: true, group: 4, moe: []int{0, 1, 2}},
		// The Qwen1.5-MoE-like shape: 8 pieces of 128, 4 in the shared expert,
		// 4 replicas of the other 4, one replica selected.
		{name: "small/hybrid-exact qwen1.5 shape", small: true, opts: UpcycleOptions{Mode: HybridExact, ExpertSize: 128, SharedSize: 512, Experts: 16, TopK: 4},
			E: 16, K: 4, I: 128, S: 512, norm: true, group: 4, moe: []int{0, 1, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := denseTiny(t)
			if tc.small {
				src = denseSmall(t)
			}
			in := openCheckpoint(t, src)
			p, err := Upcycle(in, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			c := p.Config
			got := []any{c.NumExperts, c.NumExpertsPerTok, c.MoEIntermediateSize, c.SharedExpertIntermediateSize, c.NormTopKProb, c.MoELayers()}
			want := []any{tc.E, tc.K, tc.I, tc.S, tc.norm, tc.moe}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("config (E, K, I, S, norm, moe layers) mismatch (-want +got):\n%s", diff)
			}
			if !p.Summary.Exact {
				t.Errorf("summary says the mode is not exact")
			}
			out := writePlan(t, p, 0)
			checkLoadable(t, out)
			ref, cand := openModel(t, src), openModel(t, out)
			seqs := randomSeqs(ref.Config.VocabSize)
			if tc.small {
				seqs = textSeqs(t, src, 3, 64)
			}
			m := parity(t, ref, cand, seqs)
			t.Logf("max rel logit diff %.3g (abs %.3g), mean KL %.3g, top-1 %.4f", m.MaxRelLogitDiff, m.MaxAbsLogitDiff, m.MeanKL, m.Top1Agreement)
			if !(m.MaxRelLogitDiff <= exactTol) {
				t.Errorf("max relative logit difference %.3g > %g", m.MaxRelLogitDiff, exactTol)
			}
			if m.Top1Agreement != 1 {
				t.Errorf("top-1 agreement %v, want 1", m.Top1Agreement)
			}
			if n := checkGroups(t, cand, seqs, tc.group); n == 0 {
				t.Errorf("no routed tokens seen")
			}
		})
	}
}

// TestUpcycleConfig checks the output config: every key a transformers
// Qwen2-MoE config has, the layer selection written the way transformers
// reads it, the dtype, and files carried over.
func TestUpcycleConfig(t *testing.T) {
	ref, err := os.ReadFile(filepath.Join(fixturetest.Dir(t, "fixtures/qwen2_moe_tiny"), "model", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var refKeys map[string]any
	if err := json.Unmarshal(ref, &refKeys); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		opts    UpcycleOptions
		step    int
		mlpOnly []int
		dtype   string
		tensor  safetensors.DType
	}{
		{"all layers", UpcycleOptions{Mode: VirtualGroup}, 1, []int{}, "float32", safetensors.F32},
		{"moe-layers 0,2", UpcycleOptions{Mode: VirtualGroup, MoELayers: []int{2, 0}}, 1, []int{1}, "float32", safetensors.F32},
		{"sparse step 3", UpcycleOptions{Mode: SharedExact, DecoderSparseStep: 3}, 3, []int{}, "float32", safetensors.F32},
		{"dtype bf16", UpcycleOptions{Mode: HybridExact, DType: safetensors.BF16}, 1, []int{}, "bfloat16", safetensors.BF16},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := openCheckpoint(t, denseTiny(t))
			p, err := Upcycle(in, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			dir := writePlan(t, p, 0)
			data, err := os.ReadFile(filepath.Join(dir, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			var keys map[string]any
			if err := json.Unmarshal(data, &keys); err != nil {
				t.Fatal(err)
			}
			for k := range refKeys {
				if _, ok := keys[k]; !ok {
					t.Errorf("config.json lacks key %q that a transformers qwen2_moe config has", k)
				}
			}
			if keys["model_type"] != "qwen2_moe" || !cmp.Equal(keys["architectures"], []any{"Qwen2MoeForCausalLM"}) {
				t.Errorf("model_type %v, architectures %v", keys["model_type"], keys["architectures"])
			}
			if keys["decoder_sparse_step"] != float64(tc.step) {
				t.Errorf("decoder_sparse_step %v, want %d", keys["decoder_sparse_step"], tc.step)
			}
			var mlpOnly []int
			for _, v := range keys["mlp_only_layers"].([]any) {
				mlpOnly = append(mlpOnly, int(v.(float64)))
			}
			if diff := cmp.Diff(tc.mlpOnly, mlpOnly, cmp.Comparer(func(a, b []int) bool { return slices.Equal(a, b) })); diff != "" {
				t.Errorf("mlp_only_layers (-want +got):\n%s", diff)
			}
			if keys["dtype"] != tc.dtype {
				t.Errorf("dtype %v, want %s", keys["dtype"], tc.dtype)
			}
			if keys["intermediate_size"] != float64(256) {
				t.Errorf("intermediate_size %v, want the dense width 256", keys["intermediate_size"])
			}
			ck := checkLoadable(t, dir)
			for _, n := range ck.Weights.Names() {
				if tt, _ := ck.Weights.Tensor(n); tt.DType != tc.tensor {
					t.Fatalf("%s has dtype %s, want %s", n, tt.DType, tc.tensor)
				}
			}
			for _, f := range []string{"tokenizer.json", "tokenizer_config.json", "generation_config.json", "chat_template.jinja"} {
				a, err1 := os.ReadFile(filepath.Join(in.Dir, f))
				b, err2 := os.ReadFile(filepath.Join(dir, f))
				if err1 != nil || err2 != nil || string(a) != string(b) {
					t.Errorf("%s not carried over unchanged (%v, %v)", f, err1, err2)
				}
			}
			s := p.Summary
			if s.ParamsBefore.Total <= 0 || s.ParamsAfter.Total <= s.ParamsBefore.Total {
				t.Errorf("params before %+v after %+v", s.ParamsBefore, s.ParamsAfter)
			}
			if !slices.Equal(s.DTypes, []safetensors.DType{tc.tensor}) {
				t.Errorf("summary dtypes %v", s.DTypes)
			}
		})
	}
}

// TestUpcycleSharded writes a sharded output and checks it loads and stays exact.
func TestUpcycleSharded(t *testing.T) {
	src := denseTiny(t)
	p, err := Upcycle(openCheckpoint(t, src), UpcycleOptions{Mode: HybridExact})
	if err != nil {
		t.Fatal(err)
	}
	dir := writePlan(t, p, 300_000)
	files := readDir(t, dir)
	if _, ok := files[safetensors.IndexFile]; !ok {
		t.Fatalf("no %s in a sharded output: %v", safetensors.IndexFile, keysOf(files))
	}
	shards := 0
	for n := range files {
		if strings.HasPrefix(n, "model-") {
			shards++
		}
	}
	if shards < 3 {
		t.Errorf("%d shards with a 300 kB limit, want at least 3", shards)
	}
	checkLoadable(t, dir)
	m := parity(t, openModel(t, src), openModel(t, dir), randomSeqs(1024))
	if !(m.MaxRelLogitDiff <= exactTol) {
		t.Errorf("sharded output: max relative logit difference %.3g > %g", m.MaxRelLogitDiff, exactTol)
	}
}

func keysOf(m map[string][]byte) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	slices.Sort(k)
	return k
}

// TestUpcycleDeterministic converts twice with the same seed (random modes,
// shuffles and re-initialization included) and compares every output file
// byte for byte; another seed must change the weights.
func TestUpcycleDeterministic(t *testing.T) {
	for _, opts := range []UpcycleOptions{
		{Mode: Qwen2Report, Seed: 11},
		{Mode: MegatronScaled, Shuffle: true, ReinitFraction: ptr(0.25), Seed: 11},
		{Mode: VirtualGroup, Shuffle: true, Seed: 11},
	} {
		t.Run(string(opts.Mode), func(t *testing.T) {
			src := denseTiny(t)
			write := func(o UpcycleOptions) map[string][]byte {
				p, err := Upcycle(openCheckpoint(t, src), o)
				if err != nil {
					t.Fatal(err)
				}
				return readDir(t, writePlan(t, p, 400_000))
			}
			a, b := write(opts), write(opts)
			if diff := cmp.Diff(keysOf(a), keysOf(b)); diff != "" {
				t.Fatalf("file lists differ:\n%s", diff)
			}
			for n := range a {
				if string(a[n]) != string(b[n]) {
					t.Errorf("%s differs between two runs with the same seed", n)
				}
			}
			other := opts
			other.Seed++
			c := write(other)
			same := true
			for n := range a {
				if strings.HasSuffix(n, ".safetensors") && string(a[n]) != string(c[n]) {
					same = false
				}
			}
			if same {
				t.Errorf("seed %d and %d gave identical weights", opts.Seed, other.Seed)
			}
		})
	}
}

// TestUpcycleRefusals checks that invalid combinations are refused with a
// message that proposes a valid one.
func TestUpcycleRefusals(t *testing.T) {
	tests := []struct {
		name  string
		small bool
		opts  UpcycleOptions
		want  []string // substrings of the error
	}{
		{"unknown mode", false, UpcycleOptions{Mode: "granular"}, []string{"unknown --init mode", "shared-exact"}},
		{"E not multiple", false, UpcycleOptions{Mode: VirtualGroup, Experts: 10}, []string{"--experts 10 is not a multiple", "use --experts 8 or 12"}},
		{"K not multiple", false, UpcycleOptions{Mode: VirtualGroup, TopK: 6}, []string{"--top-k 6 is not a multiple", "use --top-k 4 or 8"}},
		{"K > E", false, UpcycleOptions{Mode: VirtualGroup, Experts: 4, TopK: 8}, []string{"--top-k 8 is more than --experts 4"}},
		{"F % I without padding", false, UpcycleOptions{Mode: VirtualGroup, ExpertSize: 96}, []string{"not a multiple of --expert-size 96", "--pad zero", "append 32 zero neurons", "e.g. 64 (4 pieces) or 128 (2 pieces)"}},
		{"norm conflict virtual-group", false, UpcycleOptions{Mode: VirtualGroup, NormTopKProb: ptr(false)}, []string{"norm_topk_prob=true", "megatron-scaled"}},
		{"norm conflict megatron", false, UpcycleOptions{Mode: MegatronScaled, NormTopKProb: ptr(true)}, []string{"norm_topk_prob=false", "virtual-group"}},
		{"hybrid S not multiple", false, UpcycleOptions{Mode: HybridExact, SharedSize: 100}, []string{"multiple of --expert-size 64", "e.g. 128"}},
		{"hybrid S all pieces", false, UpcycleOptions{Mode: HybridExact, SharedSize: 256}, []string{"between 64 and 192"}},
		{"shared-exact S < F", false, UpcycleOptions{Mode: SharedExact, SharedSize: 128}, []string{"at least intermediate_size 256", "hybrid-exact"}},
		{"reinit in exact mode", false, UpcycleOptions{Mode: HybridExact, ReinitFraction: ptr(0.5)}, []string{"would break exactness", "qwen2-report"}},
		{"reinit out of range", false, UpcycleOptions{Mode: Qwen2Report, ReinitFraction: ptr(1.5)}, []string{"must be in [0, 1]"}},
		{"layers out of range", false, UpcycleOptions{Mode: VirtualGroup, MoELayers: []int{3}}, []string{"layer 3", "0-2"}},
		{"layers and step", false, UpcycleOptions{Mode: VirtualGroup, MoELayers: []int{1}, DecoderSparseStep: 2}, []string{"not both"}},
		{"step too large", false, UpcycleOptions{Mode: VirtualGroup, DecoderSparseStep: 4}, []string{"between 1 and the number of layers (3)"}},
		{"expert wider than FFN", false, UpcycleOptions{Mode: SharedExact, ExpertSize: 512}, []string{"wider than the FFN", "at most 256"}},
		{"G=3 in bf16", false, UpcycleOptions{Mode: VirtualGroup, ExpertSize: 96, Experts: 6, TopK: 3, PadZeros: true, DType: safetensors.BF16}, []string{"multiplies down_proj by 3", "not exact in bfloat16", "--dtype f32", "power of two"}},
		{"hybrid G-s=3 in bf16 input", true, UpcycleOptions{Mode: HybridExact, ExpertSize: 128, SharedSize: 640, Experts: 6, TopK: 3}, []string{"multiplies down_proj by 3", "bfloat16", "--dtype f32"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := denseTiny(t)
			if tc.small {
				src = denseSmall(t)
			}
			_, err := Upcycle(openCheckpoint(t, src), tc.opts)
			if err == nil {
				t.Fatalf("accepted, want an error containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	t.Run("moe input", func(t *testing.T) {
		_, err := Upcycle(openCheckpoint(t, filepath.Join(fixturetest.Dir(t, "fixtures/qwen2_moe_tiny"), "model")), UpcycleOptions{Mode: SharedExact})
		if err == nil || !strings.Contains(err.Error(), "convert split") {
			t.Fatalf("error %v, want a refusal pointing to convert split", err)
		}
	})
}

// TestUpcycleApproximate checks the training-oriented modes: megatron's
// scaled pieces and grouped router, qwen2-report's slicing and
// re-initialization rate, and that both load and run.
func TestUpcycleApproximate(t *testing.T) {
	src := denseTiny(t)
	in := openCheckpoint(t, src)
	dense := func(layer int, p hf.Proj) *matrix {
		tt, err := in.Tensor(hf.MLPLinear(layer, p) + ".weight")
		if err != nil {
			t.Fatal(err)
		}
		m, err := newMatrix(tt)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	tensor := func(ck *hf.Checkpoint, name string) []float32 {
		tt, err := ck.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		v, err := tt.Float32()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	t.Run("megatron-scaled", func(t *testing.T) {
		p, err := Upcycle(in, UpcycleOptions{Mode: MegatronScaled, Experts: 8, TopK: 4})
		if err != nil {
			t.Fatal(err)
		}
		// E=8, G=4 pieces of 64, K=4: R=2, k=1, s = E·G/K = 8, scale 8^(1/3) = 2.
		if p.Config.NormTopKProb || p.Summary.Upcycle.ExpertScale != 2 {
			t.Fatalf("norm_topk_prob %v, expert scale %v; want false, 2", p.Config.NormTopKProb, p.Summary.Upcycle.ExpertScale)
		}
		dir := writePlan(t, p, 0)
		ck := checkLoadable(t, dir)
		c := ck.Config
		// Expert 5 = replica 1, piece 1: dense rows/columns 64..127, × 2 (tolerance: exact, ×2 is exact in f32).
		g := tensor(ck, c.ExpertLinear(1, 5, hf.GateProj)+".weight")
		d := tensor(ck, c.ExpertLinear(1, 5, hf.DownProj)+".weight")
		wantG := dense(1, hf.GateProj).gatherRows(span(64, 64), 2)
		wantD := dense(1, hf.DownProj).gatherCols(span(64, 64), 2)
		if !slices.Equal(g, wantG) || !slices.Equal(d, wantD) {
			t.Errorf("expert 5 is not dense piece 1 × 2")
		}
		router := tensor(ck, c.RouterLinear(1)+".weight")
		h := c.HiddenSize
		for e := 0; e < 8; e++ {
			if !slices.Equal(router[e*h:(e+1)*h], router[(e/4*4)*h:(e/4*4+1)*h]) {
				t.Errorf("router row %d differs from its replica's first row", e)
			}
		}
		m := parity(t, openModel(t, src), openModel(t, dir), randomSeqs(1024))
		t.Logf("megatron-scaled vs dense: max rel %.3g, mean KL %.3g, top-1 %.3f, ppl ratio %.3f", m.MaxRelLogitDiff, m.MeanKL, m.Top1Agreement, m.PPLRatio)
		if math.IsNaN(m.MeanKL) || math.IsInf(m.MeanKL, 0) {
			t.Errorf("non-finite KL")
		}
	})

	t.Run("qwen2-report", func(t *testing.T) {
		base := UpcycleOptions{Mode: Qwen2Report, ExpertSize: 48, Experts: 12, TopK: 4, SharedSize: 64, Seed: 5}
		p0opts := base
		p0opts.ReinitFraction = ptr(0.0)
		p0, err := Upcycle(in, p0opts)
		if err != nil {
			t.Fatal(err)
		}
		p1, err := Upcycle(in, base)
		if err != nil {
			t.Fatal(err)
		}
		us := p1.Summary.Upcycle
		// 12·48 + 64 = 640 neurons from ⌈640/256⌉ = 3 copies; 768−640 = 128 discarded.
		if us.Copies != 3 || us.DiscardedNeurons != 128 || us.ReinitFraction != 0.5 || !us.Shuffle {
			t.Errorf("summary %+v: want 3 copies, 128 discarded, reinit 0.5, shuffled", us)
		}
		d0, d1 := writePlan(t, p0, 0), writePlan(t, p1, 0)
		ck0, ck1 := checkLoadable(t, d0), checkLoadable(t, d1)
		// Without re-initialization every expert row is a dense row: the
		// multiset of expert 0..4 gate rows (5·48 = 240 ≤ 256) comes from copy 0,
		// so they are distinct rows of the dense gate.
		gate := dense(0, hf.GateProj)
		rows := map[string]bool{}
		row := make([]float32, gate.cols)
		for r := 0; r < gate.rows; r++ {
			gate.row(r, row)
			rows[key(row)] = true
		}
		seen := map[string]bool{}
		for e := 0; e < 5; e++ {
			v := tensor(ck0, ck0.Config.ExpertLinear(0, e, hf.GateProj)+".weight")
			for r := 0; r < 48; r++ {
				k := key(v[r*gate.cols : (r+1)*gate.cols])
				if !rows[k] || seen[k] {
					t.Fatalf("expert %d row %d is not a fresh dense gate row", e, r)
				}
				seen[k] = true
			}
		}
		// Re-initialization: the share of changed elements over all experts
		// and the shared expert is 0.5 ± 0.01 (≥ 100k draws: 5σ ≈ 0.008).
		changed, total := 0, 0
		for _, n := range ck1.Weights.Names() {
			if !strings.Contains(n, "experts.") && !strings.Contains(n, "shared_expert.") {
				continue
			}
			a, b := tensor(ck0, n), tensor(ck1, n)
			for i := range a {
				if a[i] != b[i] {
					changed++
				}
			}
			total += len(a)
		}
		frac := float64(changed) / float64(total)
		t.Logf("re-initialized %d of %d expert parameters (%.4f)", changed, total, frac)
		if math.Abs(frac-0.5) > 0.01 {
			t.Errorf("re-initialized share %.4f, want 0.5 ± 0.01", frac)
		}
		m := parity(t, openModel(t, src), openModel(t, d1), randomSeqs(1024))
		t.Logf("qwen2-report vs dense: max rel %.3g, mean KL %.3g, top-1 %.3f", m.MaxRelLogitDiff, m.MeanKL, m.Top1Agreement)
		if math.IsNaN(m.MeanKL) || math.IsInf(m.MeanKL, 0) {
			t.Errorf("non-finite KL")
		}
	})
}

func key(v []float32) string {
	b := make([]byte, 0, 4*len(v))
	for _, f := range v {
		u := math.Float32bits(f)
		b = append(b, byte(u), byte(u>>8), byte(u>>16), byte(u>>24))
	}
	return string(b)
}
