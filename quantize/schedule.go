package quantize

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moeforge/moeforge/formats/gptq"
	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/gemm"
	"github.com/moeforge/moeforge/internal/half"
	"github.com/moeforge/moeforge/model"
)

// DefaultChunkTokens is how many calibration tokens a layer's forward pass
// processes at once.
const DefaultChunkTokens = 8192

// Options configure Run.
type Options struct {
	Method Method
	// Config is the per-matrix setting (group size, sym, act-order, static
	// groups, damping).
	Config Config
	// TrueSequential quantizes a layer's linears in the groups
	// [q,k,v] → [o] → [shared gate,up] → [shared down] → [experts gate,up]
	// → [experts down] (dense MLP: [gate,up] → [down]), each group's
	// Hessian taken with the earlier groups already quantized. Off: every
	// Hessian comes from the layer's inputs with its original weights.
	TrueSequential bool
	// MinExpertTokens is the number of routed tokens below which an expert's
	// module gets ExpertFallback instead of plain GPTQ; negative selects
	// DefaultMinTokens of the module's input width. An expert that saw no
	// token always falls back.
	MinExpertTokens int
	ExpertFallback  Fallback
	// ChunkTokens bounds the tokens of one forward pass (DefaultChunkTokens
	// when 0).
	ChunkTokens int
	// SpillDir, when set, keeps the calibration activations zstd-compressed
	// in a temporary directory under it instead of in memory.
	SpillDir string
	// MaxShardSize caps the output shards (safetensors default when 0).
	MaxShardSize int64
	// Calibration describes the calibration data for the report.
	Calibration *Calibration
	// Progress, when set, is told after every quantized module how many of
	// the total are done, with a label naming the layer.
	Progress func(done, total int, label string)

	// observe, when set (tests), receives every quantized module.
	observe func(name string, l *gptq.Layer)
	// fullPasses (tests) runs every capture pass to the end of the layer.
	fullPasses bool
}

// DefaultMinTokens is the default expert token threshold for a module with
// in inputs: in/8 (ALGORITHMS.md §3), at least 1.
//
// Measured on qwen2_moe_a60 (TestExpertFallbackHeldOut, -tags slow): on
// held-out text, GPTQ on an expert's own routed tokens beats round-to-nearest
// by 5-20× in output error even with 16-64 tokens, and beats the all-token
// Hessian from about in/8 tokens up; below that the all-token Hessian is as
// good or better, and for experts with no token it halves RTN's error.
func DefaultMinTokens(in int) int { return max(in/8, 1) }

// DefaultOptions are the settings of `moeforge quantize` without flags:
// GPTQ, group 128, symmetric, damp 0.01, true-sequential, starved experts
// (fewer than in_features/8 tokens) quantized with the all-token Hessian.
func DefaultOptions() Options {
	return Options{Method: MethodGPTQ, Config: Config{GroupSize: 128, Sym: true, Damp: 0.01}, TrueSequential: true,
		MinExpertTokens: -1, ExpertFallback: FallbackAllTokens, ChunkTokens: DefaultChunkTokens}
}

// quantizable reports whether a linear layer is quantized: attention, dense
// MLP, shared and routed experts; not the router, the shared expert gate or
// lm_head.
func quantizable(l hf.Linear) bool {
	switch l.Kind {
	case hf.KindAttention, hf.KindMLP, hf.KindExpert, hf.KindSharedExpert:
		return true
	}
	return false
}

// groupOf is the true-sequential group (1..6) of a quantized linear.
func groupOf(l hf.Linear) int {
	switch l.Kind {
	case hf.KindAttention:
		if strings.HasSuffix(l.Name, hf.OProj) {
			return 2
		}
		return 1
	case hf.KindMLP, hf.KindSharedExpert:
		if l.Proj == hf.DownProj {
			return 4
		}
		return 3
	}
	if l.Proj == hf.DownProj {
		return 6
	}
	return 5
}

// GroupNames names the true-sequential groups of ModuleReport.Group.
var GroupNames = []string{"q,k,v", "o", "mlp/shared_expert gate,up", "mlp/shared_expert down", "experts gate,up", "experts down"}

