// Package pipeline runs moeforge's whole pipeline end to end, as a library
// would use it, on the small models shipped in testdata/models: upcycle the
// dense model exactly and verify it, split a MoE model and verify it,
// quantize the MoE model with GPTQ and with RTN, and evaluate the perplexity
// of float, RTN and GPTQ, ending with one summary table. It is what
// `moeforge demo` runs, and its test is the end-to-end test of the project.
package pipeline

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/moeforge/moeforge/convert"
	"github.com/moeforge/moeforge/corpus"
	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/internal/fixture"
	"github.com/moeforge/moeforge/model"
	"github.com/moeforge/moeforge/quantize"
	"github.com/moeforge/moeforge/tokenizer"
	"github.com/moeforge/moeforge/verify"
)

// Options configure a pipeline run.
type Options struct {
	// Testdata is the directory holding models/ and tinyshakespeare.txt
	// (the repository's testdata/).
	Testdata string
	// WorkDir receives the decompressed models and every output; it must
	// exist. The caller removes it (or keeps it with --keep).
	WorkDir string
	// CalibSamples is the number of GPTQ calibration windows of 256 tokens.
	CalibSamples int
	// Log receives one line per step as it finishes (nil: silent).
	Log io.Writer
}

// Step is one stage of the pipeline and how it went.
type Step struct {
	Name    string  `json:"name"`
	Detail  string  `json:"detail"`
	Pass    bool    `json:"pass"`
	Check   string  `json:"check"` // what was required
	Result  string  `json:"result"`
	Seconds float64 `json:"seconds"`
	// Metrics are the parity metrics of a verification step.
	Metrics *verify.Metrics `json:"metrics,omitempty"`
	// PPL is the perplexity of an evaluation step.
	PPL float64 `json:"ppl,omitempty"`
}

// Result is the whole run.
type Result struct {
	Pass    bool    `json:"pass"`
	Steps   []Step  `json:"steps"`
	Seconds float64 `json:"seconds"`
	WorkDir string  `json:"work_dir"`
}

// The evaluation protocol's windows (ALGORITHMS.md §4), used for every
// comparison and perplexity, and the calibration windows' length.
const (
	seqlen      = corpus.DefaultSeqLen
	evalWindows = corpus.DefaultWindows
)

// The GPTQ step's bar, stricter than verify's "quantized" preset that RTN
// must meet: GPTQ must beat RTN's KL clearly and stay close to float.
const (
	gptqKLvsRTN = 0.4   // mean KL at most this share of RTN's
	gptqMinTop1 = 0.97  // top-1 agreement with float
	gptqMinPPL  = 0.995 // perplexity ratio to float: within ±0.5%
	gptqMaxPPL  = 1.005
)

// Run executes the pipeline. A failed check marks its step and the result
// as failed but the remaining steps still run; an error means the demo
// itself could not run (missing testdata, I/O failure).
func Run(ctx context.Context, opt Options) (*Result, error) {
	start := time.Now()
	if opt.CalibSamples <= 0 {
		opt.CalibSamples = 128
	}
	d := &runner{ctx: ctx, opt: opt, res: &Result{Pass: true, WorkDir: opt.WorkDir}}
	if err := d.prepare(); err != nil {
		return nil, err
	}
	for _, step := range []func() error{d.upcycle, d.split, d.quantize, d.evaluate} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	d.res.Seconds = time.Since(start).Seconds()
	return d.res, nil
}

type runner struct {
	ctx  context.Context
	opt  Options
	res  *Result
	text string
	tok  *tokenizer.Tokenizer
	eval [][]int // the §4 evaluation windows
}

func (d *runner) path(name string) string { return filepath.Join(d.opt.WorkDir, name) }

func (d *runner) add(s Step) {
	if !s.Pass {
		d.res.Pass = false
	}
	d.res.Steps = append(d.res.Steps, s)
	if d.opt.Log != nil {
		mark := "ok  "
		if !s.Pass {
			mark = "FAIL"
		}
		fmt.Fprintf(d.opt.Log, "[%s] %-28s %s (%.1f s)\n", mark, s.Name, s.Result, s.Seconds)
	}
}

// prepare decompresses the shipped models and builds the evaluation windows.
func (d *runner) prepare() error {
	for _, m := range []string{"qwen2_dense_small", "qwen2_moe_small"} {
		src := filepath.Join(d.opt.Testdata, "models", m)
		if _, err := os.Stat(filepath.Join(src, "config.json")); err != nil {
			return fmt.Errorf("demo model %s not found (run the demo from the moeforge repository, or pass --testdata): %w", src, err)
		}
		if err := fixture.Materialize(src, d.path(m)); err != nil {
			return err
		}
	}
	raw, err := os.ReadFile(filepath.Join(d.opt.Testdata, "tinyshakespeare.txt"))
	if err != nil {
		return fmt.Errorf("demo corpus: %w", err)
	}
	d.text = string(raw)
	if d.tok, err = tokenizer.Load(d.path("qwen2_moe_small")); err != nil {
		return err
	}
	d.eval, err = corpus.Eval(d.text, d.tok.Encode, corpus.DefaultSplitAt, evalWindows, seqlen)
	return err
}

