package quantize

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moeforge/moeforge/formats/gptq"
	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/internal/gemm"
	"github.com/moeforge/moeforge/model"
)

// expertBatchBytes bounds the routed rows (inputs and outputs) gathered
// for one batch of experts in the expert pipeline.
const expertBatchBytes = 256 << 20

// seqLayer quantizes one decoder layer true-sequentially computing every
// intermediate once (ALGORITHMS.md §3, issue #12):
//
//  1. the normed input → Hessian of q, k, v; GPTQ;
//  2. attention with the quantized q, k, v → the o_proj input (kept per
//     chunk) and its Hessian; GPTQ;
//  3. residual + quantized o → post-attention state (kept) and its norm
//     (kept) → Hessian of the shared expert's (or dense MLP's) gate and up,
//     and the routing; GPTQ of the shared gate and up;
//  4. silu(gate)·up with the quantized shared gate and up (kept) →
//     Hessian of the shared down; GPTQ; its output (kept);
//  5. per routed expert, in batches: Hessian of its routed rows, GPTQ of
//     gate and up, its down inputs from its own quantized gate and up,
//     Hessian, GPTQ of down, its output added (in expert order, as the
//     forward pass does) into the layer's MoE output;
//  6. the layer output = post-attention state + MoE (+ shared) output,
//     the next layer's input.
//
// Each expert's Hessians exist only while a worker quantizes it.
func (r *runner) seqLayer(l *model.Layer) (map[*model.Linear]*gptq.Layer, error) {
	c := r.m.Config
	h := c.HiddenSize
	order := map[*model.Linear]int{}
	for k, lin := range l.Linears() {
		order[lin] = k
	}
	out := map[*model.Linear]*gptq.Layer{}
	newJob := func(group, expert int, lin *model.Linear, hs *Hessian, down bool) *job {
		return &job{mod: &stageModule{lin: lin, group: group, expert: expert, hess: hs, down: down}, layer: l.Index, tokens: hs.Rows, order: order[lin]}
	}
	run := func(jobs ...*job) error {
		if err := r.runJobs(jobs, l.Index); err != nil {
			return err
		}
		for _, jb := range jobs {
			out[jb.mod.lin] = jb.result
		}
		return nil
	}
	a := l.Attn
	chunks := r.acts.chunks

	if err := r.stage(l.Index, "qkv"); err != nil {
		return nil, err
	}
	// 1. q, k, v.
	hq := NewHessian(a.Q.In())
	if err := r.capture(l, a.Q, func(_ int, x []float32, rows int) error { r.hessAdd(hq, x, rows); return nil }); err != nil {
		return nil, err
	}
	if err := run(newJob(1, -1, a.Q, hq, false), newJob(1, -1, a.K, hq, false), newJob(1, -1, a.V, hq, false)); err != nil {
		return nil, err
	}
	hq.release()

	if err := r.stage(l.Index, "o"); err != nil {
		return nil, err
	}
	// 2. o on the attention of the quantized q, k, v.
	ctxs, err := r.acts.sibling(a.O.In())
	if err != nil {
		return nil, err
	}
	defer ctxs.close()
	ho := NewHessian(a.O.In())
	if err := r.capture(l, a.O, func(i int, x []float32, rows int) error {
		r.hessAdd(ho, x, rows)
		var err error
		r.clock.timed(PhaseOther, 1, 0, func() { err = ctxs.store(i, append([]float32(nil), x...)) })
		return err
	}); err != nil {
		return nil, err
	}
	if err := run(newJob(2, -1, a.O, ho, false)); err != nil {
		return nil, err
	}
	ho.release()

	if err := r.stage(l.Index, "post-attention"); err != nil {
		return nil, err
	}
	// 3. post-attention state, its norm, the routing.
	normed, err := r.acts.sibling(h)
	if err != nil {
		return nil, err
	}
	defer normed.close()
	var ffn *model.FFN // dense MLP or shared expert
	moe := l.MoE
	if l.MLP != nil {
		ffn = l.MLP
	} else if moe.Shared != nil {
		ffn = moe.Shared
	}
	var hgu, allIn *Hessian
	if ffn != nil {
		hgu = NewHessian(h)
		allIn = hgu // every token's normed state: also the all-tokens fallback
	} else if r.opt.ExpertFallback == FallbackAllTokens {
		allIn = NewHessian(h)
	}
	type routing struct {
		experts []int32
		weights []float32
	}
	routes := make([]routing, len(chunks))
	for i, ch := range chunks {
		if err := r.ctx.Err(); err != nil {
			return nil, err
		}
		var x, cx []float32
		r.clock.timed(PhaseOther, 1, 0, func() {
			if x, err = r.acts.view(i); err == nil {
				cx, err = ctxs.view(i)
			}
		})
		if err != nil {
			return nil, err
		}
		n2 := make([]float32, ch.rows*h)
		var lg []float32
		r.clock.timed(PhaseForward, 1, linearFlops(ch.rows, a.O.In(), h), func() {
			y := make([]float32, ch.rows*h)
			a.O.Forward(y, cx, ch.rows)
			for k := range x {
				x[k] += y[k]
			}
			model.RMSNorm(n2, x, l.PostNorm, c.RMSNormEps)
			if moe != nil {
				lg = make([]float32, ch.rows*moe.Router.Out())
				moe.Router.Forward(lg, n2, ch.rows)
				routes[i].experts, routes[i].weights = moe.Route(lg, ch.rows)
			}
		})
		if allIn != nil {
			r.hessAdd(allIn, n2, ch.rows)
		}
		r.clock.timed(PhaseOther, 1, 0, func() {
			if err = r.acts.store(i, x); err == nil {
				err = normed.store(i, n2)
			}
		})
		if err != nil {
			return nil, err
		}
	}
	ctxs.close()

	if err := r.stage(l.Index, "mlp"); err != nil {
		return nil, err
	}
	// 4. the dense MLP or shared expert.
	var ffnOut *activations // its contribution to the layer output, per chunk
	if ffn != nil {
		if err := run(newJob(3, -1, ffn.Gate, hgu, false), newJob(3, -1, ffn.Up, hgu, false)); err != nil {
			return nil, err
		}
		acts, err := r.acts.sibling(ffn.Down.In())
		if err != nil {
			return nil, err
		}
		defer acts.close()
		hd := NewHessian(ffn.Down.In())
		for i, ch := range chunks {
			if err := r.ctx.Err(); err != nil {
				return nil, err
			}
			var n2 []float32
			r.clock.timed(PhaseOther, 1, 0, func() { n2, err = normed.view(i) })
			if err != nil {
				return nil, err
			}
			g := make([]float32, ch.rows*ffn.Gate.Out())
			r.clock.timed(PhaseForward, 1, linearFlops(ch.rows, h, ffn.Gate.Out())*2, func() {
				u := make([]float32, len(g))
				ffn.Gate.Forward(g, n2, ch.rows)
				ffn.Up.Forward(u, n2, ch.rows)
				model.SwiGLU(g, u)
			})
			r.hessAdd(hd, g, ch.rows)
			r.clock.timed(PhaseOther, 1, 0, func() { err = acts.store(i, g) })
			if err != nil {
				return nil, err
			}
		}
		if err := run(newJob(4, -1, ffn.Down, hd, false)); err != nil {
			return nil, err
		}
		hd.release()
		if ffnOut, err = r.acts.sibling(h); err != nil {
			return nil, err
		}
		defer ffnOut.close()
		for i, ch := range chunks {
			var g, n2 []float32
			r.clock.timed(PhaseOther, 1, 0, func() {
				if g, err = acts.view(i); err == nil {
					n2, err = normed.view(i)
				}
			})
			if err != nil {
				return nil, err
			}
			y := make([]float32, ch.rows*h)
			r.clock.timed(PhaseForward, 1, linearFlops(ch.rows, ffn.Down.In(), h), func() {
				ffn.Down.Forward(y, g, ch.rows)
				if moe != nil { // shared expert: weighted by sigmoid(shared_expert_gate·x)
					sg := make([]float32, ch.rows)
					moe.SharedGate.Forward(sg, n2, ch.rows)
					for t := 0; t < ch.rows; t++ {
						s := model.Sigmoid(sg[t])
						row := y[t*h : (t+1)*h]
						for d, v := range row {
							row[d] = s * v
						}
					}
				}
			})
			r.clock.timed(PhaseOther, 1, 0, func() { err = ffnOut.store(i, y) })
			if err != nil {
				return nil, err
			}
		}
		acts.close()
	}

	if err := r.stage(l.Index, "experts"); err != nil {
		return nil, err
	}
	// 5. routed experts.
	var moeOut [][]float32
	if moe != nil {
		moeOut = make([][]float32, len(chunks))
		for i, ch := range chunks {
			moeOut[i] = make([]float32, ch.rows*h)
		}
		ex := &expertRun{r: r, l: l, moe: moe, normed: normed, moeOut: moeOut, allIn: allIn, newJob: newJob, out: out}
		for i := range chunks {
			ex.addRoutes(i, routes[i].experts, routes[i].weights)
		}
		if err := ex.run(); err != nil {
			return nil, err
		}
	}
	if hgu != nil {
		hgu.release()
	}
	if allIn != nil {
		allIn.release()
	}

	if err := r.stage(l.Index, "output"); err != nil {
		return nil, err
	}
	// 6. the layer output, the next layer's input.
	if l.Index < len(r.m.Layers)-1 || r.lmHeadNeedsActs() {
		for i := range chunks {
			var x, y []float32
			r.clock.timed(PhaseOther, 1, 0, func() {
				if x, err = r.acts.view(i); err == nil && ffnOut != nil {
					y, err = ffnOut.view(i)
				}
			})
			if err != nil {
				return nil, err
			}
			r.clock.timed(PhaseForward, 1, 0, func() {
				sum := y
				if moeOut != nil {
					sum = moeOut[i]
					for k, v := range y {
						sum[k] += v
					}
				}
				for k, v := range sum {
					x[k] += v
				}
			})
			if moeOut != nil {
				moeOut[i] = nil
			}
			if k := nonFinite32(x); k >= 0 {
				return nil, fmt.Errorf("%s: output of the quantized layer is %v at token %d, feature %d (weights or activations overflow)",
					strings.TrimSuffix(hf.LayerPrefix(l.Index), "."), x[k], k/h, k%h)
			}
			r.clock.timed(PhaseOther, 1, 0, func() { err = r.acts.store(i, x) })
			if err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// seqSupports reports whether seqLayer handles layer l with the options:
// routed expert calibration and every quantizable linear of the layer
// quantized (no dynamic "-:" exclusion). Otherwise gptqLayer runs it.
func (r *runner) seqSupports(l *model.Layer) bool {
	if !r.opt.MoECalib.routed() {
		return false
	}
	for _, lin := range l.Linears() {
		if quantizable(lin.Spec) && !r.opt.quantizes(lin.Spec) {
			return false
		}
	}
	return true
}

// capture runs the layer over every chunk up to lin's input (with the
// layer's current weights) and hands that input to f with the chunk index.
// Time up to lin counts as forward (linear FLOPs counted by the hook,
// attention added), f's Hessian updates as hessian.
func (r *runner) capture(l *model.Layer, lin *model.Linear, f func(i int, x []float32, rows int) error) error {
	c := r.m.Config
	for i, ch := range r.acts.chunks {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		var x []float32
		var err error
		r.clock.timed(PhaseOther, 1, 0, func() { x, err = r.acts.load(i) })
		if err != nil {
			return err
		}
		var flops float64
		var inner time.Duration
		var ferr error
		hooks := &model.Hooks{LinearInput: func(got *model.Linear, x []float32, rows int) {
			if got != lin {
				flops += linearFlops(rows, got.In(), got.Out())
				return
			}
			t := time.Now()
			ferr = f(i, x, rows)
			inner += time.Since(t)
		}}
		if lin == l.Attn.O {
			for _, s := range ch.seqs {
				flops += 2 * float64(len(s)) * float64(len(s)) * float64(c.NumAttentionHeads*c.HeadDim)
			}
		}
		t := time.Now()
		r.forward(l, x, ch.seqs, hooks, &need{Static: []*model.Linear{lin}})
		r.clock.add(PhaseForward, time.Since(t)-inner, 1, flops)
		if ferr != nil {
			return ferr
		}
	}
	return nil
}

// hessAdd adds rows to hs, timed as the hessian phase.
func (r *runner) hessAdd(hs *Hessian, x []float32, rows int) {
	r.clock.timed(PhaseHessian, 1, hessianFlops(rows, hs.Dim), func() { hs.Add(x, rows) })
}

// expertRun is step 5 of seqLayer: the routed experts of one layer.
type expertRun struct {
	r      *runner
	l      *model.Layer
	moe    *model.MoE
	normed *activations
	moeOut [][]float32
	allIn  *Hessian
	newJob func(group, expert int, lin *model.Linear, hs *Hessian, down bool) *job
	out    map[*model.Linear]*gptq.Layer

	// rows[e] lists the (chunk, row) of every token routed to e, in the
	// forward pass's order; weight[e] the routing weights.
	rows   [][][2]int32
	weight [][]float32
}

func (e *expertRun) addRoutes(chunk int, experts []int32, weights []float32) {
	n := len(e.moe.Experts)
	if e.rows == nil {
		e.rows, e.weight = make([][][2]int32, n), make([][]float32, n)
	}
	K := e.moe.TopK
	for k, ex := range experts {
		e.rows[ex] = append(e.rows[ex], [2]int32{int32(chunk), int32(k / K)})
		e.weight[ex] = append(e.weight[ex], weights[k])
	}
}

// expertWork is one expert's state through the pipeline.
type expertWork struct {
	e          int
	x          []float32 // its routed normed rows
	act        []float32 // its down inputs
	y          []float32 // its down outputs
	gate, up   *job
	down       *job
	allDown    *Hessian // all-tokens down Hessian of a starved expert
	downStarve bool
}

func (e *expertRun) run() error {
	r := e.r
	h := e.moe.Router.In()
	n := len(e.moe.Experts)
	for e0 := 0; e0 < n; {
		// A batch of experts whose gathered rows fit the budget.
		var batch []*expertWork
		bytes := 0
		for e1 := e0; e1 < n && (len(batch) == 0 || bytes < expertBatchBytes); e1++ {
			batch = append(batch, &expertWork{e: e1})
			bytes += 2 * 4 * len(e.rows[e1]) * h
		}
		e0 += len(batch)
		if err := e.gather(batch); err != nil {
			return err
		}
		// An expert goes through gate/up and down on one worker, unless its
		// down Hessian needs every token (allTokensDown, a sweep over the
		// chunks once the batch's gate/up are quantized).
		if err := e.parallel(batch, func(w *expertWork, weight float64) error {
			if err := e.gateUp(w, weight); err != nil || w.downStarve {
				return err
			}
			return e.downStep(w, weight)
		}); err != nil {
			return err
		}
		var starved []*expertWork
		for _, w := range batch {
			if w.downStarve {
				starved = append(starved, w)
			}
		}
		if err := e.allTokensDown(starved); err != nil {
			return err
		}
		if err := e.parallel(starved, e.downStep); err != nil {
			return err
		}
		// Outputs in expert order, as the forward pass adds them: each
		// chunk's rows by one worker.
		workers := min(gemm.Threads(), len(e.moeOut))
		r.clock.timed(PhaseForward, 1, 0, func() {
			var wg sync.WaitGroup
			for t := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for _, w := range batch {
						for k, rc := range e.rows[w.e] {
							if int(rc[0])%workers != t {
								continue
							}
							wt := e.weight[w.e][k]
							dst := e.moeOut[rc[0]][int(rc[1])*h : (int(rc[1])+1)*h]
							for d, v := range w.y[k*h : (k+1)*h] {
								dst[d] += wt * v
							}
						}
					}
				}()
			}
			wg.Wait()
			for _, w := range batch {
				w.y = nil
			}
		})
		for _, w := range batch {
			for _, jb := range []*job{w.gate, w.up, w.down} {
				e.out[jb.mod.lin] = jb.result
			}
		}
		r.noteStarved(e.l.Index, batchJobs(batch))
	}
	return nil
}

func batchJobs(batch []*expertWork) []*job {
	var jobs []*job
	for _, w := range batch {
		jobs = append(jobs, w.gate, w.up, w.down)
	}
	return jobs
}

// gather copies every batch expert's routed normed rows, one sweep over
// the chunks.
func (e *expertRun) gather(batch []*expertWork) error {
	r := e.r
	h := e.moe.Router.In()
	for _, w := range batch {
		w.x = make([]float32, len(e.rows[w.e])*h)
	}
	// In memory the experts are split over the workers; spilled, one sweep
	// decompresses each chunk once.
	workers := 1
	if e.normed.spill == "" {
		workers = min(gemm.Threads(), len(batch))
	}
	errs := make([]error, workers)
	r.clock.timed(PhaseOther, 1, 0, func() {
		var wg sync.WaitGroup
		for t := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range r.acts.chunks {
					n2, err := e.normed.view(i)
					if err != nil {
						errs[t] = err
						return
					}
					for b := t; b < len(batch); b += workers {
						w := batch[b]
						for k, rc := range e.rows[w.e] {
							if int(rc[0]) == i {
								copy(w.x[k*h:(k+1)*h], n2[int(rc[1])*h:(int(rc[1])+1)*h])
							}
						}
					}
				}
			}()
		}
		wg.Wait()
	})
	return errors.Join(errs...)
}

