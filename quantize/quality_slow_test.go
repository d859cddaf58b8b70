//go:build slow

// Model-level quality of GPTQ against round-to-nearest on the trained models
// of testdata/models (a few minutes on 2 cores):
//
//	go test -tags slow -run 'Quality|HeldOut' -v -timeout 30m ./quantize
package quantize

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/moeforge/moeforge/corpus"
	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/internal/fixture"
	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
	"github.com/moeforge/moeforge/model"
	"github.com/moeforge/moeforge/tokenizer"
	"github.com/moeforge/moeforge/verify"
)

// qualityModel is a trained model with what it needs for the protocol.
type qualityModel struct {
	name  string
	dir   string
	ck    *hf.Checkpoint
	fp    *model.Model
	calib [][]int // 128 windows of 256 tokens from the first 90% (seed 0)
	eval  [][]int // the 16 evaluation windows of ALGORITHMS.md §4
}

func loadQualityModel(t *testing.T, name string) *qualityModel {
	t.Helper()
	dir := fixturetest.Dir(t, "models/"+name)
	ck := openCheckpoint(t, dir)
	fp, err := model.Load(ck)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	root, err := fixture.Root()
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(filepath.Join(root, "tinyshakespeare.txt"))
	if err != nil {
		t.Fatal(err)
	}
	calib, err := corpus.Calibration(string(text), tok.Encode, 0.9, 128, 256, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, evalText, err := corpus.SplitText(string(text), 0.9)
	if err != nil {
		t.Fatal(err)
	}
	eval, err := corpus.EvalWindows(tok.Encode(evalText), 16, 256)
	if err != nil {
		t.Fatal(err)
	}
	return &qualityModel{name: name, dir: dir, ck: ck, fp: fp, calib: calib, eval: eval}
}

// qualityRun is one quantization of a model and its metrics against the
// full-precision model on the evaluation windows.
type qualityRun struct {
	label   string
	metrics verify.Metrics
	report  *Report
	seconds float64
	dir     string
}

func (q *qualityModel) run(t *testing.T, label string, opt Options) qualityRun {
	t.Helper()
	dir := t.TempDir()
	start := time.Now()
	rep, err := Run(context.Background(), q.ck, dir, q.calib, opt)
	if err != nil {
		t.Fatalf("%s %s: %v", q.name, label, err)
	}
	secs := time.Since(start).Seconds()
	out := openCheckpoint(t, dir)
	qm, err := model.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	m, err := verify.Compare(context.Background(), q.fp, qm, q.eval, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	fallbacks := 0
	for _, mr := range rep.Modules {
		if mr.Fallback != "" {
			fallbacks++
		}
	}
	t.Logf("| %s | %s | %.5f | %.2f%% | %.3f | %.3f | %+.2f%% | %d experts (%d modules) | %.0f s |", q.name, label, m.MeanKL, 100*m.Top1Agreement,
		m.PPLRef, m.PPLCand, 100*(m.PPLRatio-1), len(rep.Starved), fallbacks, secs)
	return qualityRun{label: label, metrics: m, report: rep, seconds: secs, dir: dir}
}

func rtnOptions(group int) Options {
	o := DefaultOptions()
	o.Method, o.Config.GroupSize = MethodRTN, group
	return o
}

// TestQuality asserts the quality bars of issue #6 with the default
// settings (4-bit, group 128, sym, 128 calibration windows of 256 tokens,
// seed 0): GPTQ's mean KL(full‖quantized) on the 16 evaluation windows at
// most 0.4× RTN's (0.5× on qwen2_moe_a60), top-1 agreement at least 97%
// (96% on qwen2_moe_a60), perplexity within 0.5% of full precision; and on
// qwen2_moe_a60 every expert below the token threshold listed with its
// count and fallback.
func TestQuality(t *testing.T) {
	t.Log("| model | run | mean KL | top-1 | ppl fp | ppl q | Δppl | fell back | time |")
	for _, tc := range []struct {
		name            string
		klRatio, top1   float64
		pplTol          float64
		wantZeroStarved int
	}{
		{"qwen2_moe_small", 0.4, 0.97, 0.005, 0},
		{"qwen2_dense_small", 0.4, 0.97, 0.005, 0},
		{"qwen2_moe_a60", 0.5, 0.96, 0.005, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := loadQualityModel(t, tc.name)
			rtn := q.run(t, "RTN g128", rtnOptions(128))
			g := q.run(t, "GPTQ g128", DefaultOptions())
			if r := g.metrics.MeanKL / rtn.metrics.MeanKL; !(r <= tc.klRatio) {
				t.Errorf("GPTQ mean KL %.5f is %.3f× RTN's %.5f, want ≤ %.2f×", g.metrics.MeanKL, r, rtn.metrics.MeanKL, tc.klRatio)
			}
			if g.metrics.Top1Agreement < tc.top1 {
				t.Errorf("GPTQ top-1 agreement %.4f, want ≥ %.2f", g.metrics.Top1Agreement, tc.top1)
			}
			if d := g.metrics.PPLRatio - 1; d > tc.pplTol || d < -tc.pplTol {
				t.Errorf("GPTQ perplexity %.4f vs %.4f full precision (%.2f%%), want within %.1f%%", g.metrics.PPLCand, g.metrics.PPLRef, 100*d, 100*tc.pplTol)
			}
			checkStarved(t, g.report, tc.wantZeroStarved)
		})
	}
}

// checkStarved checks that every routed expert module below its threshold
// fell back and that the expert is listed with its token count.
func checkStarved(t *testing.T, rep *Report, wantZero int) {
	t.Helper()
	listed := map[[2]int]StarvedExpert{}
	zero := 0
	for _, s := range rep.Starved {
		listed[[2]int{s.Layer, s.Expert}] = s
		if s.Tokens == 0 {
			zero++
		}
	}
	for _, m := range rep.Modules {
		if m.Expert < 0 {
			continue
		}
		starved := m.Tokens < DefaultMinTokens(m.In)
		if starved != (m.Fallback == FallbackAllTokens) {
			t.Errorf("%s: %d tokens (threshold %d), fallback %q", m.Name, m.Tokens, DefaultMinTokens(m.In), m.Fallback)
		}
		if s, ok := listed[[2]int{m.Layer, m.Expert}]; starved && (!ok || s.Tokens != m.Tokens) {
			t.Errorf("%s: starved with %d tokens but listed as %+v", m.Name, m.Tokens, s)
		}
	}
	if zero < wantZero {
		t.Errorf("%d experts saw no token, want at least %d", zero, wantZero)
	}
	t.Logf("%d starved experts listed, %d with no token", len(rep.Starved), zero)
}

// TestQualityVariants measures act-order and group -1 (one group per row)
// against RTN at the same group size, on the three models; GPTQ must beat
// RTN's KL in every variant.
func TestQualityVariants(t *testing.T) {
	t.Log("| model | run | mean KL | top-1 | ppl fp | ppl q | Δppl | fell back | time |")
	for _, name := range []string{"qwen2_moe_small", "qwen2_dense_small", "qwen2_moe_a60"} {
		t.Run(name, func(t *testing.T) {
			q := loadQualityModel(t, name)
			rtn := map[int]qualityRun{128: q.run(t, "RTN g128", rtnOptions(128)), -1: q.run(t, "RTN g-1", rtnOptions(-1))}
			for _, v := range []struct {
				label string
				group int
				act   bool
			}{{"GPTQ g128 desc_act", 128, true}, {"GPTQ g-1", -1, false}, {"GPTQ g-1 desc_act", -1, true}} {
				o := DefaultOptions()
				o.Config.GroupSize, o.Config.DescAct = v.group, v.act
				g := q.run(t, v.label, o)
				if !(g.metrics.MeanKL < rtn[v.group].metrics.MeanKL) {
					t.Errorf("%s: mean KL %.5f not below RTN's %.5f", v.label, g.metrics.MeanKL, rtn[v.group].metrics.MeanKL)
				}
			}
		})
	}
}

// TestExpertFallbackHeldOut justifies the starved-expert defaults on
// qwen2_moe_a60 calibrated on 16 windows (so that many experts see few
// tokens): on held-out text (the evaluation part of the corpus, every
// window), it measures each routed expert module's relative output error
// Σ‖(W−Q)x‖²/Σ‖Wx‖² for three quantizations of all experts — RTN, GPTQ on
// the expert's own tokens, GPTQ on the all-token-augmented Hessian — by the
// number of calibration tokens the expert saw relative to in_features/8.
// Asserted: below the threshold the augmented Hessian beats RTN and is no
// worse than 1.25× the own-token GPTQ; at or above it own-token GPTQ beats
// both.
func TestExpertFallbackHeldOut(t *testing.T) {
	q := loadQualityModel(t, "qwen2_moe_a60")
	q.calib = q.calib[:16]
	never := 1 << 30
	variants := []struct {
		label string
		opt   func(o *Options)
	}{
		{"rtn", func(o *Options) { o.MinExpertTokens, o.ExpertFallback = never, FallbackRTN }},
		{"own", func(o *Options) { o.MinExpertTokens = 0 }},
		{"all-tokens", func(o *Options) { o.MinExpertTokens, o.ExpertFallback = never, FallbackAllTokens }},
	}
	var models []*model.Model
	var own *Report
	for _, v := range variants {
		o := DefaultOptions()
		v.opt(&o)
		r := q.run(t, v.label, o)
		out := openCheckpoint(t, r.dir)
		m, err := model.Load(out)
		if err != nil {
			t.Fatal(err)
		}
		models = append(models, m)
		if v.label == "own" {
			own = r.report
		}
	}
	// Held-out inputs of every expert module, from the full-precision model.
	root, _ := fixture.Root()
	text, _ := os.ReadFile(filepath.Join(root, "tinyshakespeare.txt"))
	_, evalText, _ := corpus.SplitText(string(text), 0.9)
	tok, _ := tokenizer.Load(q.dir)
	ids := tok.Encode(evalText)
	windows, err := corpus.EvalWindows(ids, len(ids)/256, 256)
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]*Hessian{}
	hooks := &model.Hooks{LinearInput: func(l *model.Linear, x []float32, rows int) {
		if l.Spec.Kind == hf.KindExpert {
			if held[l.Name] == nil {
				held[l.Name] = NewHessian(l.In())
			}
			held[l.Name].Add(x, rows)
		}
	}}
	for i := 0; i < len(windows); i += 16 {
		if _, err := q.fp.Logits(context.Background(), &model.Batch{Seqs: windows[i:min(i+16, len(windows))]}, hooks); err != nil {
			t.Fatal(err)
		}
	}
	tokens := map[string]int{}
	for _, m := range own.Modules {
		tokens[m.Name] = m.Tokens
	}
	weights := func(m *model.Model, name string) []float32 {
		l := findLinear(m, name)
		w := make([]float32, l.Out()*l.In())
		l.W.Widen(w, l.In(), 0, l.Out(), 0, l.In())
		return w
	}
	// errs[bucket][variant] sums ‖(W−Q)x‖²; sig[bucket] sums ‖Wx‖².
	type bucket struct {
		errs    [3]float64
		sig     float64
		modules int
	}
	buckets := map[string]*bucket{}
	names := make([]string, 0, len(held))
	for n := range held {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		h := held[name].Matrix()
		w := weights(q.fp, name)
		l := findLinear(q.fp, name)
		out, in := l.Out(), l.In()
		key := "starved (< in/8)"
		switch tk, lim := tokens[name], DefaultMinTokens(in); {
		case tk == 0:
			continue // GPTQ on no token is not a candidate
		case tk >= lim:
			key = "≥ in/8"
		}
		b := buckets[key]
		if b == nil {
			b = &bucket{}
			buckets[key] = b
		}
		b.modules++
		b.sig += quadForm(h, w, out, in)
		for k, m := range models {
			qw := weights(m, name)
			for i := range qw {
				qw[i] = w[i] - qw[i]
			}
			b.errs[k] += quadForm(h, qw, out, in)
		}
	}
	for key, b := range buckets {
		t.Logf("%-17s %3d modules: held-out relative error  rtn %.5f  own-token GPTQ %.5f  all-token GPTQ %.5f",
			key, b.modules, b.errs[0]/b.sig, b.errs[1]/b.sig, b.errs[2]/b.sig)
	}
	s, ok := buckets["starved (< in/8)"]
	if !ok || s.modules < 5 {
		t.Fatalf("too few starved expert modules to judge: %+v", s)
	}
	if !(s.errs[2] < s.errs[0] && s.errs[2] <= 1.25*s.errs[1]) {
		t.Errorf("starved experts: all-token GPTQ %.4g vs RTN %.4g and own-token GPTQ %.4g", s.errs[2], s.errs[0], s.errs[1])
	}
	if f := buckets["≥ in/8"]; !(f.errs[1] < f.errs[0] && f.errs[1] < f.errs[2]) {
		t.Errorf("experts with enough tokens: own-token GPTQ %.4g vs RTN %.4g and all-token GPTQ %.4g", f.errs[1], f.errs[0], f.errs[2])
	}
}

// quadForm is Σ_c d_c·H·d_cᵀ over the rows of d [out, in].
func quadForm(h []float64, d []float32, out, in int) float64 {
	var s float64
	for c := 0; c < out; c++ {
		row := d[c*in : (c+1)*in]
		for i, ri := range row {
			if ri == 0 {
				continue
			}
			var acc float64
			hr := h[i*in : (i+1)*in]
			for j, rj := range row {
				acc += hr[j] * float64(rj)
			}
			s += float64(ri) * acc
		}
	}
	return s
}