// Run quantizes the checkpoint ck into dir (an existing empty directory,
// normally an internal/outdir temporary): weights streamed layer by layer
// into model.safetensors (or shards), config.json with quantization_config,
// quantize_config.json, and every non-weight file of ck. calib holds the
// calibration token sequences (unused by RTN).
func Run(ctx context.Context, ck *hf.Checkpoint, dir string, calib [][]int, opt Options) (*Report, error) {
	start := time.Now()
	c := ck.Config
	if c.Quantization != nil {
		return nil, fmt.Errorf("%s is already GPTQ-quantized (quantization_config in config.json)", ck.Dir)
	}
	if opt.Method != MethodGPTQ && opt.Method != MethodRTN {
		return nil, fmt.Errorf("unknown method %q (want gptq or rtn)", opt.Method)
	}
	if opt.Method == MethodRTN {
		opt.Config.DescAct, opt.Config.StaticGroups = false, false
	}
	if opt.ExpertFallback != FallbackRTN && opt.ExpertFallback != FallbackAllTokens {
		return nil, fmt.Errorf("unknown expert fallback %q (want rtn or all-tokens)", opt.ExpertFallback)
	}
	if opt.ChunkTokens <= 0 {
		opt.ChunkTokens = DefaultChunkTokens
	}
	for i := 0; i < c.NumHiddenLayers; i++ {
		for _, l := range c.LayerLinears(i) {
			if quantizable(l) {
				if err := opt.Config.check(l.Out, l.In); err != nil {
					return nil, fmt.Errorf("%s: %w", l.Name, err)
				}
			}
		}
	}
	if opt.Method == MethodGPTQ && len(calib) == 0 {
		return nil, errors.New("GPTQ needs calibration sequences")
	}
	m, err := model.Load(ck)
	if err != nil {
		return nil, err
	}
	minTok := "in_features/8"
	if opt.MinExpertTokens >= 0 {
		minTok = fmt.Sprint(opt.MinExpertTokens)
	}
	r := &runner{ctx: ctx, ck: ck, m: m, opt: opt, dir: dir, rep: &Report{
		Input: ck.Dir, Output: dir, Method: opt.Method, Bits: gptq.Bits, GroupSize: opt.Config.GroupSize, Sym: opt.Config.Sym,
		DescAct: opt.Config.DescAct, StaticGroups: opt.Config.StaticGroups, Damp: opt.Config.Damp,
		TrueSequential: opt.TrueSequential, MinExpertTokens: minTok, ExpertFallback: opt.ExpertFallback,
		Calibration: opt.Calibration, GroupNames: GroupNames, Starved: []StarvedExpert{}}}
	if err := r.run(calib); err != nil {
		if r.w != nil {
			r.w.Abort()
		}
		return nil, err
	}
	r.rep.Seconds = time.Since(start).Seconds()
	r.rep.finish()
	return r.rep, nil
}

type runner struct {
	ctx  context.Context
	ck   *hf.Checkpoint
	m    *model.Model
	opt  Options
	dir  string
	rep  *Report
	w    *safetensors.DirWriter
	acts *activations

	mu          sync.Mutex // guards rep.Modules and done
	done, total int
}

func (r *runner) run(calib [][]int) error {
	c := r.ck.Config
	plan, err := r.plan()
	if err != nil {
		return err
	}
	if r.w, err = safetensors.NewDirWriter(r.dir, plan, safetensors.WriterOptions{MaxShardSize: r.opt.MaxShardSize}); err != nil {
		return err
	}
	for i := 0; i < c.NumHiddenLayers; i++ {
		for _, l := range c.LayerLinears(i) {
			if quantizable(l) {
				r.total++
			}
		}
	}
	if err := r.writeRaw(hf.EmbedTokens); err != nil {
		return err
	}
	if r.opt.Method == MethodGPTQ {
		if r.acts, err = newActivations(calib, r.opt.ChunkTokens, c.HiddenSize, r.opt.SpillDir); err != nil {
			return err
		}
		defer r.acts.close()
		for i, ch := range r.acts.chunks {
			x, err := r.m.Embed(&model.Batch{Seqs: ch.seqs})
			if err != nil {
				return fmt.Errorf("calibration: %w", err)
			}
			if err := r.acts.store(i, x); err != nil {
				return err
			}
		}
	}
	for _, l := range r.m.Layers {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		type weights struct {
			w    gemm.Matrix
			bias []float32
		}
		orig := map[*model.Linear]weights{}
		for _, lin := range l.Linears() {
			orig[lin] = weights{lin.W, lin.Bias}
		}
		var q map[*model.Linear]*gptq.Layer
		if r.opt.Method == MethodGPTQ {
			q, err = r.gptqLayer(l)
		} else {
			q, err = r.rtnLayer(l)
		}
		if err == nil {
			err = r.writeLayer(l, q)
		}
		// Give the layer its original weights back: the quantized ones are
		// written, and the model stays the caller's float model.
		for lin, w := range orig {
			lin.W, lin.Bias = w.w, w.bias
		}
		if err != nil {
			return err
		}
	}
	if err := r.writeRaw(hf.FinalNorm); err != nil {
		return err
	}
	if !c.TieWordEmbeddings {
		if err := r.writeRaw(hf.LMHead + ".weight"); err != nil {
			return err
		}
	}
	if err := r.w.Close(); err != nil {
		return err
	}
	return r.writeConfigs()
}