// parallel runs step on every expert of the batch on gemm.Threads()
// workers, each worker's time split by phase at 1/workers.
func (e *expertRun) parallel(batch []*expertWork, step func(w *expertWork, weight float64) error) error {
	r := e.r
	workers := max(1, min(gemm.Threads(), len(batch)))
	weight := 1 / float64(workers)
	var next atomic.Int32
	var failed atomic.Bool
	errs := make([]error, len(batch))
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1)) - 1
				if k >= len(batch) || failed.Load() || r.ctx.Err() != nil {
					return
				}
				if err := step(batch[k], weight); err != nil {
					errs[k] = err
					failed.Store(true)
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return r.ctx.Err()
}

// quantize runs a gate or up job on the calling worker and installs its
// result.
func (e *expertRun) quantize(jb *job, weight float64) error {
	r := e.r
	lin := jb.mod.lin
	if jb.mod.expert >= 0 {
		jb.minTokens = r.minTokens(lin.In())
		if jb.tokens < jb.minTokens {
			jb.fallback = r.opt.ExpertFallback
			if jb.fallback == FallbackAllTokens {
				jb.extra = e.allIn
			}
		}
	}
	var err error
	var flops float64
	if jb.fallback != FallbackRTN {
		flops = gptqFlops(lin.Out(), lin.In(), jb.fallback != "" || lin == e.moe.Experts[jb.mod.expert].Gate)
	}
	r.clock.timed(PhaseQuantize, weight, flops, func() { err = r.quantizeJob(jb, 1) })
	if err != nil {
		return fmt.Errorf("%s: %w", lin.Name, err)
	}
	return r.install(jb)
}

