package quantize

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moeforge/moeforge/formats/gptq"
	"github.com/moeforge/moeforge/internal/gemm"
	"github.com/moeforge/moeforge/internal/half"
	"github.com/moeforge/moeforge/model"
)

// job is one module to quantize.
type job struct {
	mod       *stageModule
	layer     int
	tokens    int
	minTokens int
	fallback  Fallback
	extra     *Hessian // all-tokens augmentation
	rtn       bool     // Method rtn
	order     int      // forward order of the module in its layer
	result    *gptq.Layer
}

// jobFlops is the counted FLOPs of a job (gptqFlops; 0 for RTN), with the
// factorization when factor is set.
func jobFlops(jb *job, factor bool) float64 {
	if jb.rtn || jb.fallback == FallbackRTN {
		return 0
	}
	return gptqFlops(jb.mod.lin.Out(), jb.mod.lin.In(), factor || jb.fallback != "")
}

// runJobs quantizes the jobs on up to gemm.Threads() goroutines (largest
// first) and swaps every module's weight for its quantized matrix.
func (r *runner) runJobs(jobs []*job, layer int) error {
	order := make([]*job, len(jobs))
	copy(order, jobs)
	// Larger matrices first keeps the workers busy until the end.
	for i := 1; i < len(order); i++ {
		for k := i; k > 0 && size(order[k]) > size(order[k-1]); k-- {
			order[k], order[k-1] = order[k-1], order[k]
		}
	}
	workers := min(gemm.Threads(), len(order))
	inner := 1
	if workers <= 1 {
		inner = gemm.Threads()
	}
	var flops float64
	factored := map[*Hessian]bool{}
	for _, jb := range order {
		flops += jobFlops(jb, !factored[jb.mod.hess])
		factored[jb.mod.hess] = true
	}
	defer func(t time.Time) { r.clock.add(PhaseQuantize, time.Since(t), 1, flops) }(time.Now())
	var next atomic.Int32
	var failed atomic.Bool
	errs := make([]error, len(order))
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1)) - 1
				if k >= len(order) || failed.Load() || r.ctx.Err() != nil {
					return
				}
				if err := r.quantizeJob(order[k], inner); err != nil {
					errs[k] = fmt.Errorf("%s: %w", order[k].mod.lin.Name, err)
					failed.Store(true)
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := r.ctx.Err(); err != nil {
		return err
	}
	for _, jb := range jobs {
		if err := r.install(jb); err != nil {
			return err
		}
	}
	return nil
}

// install swaps a quantized module's weight for its quantized matrix (and
// its bias for the float16-rounded one the output stores), so that later
// passes see what the output computes, and shows the result to observe.
func (r *runner) install(jb *job) error {
	p, err := jb.result.Packed()
	if err != nil {
		return fmt.Errorf("%s: %w", jb.mod.lin.Name, err)
	}
	jb.mod.lin.W = model.MatrixOf(p)
	// The forward pass holds these packed tensors until the layer is
	// written: writeQuantized writes them instead of packing again.
	r.mu.Lock()
	if r.packed == nil {
		r.packed = map[*gptq.Layer]*gptq.Packed{}
	}
	r.packed[jb.result] = p
	r.mu.Unlock()
	if b := jb.mod.lin.Bias; b != nil {
		// The output stores the bias as float16: later passes use that.
		r16 := make([]float32, len(b))
		for k, v := range b {
			r16[k] = half.F16ToF32(half.F32ToF16(v))
		}
		jb.mod.lin.Bias = r16
	}
	if r.opt.observe != nil {
		r.mu.Lock()
		r.opt.observe(jb.mod.lin.Name, jb.result)
		r.mu.Unlock()
	}
	return nil
}

func size(j *job) int { return j.mod.lin.Out() * j.mod.lin.In() }