// stageModule is one linear to quantize in a stage.
type stageModule struct {
	lin    *model.Linear
	group  int
	expert int
	hess   *Hessian // Hessian of its inputs (shared by modules with the same input)
	down   bool     // an expert's down projection
}

// gptqLayer quantizes one decoder layer with GPTQ, stage by stage, and then
// replaces the calibration activations by the layer's output computed with
// all its quantized weights.
func (r *runner) gptqLayer(l *model.Layer) (map[*model.Linear]*gptq.Layer, error) {
	h := r.m.Config.HiddenSize
	var mods []*stageModule
	capture := map[*model.Linear]*Hessian{}
	add := func(group, expert int, first *model.Linear, down bool, lins ...*model.Linear) {
		hs := NewHessian(first.In())
		capture[first] = hs
		for _, lin := range lins {
			mods = append(mods, &stageModule{lin: lin, group: group, expert: expert, hess: hs, down: down})
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
	if r.opt.TrueSequential {
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
		for _, sm := range mods {
			if inStage[sm.group] {
				stageMods = append(stageMods, sm)
				if hs := capture[sm.lin]; hs != nil {
					stageCap[sm.lin] = hs
				}
			}
		}
		var routerCap *Hessian
		if allTokens && inStage[5] {
			if moe.Shared != nil {
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
		}}
		nd := &need{moe: moe}
		for lin := range stageCap {
			if lin.Spec.Kind != hf.KindExpert {
				nd.Static = append(nd.Static, lin)
			}
		}
		if routerCap != nil {
			nd.Static = append(nd.Static, moe.Router)
		}
		nd.RoutedGate, nd.RoutedDown = moe != nil && inStage[5], moe != nil && inStage[6]
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
			jb.mod.hess.sum = nil // the stage's Hessians are no longer needed
		}
		r.noteStarved(l.Index, jobs)
	}
	// The layer's output with every quantized weight feeds the next layer.
	if l.Index < len(r.m.Layers)-1 {
		if err := r.pass(l, nil, true, nil); err != nil {
			return nil, err
		}
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

// runJobs quantizes the jobs on up to gemm.Threads() goroutines (largest
// first) and swaps every module's weight for its int4 matrix.
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
		m, err := jb.result.Matrix()
		if err != nil {
			return fmt.Errorf("%s: %w", jb.mod.lin.Name, err)
		}
		jb.mod.lin.W = m
		if b := jb.mod.lin.Bias; b != nil {
			// The output stores the bias as float16: later passes use that.
			r16 := make([]float32, len(b))
			for k, v := range b {
				r16[k] = half.F16ToF32(half.F32ToF16(v))
			}
			jb.mod.lin.Bias = r16
		}
		if r.opt.observe != nil {
			r.opt.observe(jb.mod.lin.Name, jb.result)
		}
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
	var err error
	switch {
	case jb.rtn || jb.fallback == FallbackRTN:
		rep.Method = string(MethodRTN)
		res, err = RTN(w, out, in, r.opt.Config)
	default:
		rep.Method = string(MethodGPTQ)
		hs := jb.mod.hess
		if jb.fallback == FallbackAllTokens {
			rep.Method = "gptq+all-tokens"
			merged := NewHessian(in)
			merged.AddHessian(hs)
			merged.AddHessian(jb.extra)
			hs = merged
		}
		res, err = gptqThreads(w, out, in, hs.Matrix(), r.opt.Config, threads)
	}
	if err != nil {
		return err
	}
	jb.result = res.Layer
	rep.Loss, rep.Damp, rep.DampRaises, rep.Dead = res.Loss, res.Damp, res.DampRaises, res.Dead
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
		if quantizable(lin.Spec) {
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

// plan lists every output tensor in writing order: embeddings; per layer
// norms, then its linears (GPTQ tensors for quantized ones, the input's
// tensors otherwise); final norm; lm_head.
func (r *runner) plan() ([]safetensors.Info, error) {
	c := r.ck.Config
	var plan []safetensors.Info
	// Tensors copied unchanged are checked up front, so that a NaN in the
	// input is reported by its name before any work is done.
	raw := func(name string) error {
		t, err := r.ck.Tensor(name)
		if err != nil {
			return err
		}
		if err := checkFinite(t); err != nil {
			return err
		}
		plan = append(plan, safetensors.InfoOf(t))
		return nil
	}
	if err := raw(hf.EmbedTokens); err != nil {
		return nil, err
	}
	for i := 0; i < c.NumHiddenLayers; i++ {
		for _, n := range c.LayerNorms(i) { // input, post-attention (and q/k norm)
			if err := raw(n.Name); err != nil {
				return nil, err
			}
		}
		for _, l := range c.LayerLinears(i) {
			if quantizable(l) {
				groups := gptq.NumGroups(l.In, r.opt.Config.GroupSize)
				plan = append(plan,
					safetensors.Info{Name: l.Name + ".qweight", DType: safetensors.I32, Shape: []int{l.In / 8, l.Out}},
					safetensors.Info{Name: l.Name + ".qzeros", DType: safetensors.I32, Shape: []int{groups, l.Out / 8}},
					safetensors.Info{Name: l.Name + ".scales", DType: safetensors.F16, Shape: []int{groups, l.Out}},
					safetensors.Info{Name: l.Name + ".g_idx", DType: safetensors.I32, Shape: []int{l.In}})
				if l.Bias {
					lw, err := r.ck.Linear(l)
					if err != nil {
						return nil, err
					}
					if err := checkFinite(lw.Bias); err != nil {
						return nil, err
					}
					plan = append(plan, safetensors.Info{Name: l.Name + ".bias", DType: safetensors.F16, Shape: []int{l.Out}})
				}
				continue
			}
			lw, err := r.ck.Linear(l)
			if err != nil {
				return nil, err
			}
			if err := checkFinite(lw.Weight); err != nil {
				return nil, err
			}
			plan = append(plan, safetensors.Info{Name: l.Name + ".weight", DType: lw.Weight.DType, Shape: []int{l.Out, l.In}})
			if lw.Bias != nil {
				if err := checkFinite(lw.Bias); err != nil {
					return nil, err
				}
				plan = append(plan, safetensors.Info{Name: l.Name + ".bias", DType: lw.Bias.DType, Shape: []int{l.Out}})
			}
		}
	}
	if err := raw(hf.FinalNorm); err != nil {
		return nil, err
	}
	if !c.TieWordEmbeddings {
		if err := raw(hf.LMHead + ".weight"); err != nil {
			return nil, err
		}
	}
	for _, n := range r.ck.Unexpected {
		r.rep.Notices = append(r.rep.Notices, fmt.Sprintf("tensor %s is not part of the %s model and is not written", n, c.ModelType))
	}
	return plan, nil
}

// writeRaw copies a float tensor of the input unchanged (plan checked that
// it holds no NaN or infinity).
func (r *runner) writeRaw(name string) error {
	t, err := r.ck.Tensor(name)
	if err != nil {
		return err
	}
	return r.w.Write(name, t.Bytes())
}

// checkFinite scans a float tensor for NaN and infinities, a block of rows
// at a time.
func checkFinite(t *safetensors.Tensor) error {
	rows := 1
	if len(t.Shape) > 0 {
		rows = t.Shape[0]
	}
	per := max(1, t.NumElements()/max(rows, 1))
	step := max(1, (1<<20)/per)
	for r0 := 0; r0 < rows; r0 += step {
		part := t
		if len(t.Shape) > 0 {
			var err error
			if part, err = t.Rows(r0, min(r0+step, rows)); err != nil {
				return err
			}
		}
		v, err := part.Float32()
		if err != nil {
			return err
		}
		if k := nonFinite32(v); k >= 0 {
			return fmt.Errorf("tensor %s holds %v at element %d: refusing to write a model with NaN or infinities", t.Name, v[k], r0*per+k)
		}
		if len(t.Shape) == 0 {
			break
		}
	}
	return nil
}

// writeLayer writes a layer's tensors in plan order.
func (r *runner) writeLayer(l *model.Layer, q map[*model.Linear]*gptq.Layer) error {
	c := r.ck.Config
	for _, n := range c.LayerNorms(l.Index) {
		if err := r.writeRaw(n.Name); err != nil {
			return err
		}
	}
	byName := map[string]*model.Linear{}
	for _, lin := range l.Linears() {
		byName[lin.Name] = lin
	}
	for _, spec := range c.LayerLinears(l.Index) {
		lin := byName[spec.Name]
		if !quantizable(spec) {
			lw, err := r.ck.Linear(spec)
			if err != nil {
				return err
			}
			if err := r.w.Write(spec.Name+".weight", lw.Weight.Bytes()); err != nil {
				return err
			}
			if lw.Bias != nil {
				if err := r.w.Write(spec.Name+".bias", lw.Bias.Bytes()); err != nil {
					return err
				}
			}
			continue
		}
		ql := q[lin]
		if ql == nil {
			return fmt.Errorf("internal error: %s was not quantized", spec.Name)
		}
		qw, qz, err := ql.Pack()
		if err != nil {
			return fmt.Errorf("%s: %w", spec.Name, err)
		}
		for _, t := range []struct {
			suffix string
			data   []byte
		}{{".qweight", gptq.Int32Bytes(qw)}, {".qzeros", gptq.Int32Bytes(qz)}, {".scales", gptq.Uint16Bytes(ql.Scales)}, {".g_idx", gptq.Int32Bytes(ql.GIdx)}} {
			if err := r.w.Write(spec.Name+t.suffix, t.data); err != nil {
				return err
			}
		}
		if spec.Bias {
			if k := nonFinite32(lin.Bias); k >= 0 {
				return fmt.Errorf("%s.bias holds %v at %d: refusing to write a model with NaN or infinities", spec.Name, lin.Bias[k], k)
			}
			b := make([]uint16, len(lin.Bias))
			half.NarrowF16(b, lin.Bias)
			for k, v := range b {
				if v&0x7fff >= 0x7c00 {
					return fmt.Errorf("%s.bias[%d] = %v overflows float16", spec.Name, k, lin.Bias[k])
				}
			}
			if err := r.w.Write(spec.Name+".bias", gptq.Uint16Bytes(b)); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeConfigs writes config.json with quantization_config,
// quantize_config.json, and copies the non-weight files.
func (r *runner) writeConfigs() error {
	c := r.ck.Config.Clone()
	o := r.opt.Config
	qc := gptq.NewConfig(o.GroupSize, o.Sym, o.DescAct, o.StaticGroups, r.opt.TrueSequential, o.Damp)
	if err := qc.Validate(); err != nil {
		return err
	}
	c.Quantization = qc.Quantization(r.modulesInBlock())
	if err := c.WriteFile(r.dir); err != nil {
		return err
	}
	if err := qc.WriteFile(r.dir); err != nil {
		return err
	}
	if _, err := hf.CopyExtraFiles(r.ck.Dir, r.dir); err != nil {
		return err
	}
	return nil
}

// modulesInBlock lists the quantized modules of a decoder block (names
// relative to model.layers.N.) in true-sequential groups, over all layers.
func (r *runner) modulesInBlock() [][]string {
	c := r.ck.Config
	groups := make([][]string, len(GroupNames))
	seen := map[string]bool{}
	for i := 0; i < c.NumHiddenLayers; i++ {
		prefix := hf.LayerPrefix(i)
		for _, l := range c.LayerLinears(i) {
			if !quantizable(l) {
				continue
			}
			n := strings.TrimPrefix(l.Name, prefix)
			if !seen[n] {
				seen[n] = true
				g := groupOf(l) - 1
				groups[g] = append(groups[g], n)
			}
		}
	}
	var out [][]string
	for _, g := range groups {
		if len(g) > 0 {
			out = append(out, g)
		}
	}
	return out
}