// check applies thresholds to the metrics of a comparison.
func check(th verify.Thresholds, m verify.Metrics) bool {
	checks, err := th.Evaluate(m, nil)
	return err == nil && len(verify.Failed(checks)) == 0
}

// preset returns one of verify's threshold presets.
func preset(name string) verify.Thresholds {
	th, err := verify.Preset(name)
	if err != nil {
		panic(err) // the presets the demo names exist
	}
	return th
}

// label writes thresholds as the table's CHECK column: "max rel Δlogit ≤
// 1e-4", "KL ≤ 0.02, top-1 ≥ 90%, ppl ×≤1.10".
func label(th verify.Thresholds) string {
	var parts []string
	if v := th.MaxRelLogit; v != nil {
		mant, exp, _ := strings.Cut(strconv.FormatFloat(*v, 'e', -1, 64), "e")
		e, _ := strconv.Atoi(exp)
		parts = append(parts, fmt.Sprintf("max rel Δlogit ≤ %se%d", mant, e))
	}
	if v := th.MaxKL; v != nil {
		parts = append(parts, fmt.Sprintf("KL ≤ %g", *v))
	}
	if v := th.MinTop1; v != nil {
		parts = append(parts, fmt.Sprintf("top-1 ≥ %.3g%%", 100**v))
	}
	if v := th.MaxPPLRatio; v != nil {
		parts = append(parts, fmt.Sprintf("ppl ×≤%.2f", *v))
	}
	return strings.Join(parts, ", ")
}

// compare runs verify.Compare between two checkpoints on the evaluation windows.
func (d *runner) compare(refDir, candDir string) (verify.Metrics, error) {
	ref, err := model.Open(refDir)
	if err != nil {
		return verify.Metrics{}, err
	}
	defer ref.Close()
	cand, err := model.Open(candDir)
	if err != nil {
		return verify.Metrics{}, err
	}
	defer cand.Close()
	return verify.Compare(d.ctx, ref, cand, d.eval, 4, nil)
}

// convertStep writes a conversion plan and verifies the output exactly.
func (d *runner) convertStep(name, detail, in, out string, plan func(*hf.Checkpoint) (*convert.Plan, error)) error {
	t0 := time.Now()
	ck, err := hf.Open(in)
	if err != nil {
		return err
	}
	defer ck.Close()
	p, err := plan(ck)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	if _, err := p.Write(d.ctx, out, convert.WriteOptions{}); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	m, err := d.compare(in, out)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	s := p.Summary
	exact := preset("exact")
	d.add(Step{
		Name:   name,
		Detail: fmt.Sprintf("%s: %d×%d top-%d, shared %d", detail, s.Experts, s.ExpertSize, s.TopK, s.SharedSize),
		Check:  label(exact), Pass: check(exact, m),
		Result:  fmt.Sprintf("max rel Δlogit %.1e, top-1 %.1f%%", m.MaxRelLogitDiff, 100*m.Top1Agreement),
		Seconds: time.Since(t0).Seconds(), Metrics: &m,
	})
	return nil
}

// upcycle: the dense model into the Qwen1.5-MoE shape, exactly.
func (d *runner) upcycle() error {
	return d.convertStep("upcycle hybrid-exact", "dense_small",
		d.path("qwen2_dense_small"), d.path("upcycled"), func(ck *hf.Checkpoint) (*convert.Plan, error) {
			return convert.Upcycle(ck, convert.UpcycleOptions{Mode: convert.HybridExact,
				ExpertSize: 128, SharedSize: 512, Experts: 16, TopK: 4})
		})
}

// split: every expert of the MoE model into two, exactly.
func (d *runner) split() error {
	return d.convertStep("split ×2", "moe_small",
		d.path("qwen2_moe_small"), d.path("split"), func(ck *hf.Checkpoint) (*convert.Plan, error) {
			return convert.Split(ck, convert.SplitOptions{Factor: 2})
		})
}