// gateUp: the expert's gate/up Hessian from its own rows, GPTQ of both.
func (e *expertRun) gateUp(w *expertWork, weight float64) error {
	r := e.r
	ex := e.moe.Experts[w.e]
	rows := len(e.rows[w.e])
	hs := NewHessian(ex.Gate.In())
	r.clock.timed(PhaseHessian, weight, hessianFlops(rows, hs.Dim), func() { hs.Add(w.x, rows) })
	w.gate, w.up = e.newJob(5, w.e, ex.Gate, hs, false), e.newJob(5, w.e, ex.Up, hs, false)
	for _, jb := range []*job{w.gate, w.up} {
		if err := e.quantize(jb, weight); err != nil {
			return err
		}
	}
	hs.release()
	// Its down inputs from its quantized gate and up on its own rows.
	w.act = make([]float32, rows*ex.Gate.Out())
	r.clock.timed(PhaseForward, weight, 2*linearFlops(rows, ex.Gate.In(), ex.Gate.Out()), func() {
		if rows == 0 {
			return
		}
		u := make([]float32, len(w.act))
		ex.Gate.Forward(w.act, w.x, rows)
		ex.Up.Forward(u, w.x, rows)
		model.SwiGLU(w.act, u)
	})
	w.x = nil
	if r.opt.ExpertFallback == FallbackAllTokens && rows < r.minTokens(ex.Down.In()) {
		w.downStarve = true
		w.allDown = NewHessian(ex.Down.In())
	}
	return nil
}