// quantizeJob runs GPTQ or RTN on one module and records it in the report.
func (r *runner) quantizeJob(jb *job, threads int) error {
	start := time.Now()
	lin := jb.mod.lin
	out, in := lin.Out(), lin.In()
	w := make([]float32, out*in)
	lin.W.Widen(w, in, 0, out, 0, in)
	rep := ModuleReport{Name: lin.Name, Layer: jb.layer, Expert: jb.mod.expert, Group: jb.mod.group, Out: out, In: in,
		Tokens: jb.tokens, Fallback: jb.fallback, MinTokens: jb.minTokens, order: jb.order}
	var res *Result
	cfg, _ := r.opt.module(lin.Spec)
	rep.Bits, rep.GroupSize = cfg.Bits, cfg.GroupSize
	var err error
	switch {
	case jb.rtn || jb.fallback == FallbackRTN:
		rep.Method = string(MethodRTN)
		res, err = RTN(w, out, in, cfg)
	default:
		rep.Method = string(MethodGPTQ)
		hs := jb.mod.hess
		if jb.fallback == FallbackAllTokens {
			rep.Method = "gptq+all-tokens"
			merged := NewHessian(in)
			merged.AddHessian(hs)
			merged.AddHessian(jb.extra)
			res, err = gptqThreads(w, out, in, merged.Matrix(), cfg, threads)
			break
		}
		var f *factor
		if f, err = hs.factor(cfg); err == nil {
			res, err = gptqWith(w, out, in, f, cfg, threads)
		}
	}
	if err != nil {
		return err
	}
	jb.result = res.Layer
	rep.Loss, rep.Damp, rep.DampRaises, rep.Dead = res.Loss, res.Damp, res.DampRaises, res.Dead
	rep.ZeroShifted = res.ZeroShifted
	rep.Seconds = time.Since(start).Seconds()
	r.mu.Lock()
	r.rep.Modules = append(r.rep.Modules, rep)
	r.done++
	if r.opt.Progress != nil {
		r.opt.Progress(r.done, r.total, fmt.Sprintf("layer %d/%d", jb.layer+1, len(r.m.Layers)))
	}
	r.mu.Unlock()
	return nil
}

// rtnLayer rounds every quantizable linear of a layer to nearest.
func (r *runner) rtnLayer(l *model.Layer) (map[*model.Linear]*gptq.Layer, error) {
	var jobs []*job
	for k, lin := range l.Linears() {
		if r.opt.quantizes(lin.Spec) {
			jobs = append(jobs, &job{mod: &stageModule{lin: lin, group: groupOf(lin.Spec), expert: lin.Spec.Expert}, layer: l.Index, rtn: true, order: k})
		}
	}
	if err := r.runJobs(jobs, l.Index); err != nil {
		return nil, err
	}
	out := map[*model.Linear]*gptq.Layer{}
	for _, jb := range jobs {
		out[jb.mod.lin] = jb.result
	}
	return out, nil
}

// minTokens is the expert token threshold for a module with in inputs.
func (r *runner) minTokens(in int) int {
	if r.opt.MinExpertTokens >= 0 {
		return max(r.opt.MinExpertTokens, 1)
	}
	return DefaultMinTokens(in)
}

// noteStarved records the routed experts whose modules fell back, once per
// expert with the projections concerned.
func (r *runner) noteStarved(layer int, jobs []*job) {
	for _, jb := range jobs {
		if jb.fallback == "" {
			continue
		}
		proj := string(jb.mod.lin.Spec.Proj)
		found := false
		for k := range r.rep.Starved {
			s := &r.rep.Starved[k]
			if s.Layer == layer && s.Expert == jb.mod.expert {
				s.Modules = append(s.Modules, proj)
				s.MinTokens = max(s.MinTokens, jb.minTokens)
				found = true
			}
		}
		if !found {
			r.rep.Starved = append(r.rep.Starved, StarvedExpert{Layer: layer, Expert: jb.mod.expert, Tokens: jb.tokens,
				MinTokens: jb.minTokens, Fallback: jb.fallback, Modules: []string{proj}})
		}
	}
}

// int4Matrix packs a quantized layer into the matrix the forward pass
// multiplies with (later capture passes see the quantized weights).
func int4Matrix(l *gptq.Layer) (gemm.Matrix, error) {
	p, err := l.Packed()
	if err != nil {
		return nil, err
	}
	return model.MatrixOf(p), nil
}