// quantize the MoE model with GPTQ and with RTN.
func (d *runner) quantize() error {
	calib, err := corpus.Calibration(d.text, d.tok.Encode, corpus.DefaultSplitAt, d.opt.CalibSamples, seqlen, 0)
	if err != nil {
		return err
	}
	for _, method := range []quantize.Method{quantize.MethodGPTQ, quantize.MethodRTN} {
		t0 := time.Now()
		ck, err := hf.Open(d.path("qwen2_moe_small"))
		if err != nil {
			return err
		}
		out := d.path("moe_" + string(method))
		if err := os.MkdirAll(out, 0o755); err != nil {
			ck.Close()
			return err
		}
		opts := quantize.DefaultOptions() // int4, group 128, sym, true-sequential
		opts.Method = method
		rep, err := quantize.Run(d.ctx, ck, out, calib, opts)
		ck.Close()
		if err != nil {
			return fmt.Errorf("quantize %s: %w", method, err)
		}
		detail := "moe_small, int4 g128 sym"
		if method == quantize.MethodGPTQ {
			detail += fmt.Sprintf(", %d×%d calib", len(calib), seqlen)
		}
		// The output must load as a GPTQ checkpoint (hf.Open checks every
		// qweight/qzeros/scales/g_idx against the config).
		result := fmt.Sprintf("%d modules, %d starved experts", rep.Totals.Modules, rep.Totals.StarvedExpert)
		pass := true
		if m, err := model.Open(out); err != nil {
			pass, result = false, err.Error()
		} else {
			if q := m.Config.Quantization; q == nil || q.Bits != 4 || q.GroupSize != 128 {
				pass, result = false, "config.json lacks the expected quantization_config"
			}
			m.Close()
		}
		d.add(Step{Name: "quantize " + string(method), Detail: detail, Pass: pass, Check: "loads as GPTQ int4",
			Result: result, Seconds: time.Since(t0).Seconds()})
	}
	return nil
}

// evaluate: perplexity of float, RTN and GPTQ, and their distance to float.
func (d *runner) evaluate() error {
	t0 := time.Now()
	ref, err := model.Open(d.path("qwen2_moe_small"))
	if err != nil {
		return err
	}
	defer ref.Close()
	ppl, _, err := verify.Perplexity(d.ctx, ref, d.eval, 4, nil)
	if err != nil {
		return err
	}
	d.add(Step{Name: "eval float (bf16)", Detail: fmt.Sprintf("moe_small, %d×%d eval tokens", evalWindows, seqlen),
		Pass: ppl > 1 && ppl < 100, Check: "finite perplexity", Result: fmt.Sprintf("ppl %.3f", ppl),
		Seconds: time.Since(t0).Seconds(), PPL: ppl})
	var kl = map[quantize.Method]float64{}
	for _, method := range []quantize.Method{quantize.MethodRTN, quantize.MethodGPTQ} {
		t0 := time.Now()
		m, err := d.compare(d.path("qwen2_moe_small"), d.path("moe_"+string(method)))
		if err != nil {
			return err
		}
		kl[method] = m.MeanKL
		th := preset("quantized")
		desc := label(th)
		if method == quantize.MethodGPTQ {
			th = th.Override(verify.Thresholds{
				MaxKL:       ptr(gptqKLvsRTN * kl[quantize.MethodRTN]),
				MinTop1:     ptr(gptqMinTop1),
				MaxPPLRatio: ptr(gptqMaxPPL),
			})
			desc = fmt.Sprintf("KL ≤ %g×RTN, top-1 ≥ %.3g%%, ppl ±%.3g%%", gptqKLvsRTN, 100*gptqMinTop1, 100*(gptqMaxPPL-1))
		}
		pass := check(th, m)
		if method == quantize.MethodGPTQ {
			pass = pass && m.PPLRatio >= gptqMinPPL // the band's lower side, which verify does not bound
		}
		d.add(Step{Name: "eval " + string(method), Detail: "vs float", Pass: pass, Check: desc,
			Result:  fmt.Sprintf("ppl %.3f, KL %.5f, top-1 %.2f%%", m.PPLCand, m.MeanKL, 100*m.Top1Agreement),
			Seconds: time.Since(t0).Seconds(), Metrics: &m, PPL: m.PPLCand})
	}
	return nil
}

// WriteTable prints the summary table.
func (r *Result) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tWHAT\tCHECK\tRESULT\tTIME")
	for _, s := range r.Steps {
		mark := "PASS"
		if !s.Pass {
			mark = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s %s\t%.1fs\n", s.Name, s.Detail, s.Check, mark, s.Result, s.Seconds)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	verdict := "all steps passed"
	if !r.Pass {
		var failed []string
		for _, s := range r.Steps {
			if !s.Pass {
				failed = append(failed, s.Name)
			}
		}
		verdict = "FAILED: " + strings.Join(failed, ", ")
	}
	_, err := fmt.Fprintf(w, "\n%s in %.1f s\n", verdict, r.Seconds)
	return err
}

func ptr(v float64) *float64 { return &v }