// allTokensDown computes, for the batch's starved experts, Σaaᵀ of their
// down inputs over every token (their quantized gate and up applied to
// every normed row), one sweep over the chunks.
func (e *expertRun) allTokensDown(starved []*expertWork) error {
	r := e.r
	h := e.moe.Router.In()
	if len(starved) == 0 {
		return nil
	}
	for i, ch := range r.acts.chunks {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		var n2 []float32
		var err error
		r.clock.timed(PhaseOther, 1, 0, func() { n2, err = e.normed.view(i) })
		if err != nil {
			return err
		}
		for _, w := range starved {
			ex := e.moe.Experts[w.e]
			a := make([]float32, ch.rows*ex.Gate.Out())
			r.clock.timed(PhaseForward, 1, 2*linearFlops(ch.rows, h, ex.Gate.Out()), func() {
				u := make([]float32, len(a))
				ex.Gate.Forward(a, n2, ch.rows)
				ex.Up.Forward(u, n2, ch.rows)
				model.SwiGLU(a, u)
			})
			r.hessAdd(w.allDown, a, ch.rows)
		}
	}
	return nil
}

// downStep: the expert's down Hessian, GPTQ, and its outputs.
func (e *expertRun) downStep(w *expertWork, weight float64) error {
	r := e.r
	ex := e.moe.Experts[w.e]
	rows := len(e.rows[w.e])
	hs := NewHessian(ex.Down.In())
	r.clock.timed(PhaseHessian, weight, hessianFlops(rows, hs.Dim), func() { hs.Add(w.act, rows) })
	w.down = e.newJob(6, w.e, ex.Down, hs, true)
	w.down.extra = w.allDown
	if err := e.quantizeDown(w, weight); err != nil {
		return err
	}
	hs.release()
	w.allDown = nil
	r.clock.timed(PhaseForward, weight, linearFlops(rows, ex.Down.In(), ex.Down.Out()), func() {
		w.y = make([]float32, rows*ex.Down.Out())
		if rows > 0 {
			ex.Down.Forward(w.y, w.act, rows)
		}
	})
	w.act = nil
	return nil
}

func (e *expertRun) quantizeDown(w *expertWork, weight float64) error {
	jb := w.down
	r := e.r
	lin := jb.mod.lin
	jb.minTokens = r.minTokens(lin.In())
	if jb.tokens < jb.minTokens {
		jb.fallback = r.opt.ExpertFallback
	}
	var err error
	var flops float64
	if jb.fallback != FallbackRTN {
		flops = gptqFlops(lin.Out(), lin.In(), true)
	}
	r.clock.timed(PhaseQuantize, weight, flops, func() { err = r.quantizeJob(jb, 1) })
	if err != nil {
		return fmt.Errorf("%s: %w", lin.Name, err)
	}
	return r.install(jb)
}
