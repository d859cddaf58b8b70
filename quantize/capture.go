package quantize

import (
	"fmt"
	"math"
	"strings"

	"github.com/moeforge/moeforge/formats/gptq"
	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/model"
)

// stageModule is one linear to quantize in a stage.
type stageModule struct {
	lin    *model.Linear
	group  int
	expert int
	hess   *Hessian      // Hessian of its inputs (shared by modules with the same input)
	capLin *model.Linear // the linear whose input hook fills hess
	down   bool          // an expert's down projection
}

// gptqLayer quantizes one decoder layer with GPTQ, stage by stage, and then
// replaces the calibration activations by the layer's output computed with
// all its quantized weights.
func (r *runner) gptqLayer(l *model.Layer) (map[*model.Linear]*gptq.Layer, error) {
	h := r.m.Config.HiddenSize
	var mods []*stageModule
	capture := map[*model.Linear]*Hessian{}
	add := func(group, expert int, first *model.Linear, down bool, lins ...*model.Linear) {
		var hs *Hessian
		for _, lin := range lins {
			if !r.opt.quantizes(lin.Spec) { // left float by a dynamic "-:" rule
				continue
			}
			if hs == nil {
				hs = NewHessian(first.In())
				capture[first] = hs
			}
			mods = append(mods, &stageModule{lin: lin, group: group, expert: expert, hess: hs, capLin: first, down: down})
		}
	}
	a := l.Attn
	add(1, -1, a.Q, false, a.Q, a.K, a.V)
	add(2, -1, a.O, false, a.O)
	var moe *model.MoE
	if l.MLP != nil {
		add(3, -1, l.MLP.Gate, false, l.MLP.Gate, l.MLP.Up)
		add(4, -1, l.MLP.Down, false, l.MLP.Down)
	} else {
		moe = l.MoE
		if moe.Shared != nil {
			add(3, -1, moe.Shared.Gate, false, moe.Shared.Gate, moe.Shared.Up)
			add(4, -1, moe.Shared.Down, false, moe.Shared.Down)
		}
		for e, ex := range moe.Experts {
			add(5, e, ex.Gate, false, ex.Gate, ex.Up)
			add(6, e, ex.Down, true, ex.Down)
		}
	}
	order := map[*model.Linear]int{}
	for k, lin := range l.Linears() {
		order[lin] = k
	}
	stages := [][]int{{1, 2, 3, 4, 5, 6}}
	if r.opt.Config.TrueSequential {
		// Groups 3 and 5 (and 4 and 6) read the same inputs: the shared
		// expert and the routed experts both take the post-attention norm
		// of the layer, so one pass captures both.
		stages = [][]int{{1}, {2}, {3, 5}, {4, 6}}
	}
	allTokens := r.opt.ExpertFallback == FallbackAllTokens && moe != nil
	// allIn: Σxxᵀ over every token entering the MoE block (the router's input).
	var allIn *Hessian
	var allDown map[int]*Hessian
	out := map[*model.Linear]*gptq.Layer{}
	for _, st := range stages {
		inStage := map[int]bool{}
		for _, g := range st {
			inStage[g] = true
		}
		stageCap := map[*model.Linear]*Hessian{}
		var stageMods []*stageModule
		// Without routed calibration the experts' Hessians come from the
		// router's input through selfCalib, not from the forward pass.
		selfCalib := map[int]*stageModule{}
		ownRows := moe != nil && !r.opt.MoECalib.routed()
		for _, sm := range mods {
			if inStage[sm.group] {
				stageMods = append(stageMods, sm)
				if ownRows && sm.expert >= 0 {
					selfCalib[sm.expert*8+sm.group] = sm
					continue
				}
				stageCap[sm.capLin] = sm.hess
			}
		}
		var routerCap *Hessian
		if allTokens && inStage[5] {
			if moe.Shared != nil && capture[moe.Shared.Gate] != nil {
				allIn = capture[moe.Shared.Gate] // the same rows: every token's normed input
			} else {
				allIn = NewHessian(h)
				routerCap = allIn
			}
		}
		hooks := &model.Hooks{LinearInput: func(lin *model.Linear, x []float32, rows int) {
			if hs := stageCap[lin]; hs != nil {
				hs.Add(x, rows)
			}
			if routerCap != nil && moe != nil && lin == moe.Router {
				routerCap.Add(x, rows)
			}
			if len(selfCalib) > 0 && lin == moe.Router {
				h := r.m.Config.HiddenSize
				for e, idx := range r.opt.MoECalib.selectRows(moe, x, rows) {
					if len(idx) == 0 {
						continue
					}
					xe := gatherRows(x, h, idx)
					if sm := selfCalib[e*8+5]; sm != nil {
						sm.hess.Add(xe, len(idx))
					}
					if sm := selfCalib[e*8+6]; sm != nil {
						sm.hess.Add(expertActivations(moe.Experts[e], xe, len(idx)), len(idx))
					}
				}
			}
		}}
		nd := &need{moe: moe}
		for lin := range stageCap {
			if lin.Spec.Kind != hf.KindExpert {
				nd.Static = append(nd.Static, lin)
			}
		}
		if routerCap != nil || len(selfCalib) > 0 {
			nd.Static = append(nd.Static, moe.Router)
		}
		nd.RoutedGate, nd.RoutedDown = moe != nil && inStage[5] && !ownRows, moe != nil && inStage[6] && !ownRows
		if err := r.pass(l, hooks, false, nd); err != nil {
			return nil, err
		}
		// Starved experts' down projections need Σaaᵀ of their intermediate
		// activations a over every token: one more pass computes them with
		// the expert's current gate and up weights.
		if allTokens && inStage[6] {
			allDown = map[int]*Hessian{}
			for _, sm := range stageMods {
				if sm.down && sm.hess.Rows < r.minTokens(sm.lin.In()) {
					allDown[sm.expert] = NewHessian(sm.lin.In())
				}
			}
			if len(allDown) > 0 {
				hooks := &model.Hooks{LinearInput: func(lin *model.Linear, x []float32, rows int) {
					if lin != moe.Router {
						return
					}
					for e, hs := range allDown {
						hs.Add(expertActivations(moe.Experts[e], x, rows), rows)
					}
				}}
				if err := r.pass(l, hooks, false, &need{Static: []*model.Linear{moe.Router}}); err != nil {
					return nil, err
				}
			}
		}
		jobs := make([]*job, len(stageMods))
		for k, sm := range stageMods {
			jb := &job{mod: sm, layer: l.Index, tokens: sm.hess.Rows, order: order[sm.lin]}
			if sm.expert >= 0 {
				jb.minTokens = r.minTokens(sm.lin.In())
				if jb.tokens < jb.minTokens {
					jb.fallback = r.opt.ExpertFallback
					if jb.fallback == FallbackAllTokens {
						jb.extra = allIn
						if sm.down {
							jb.extra = allDown[sm.expert]
						}
					}
				}
			}
			jobs[k] = jb
		}
		if err := r.runJobs(jobs, l.Index); err != nil {
			return nil, err
		}
		for _, jb := range jobs {
			out[jb.mod.lin] = jb.result
			jb.mod.hess.release() // the stage's Hessians are no longer needed
		}
		r.noteStarved(l.Index, jobs)
	}
	// The layer's output with every quantized weight feeds the next layer.
	if l.Index < len(r.m.Layers)-1 || r.opt.Config.LMHead {
		if err := r.pass(l, nil, true, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// expertActivations returns silu(gate·x) ⊙ (up·x) [rows, width] of an expert
// for x [rows, hidden]: the input of its down projection.
func expertActivations(e *model.FFN, x []float32, rows int) []float32 {
	g := make([]float32, rows*e.Gate.Out())
	u := make([]float32, rows*e.Up.Out())
	e.Gate.Forward(g, x, rows)
	e.Up.Forward(u, x, rows)
	for i, v := range g {
		g[i] = v / (1 + float32(math.Exp(-float64(v)))) * u[i]
	}
	return g
}

// need says which inputs a capture pass waits for: once every linear of
// Static and, with RoutedGate/RoutedDown, the gate or down projection of
// every expert the router selected in the chunk has received its input, the
// rest of the layer's forward pass is skipped.
type need struct {
	Static                 []*model.Linear
	RoutedGate, RoutedDown bool
	moe                    *model.MoE
}

// stopPass is panicked by a capture hook when a pass has every input it
// needs; pass recovers it. Hooks run on the goroutine of the forward pass,
// between matrix products, so nothing is left half done.
type stopPass struct{}

// pass runs layer l over every calibration chunk with the given hooks; with
// keep the outputs replace the stored activations (after a check that they
// are finite). With a non-nil need, each chunk's forward pass stops once
// the needed inputs have been captured.
func (r *runner) pass(l *model.Layer, hooks *model.Hooks, keep bool, nd *need) error {
	for i, ch := range r.acts.chunks {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		x, err := r.acts.load(i)
		if err != nil {
			return err
		}
		r.forward(l, x, ch.seqs, hooks, nd)
		if keep {
			if k := nonFinite32(x); k >= 0 {
				return fmt.Errorf("%s: output of the quantized layer is %v at token %d, feature %d (weights or activations overflow)",
					strings.TrimSuffix(hf.LayerPrefix(l.Index), "."), x[k], k/r.m.Config.HiddenSize, k%r.m.Config.HiddenSize)
			}
			if err := r.acts.store(i, x); err != nil {
				return err
			}
		}
	}
	return nil
}

// forward runs ForwardLayer on one chunk, stopping early as nd allows.
func (r *runner) forward(l *model.Layer, x []float32, seqs [][]int, hooks *model.Hooks, nd *need) {
	if nd == nil || r.opt.fullPasses {
		r.m.ForwardLayer(l, x, &model.Batch{Seqs: seqs}, hooks)
		return
	}
	pending := map[*model.Linear]bool{}
	for _, lin := range nd.Static {
		pending[lin] = true
	}
	routed := !(nd.RoutedGate || nd.RoutedDown)
	wrapped := &model.Hooks{
		LinearInput: func(lin *model.Linear, x []float32, rows int) {
			if hooks != nil && hooks.LinearInput != nil {
				hooks.LinearInput(lin, x, rows)
			}
			delete(pending, lin)
			if routed && len(pending) == 0 {
				panic(stopPass{})
			}
		},
		Routing: func(layer int, logits []float32, experts []int32, weights []float32) {
			if hooks != nil && hooks.Routing != nil {
				hooks.Routing(layer, logits, experts, weights)
			}
			for _, e := range experts {
				ex := nd.moe.Experts[e]
				if nd.RoutedGate {
					pending[ex.Gate] = true
				}
				if nd.RoutedDown {
					pending[ex.Down] = true
				}
			}
			routed = true
		},
	}
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(stopPass); !ok {
				panic(v)
			}
		}
	}()
	r.m.ForwardLayer(l, x, &model.Batch{Seqs: seqs}, wrapped)
}
