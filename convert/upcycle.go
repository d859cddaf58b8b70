package convert

// Upcycling (ALGORITHMS.md §1), the machinery every recipe shares: options
// and their defaults, the layout of pieces, padding and replicas, layer
// selection, router rows, shuffling, re-initialization, the output config
// and tensors, the summary. What differs between --init modes is in one
// file per recipe, recipe_*.go, behind the interface in recipe.go.

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/safetensors"
)

// UpcycleOptions are the choices of an upcycling. Zero values take the
// documented defaults.
type UpcycleOptions struct {
	Mode Mode
	// Experts is the number of routed experts E. Default: 4 × the number
	// of distinct routed pieces of one FFN (4 replicas in grouped modes);
	// carve: (F − S)/I, the rest of the FFN.
	Experts int
	// TopK is num_experts_per_tok K. Default: the number of distinct routed
	// pieces of one FFN (one replica), so that a token activates about one
	// FFN's worth of routed parameters; carve: half of the FFN active.
	TopK int
	// ExpertSize is moe_intermediate_size I. Default: F/4 (carve: F/16).
	ExpertSize int
	// SharedSize is the shared expert's width in neurons. Default: F for
	// shared-exact, half the pieces (⌊G/2⌋·I) for hybrid-exact, F/4 (or
	// F − E·I) for carve, I otherwise. A target without a shared expert
	// (qwen3_moe) refuses a width.
	SharedSize int
	// NormTopKProb, when non-nil, is the requested norm_topk_prob. Modes
	// that need a value (virtual-group, hybrid-exact, carve: true;
	// megatron-scaled: false) refuse a conflicting one; the others default
	// to false.
	NormTopKProb *bool
	// ReinitFraction, when non-nil, is the share of each expert's parameters
	// redrawn at random (default 0.5 for qwen2-report, 0 otherwise; exact
	// modes refuse anything but 0).
	ReinitFraction *float64
	// Shuffle permutes each FFN's intermediate dimension (seeded) before it
	// is cut into pieces; the dense function is unchanged. qwen2-report
	// always shuffles its copies.
	Shuffle bool
	// Seed drives every random choice.
	Seed uint64
	// MoELayers lists the layers that become MoE (the others keep their
	// dense MLP). Empty: the layers selected by DecoderSparseStep.
	MoELayers []int
	// DecoderSparseStep makes layers i with (i+1) % step == 0 MoE (0 = 1,
	// every layer). Exclusive with MoELayers.
	DecoderSparseStep int
	// PadZeros allows an FFN width that is not a multiple of ExpertSize: each
	// FFN is padded with zero neurons to a whole number of pieces. Without
	// it such a width is refused (qwen2-report slices and needs no padding).
	PadZeros bool
	// DType is the output dtype ("" = the input's).
	DType safetensors.DType
	// Carve holds the choices of Mode Carve (recipe_carve.go), among them
	// its calibration windows.
	Carve CarveOptions
}

// upcycler holds a validated upcycling layout and produces its tensors.
type upcycler struct {
	in     *hf.Checkpoint
	opts   UpcycleOptions
	mode   Mode
	r      recipe
	target upcycleTarget
	h      int

	F, I, G int // FFN width, expert width, pieces per FFN (⌈F/I⌉)
	pad     int // zero neurons appended per FFN
	s       int // shared pieces (hybrid-exact)
	gr      int // distinct routed pieces per FFN
	E, K, S int
	R, k    int // replicas and selected replicas (grouped modes)
	norm    bool
	reinit  float64
	shuffle bool
	copies  int // FFN copies sliced (recipes that slice)

	// prepared is what the recipe's prepare returned (nil for the recipes
	// that derive everything from the layout).
	prepared any

	routedDown, sharedDown float32 // down_proj factors; 0 = silent
	expertScale            float32 // megatron-scaled: on gate, up and down
	initStd                float64 // router init std (config initializer_range)

	// The neuron sources of the last few layers and the projections' stds,
	// cached; outputs are computed on several goroutines (Plan.Workers),
	// mostly layer by layer.
	mu    sync.Mutex
	cache map[int]layerNeurons
	stds  map[string]*stdOnce
}

// layerNeurons are one layer's neuron sources (upcycler.neurons).
type layerNeurons struct {
	experts [][]int32
	shared  []int32
}

// stdOnce is one projection's std, computed once.
type stdOnce struct {
	once sync.Once
	std  float64
}

// neuronCacheLayers is how many layers' neuron sources stay cached: the
// goroutines computing outputs ahead span at most a layer boundary.
const neuronCacheLayers = 4

// Upcycle plans the conversion of a dense qwen2 (qwen3) checkpoint into a
// qwen2_moe (qwen3_moe) checkpoint by the recipe of opts.Mode (ALGORITHMS.md
// §1). qwen3_moe has no shared expert: the recipes that put dense neurons
// there (shared-exact, hybrid-exact, qwen2-report) are refused, carve puts
// every neuron into a routed expert, the others leave their silent one out.
// Invalid combinations are refused with an error that proposes a valid one.
func Upcycle(in *hf.Checkpoint, opts UpcycleOptions) (*Plan, error) {
	c := in.Config
	target, ok := upcycleTargetOf(c)
	if !ok {
		hint := ""
		if c.IsMoE() {
			hint = " (to make its experts finer, use convert split)"
		}
		return nil, fmt.Errorf("%s: upcycle needs a dense qwen2 or qwen3 checkpoint, this one is %s%s", in.Dir, c.ModelType, hint)
	}
	if c.Quantization != nil {
		return nil, fmt.Errorf("%s: the checkpoint is GPTQ-quantized; upcycle needs float weights (upcycle first, then quantize)", in.Dir)
	}
	if _, err := ParseMode(string(opts.Mode)); err != nil {
		return nil, err
	}
	r, _ := recipeOf(opts.Mode)
	if r.info().needsShared && !target.shared {
		return nil, fmt.Errorf("upcycle %s puts part of the FFN into a shared expert, and %s has no shared expert: use a recipe without one, e.g. %s (exact)", opts.Mode, target.arch, VirtualGroup)
	}
	if opts.SharedSize != 0 && !target.shared {
		return nil, fmt.Errorf("upcycle: --shared-size %d, but %s has no shared expert; drop the flag", opts.SharedSize, target.arch)
	}
	u := &upcycler{in: in, opts: opts, mode: opts.Mode, r: r, target: target, h: c.HiddenSize, cache: map[int]layerNeurons{}, stds: map[string]*stdOnce{}}
	if err := u.resolve(c); err != nil {
		return nil, fmt.Errorf("upcycle %s: %w", u.mode, err)
	}
	if !target.shared {
		u.S = 0 // the recipe's shared expert is silent: leave it out
	}
	moe, step, mlpOnly, err := selectLayers(c.NumHiddenLayers, opts.MoELayers, opts.DecoderSparseStep)
	if err != nil {
		return nil, err
	}

	out, err := moeConfig(in, target, moeShape{E: u.E, K: u.K, I: u.I, S: u.S, Norm: u.norm}, moe, step, mlpOnly, opts.DType)
	if err != nil {
		return nil, err
	}

	b := newBuilder(in, out, opts.DType)
	if u.prepared, err = r.prepare(u, b, moe); err != nil {
		return nil, err
	}
	for _, i := range moe {
		if err := u.planLayer(b, i); err != nil {
			return nil, err
		}
	}
	sum := u.summary(c, out)
	p, err := b.plan(sum)
	if err != nil {
		return nil, err
	}
	sum.finish(p)
	if opts.DType != "" {
		for _, t := range in.Weights.Names() {
			if tt, _ := in.Weights.Tensor(t); tt.DType.Size() > opts.DType.Size() {
				sum.note("--dtype %s is narrower than the input (%s): weights are rounded, so the output reproduces the input rounded to %s, not the input itself",
					configDType(opts.DType), tt.DType, configDType(opts.DType))
				break
			}
		}
	}
	if len(in.Unexpected) > 0 {
		sum.note("%d input tensors the config does not use were left out (e.g. %s)", len(in.Unexpected), in.Unexpected[0])
	}
	return p, nil
}

// resolve applies defaults and refuses invalid combinations.
func (u *upcycler) resolve(c *hf.Config) error {
	o := u.opts
	u.F = c.IntermediateSize
	F := u.F
	info := u.r.info()
	u.I = o.ExpertSize
	if u.I == 0 {
		d := info.defaultPieces
		if d == 0 {
			d = 4
		}
		if F%d != 0 {
			return fmt.Errorf("intermediate_size %d is not a multiple of %d: pass --expert-size (e.g. %s)", F, d, divisorHint(F, max(F/d, 1)))
		}
		u.I = F / d
	}
	I := u.I
	if I < 1 {
		return fmt.Errorf("--expert-size %d must be positive", I)
	}
	if I > F && !info.slices {
		return fmt.Errorf("--expert-size %d is wider than the FFN (intermediate_size %d): use at most %d", I, F, F)
	}
	u.G = ceilDiv(F, I)
	if F%I != 0 && !info.slices && !info.partition {
		if !o.PadZeros {
			return fmt.Errorf("intermediate_size %d is not a multiple of --expert-size %d (%d = %d×%d + %d): pass --pad zero to append %d zero neurons to every FFN (%d pieces of %d), or use an expert size that divides %d, e.g. %s",
				F, I, F, F/I, I, F%I, u.G*I-F, u.G, I, F, divisorHint(F, I))
		}
		u.pad = u.G*I - F
	}
	if o.ReinitFraction != nil && (*o.ReinitFraction < 0 || *o.ReinitFraction > 1 || math.IsNaN(*o.ReinitFraction)) {
		return fmt.Errorf("--reinit-fraction %g must be in [0, 1]", *o.ReinitFraction)
	}
	if info.exact && o.ReinitFraction != nil && *o.ReinitFraction != 0 {
		return fmt.Errorf("--reinit-fraction %g would break exactness: %s is exact, use megatron-scaled or qwen2-report for a re-initialized start", *o.ReinitFraction, u.mode)
	}
	u.reinit = info.defaultReinit
	if o.ReinitFraction != nil {
		u.reinit = *o.ReinitFraction
	}
	u.shuffle = o.Shuffle || info.slices
	u.initStd = 0.02
	if raw, ok := c.Raw("initializer_range"); ok {
		if _, err := fmt.Sscan(string(raw), &u.initStd); err != nil || !(u.initStd > 0) {
			return fmt.Errorf("config initializer_range=%s: want a positive number", raw)
		}
	}

	// Shared expert width.
	if o.SharedSize < 0 {
		return fmt.Errorf("--shared-size %d must be positive", o.SharedSize)
	}
	u.S = o.SharedSize
	u.E, u.K = o.Experts, o.TopK
	if err := u.r.resolveSizes(u); err != nil {
		return err
	}

	// Routed experts.
	u.gr = u.G - u.s
	if u.E == 0 {
		u.E = 4 * u.gr
	}
	if u.K == 0 {
		u.K = u.gr
	}
	if u.E < 1 || u.K < 1 {
		return fmt.Errorf("--experts %d and --top-k %d must be positive", u.E, u.K)
	}
	if u.K > u.E {
		return fmt.Errorf("--top-k %d is more than --experts %d", u.K, u.E)
	}
	if info.grouped {
		what := fmt.Sprintf("the %d routed pieces of each FFN", u.gr)
		if u.E%u.gr != 0 {
			return fmt.Errorf("--experts %d is not a multiple of %s (experts are whole replicas of them): use --experts %s", u.E, what, multiplesHint(u.E, u.gr))
		}
		if u.K%u.gr != 0 {
			return fmt.Errorf("--top-k %d is not a multiple of %s (a token must select whole replicas): use --top-k %s", u.K, what, multiplesHint(u.K, u.gr))
		}
		u.R, u.k = u.E/u.gr, u.K/u.gr
	}

	// norm_topk_prob and scale factors.
	u.expertScale = 1
	return u.r.resolveRouting(u)
}

// selectLayers resolves which layers become MoE and how the config says so.
func selectLayers(L int, list []int, step int) (moe []int, sparseStep int, mlpOnly []int, err error) {
	if len(list) > 0 && step > 0 {
		return nil, 0, nil, fmt.Errorf("give either --moe-layers or --decoder-sparse-step, not both")
	}
	mlpOnly = []int{}
	if len(list) > 0 {
		set := map[int]bool{}
		for _, l := range list {
			if l < 0 || l >= L {
				return nil, 0, nil, fmt.Errorf("--moe-layers names layer %d, but the model has layers 0-%d", l, L-1)
			}
			set[l] = true
		}
		for i := 0; i < L; i++ {
			if set[i] {
				moe = append(moe, i)
			} else {
				mlpOnly = append(mlpOnly, i)
			}
		}
		return moe, 1, mlpOnly, nil
	}
	if step == 0 {
		step = 1
	}
	if step < 0 || step > L {
		return nil, 0, nil, fmt.Errorf("--decoder-sparse-step %d must be between 1 and the number of layers (%d)", step, L)
	}
	for i := 0; i < L; i++ {
		if (i+1)%step == 0 {
			moe = append(moe, i)
		}
	}
	return moe, step, mlpOnly, nil
}

// planLayer registers the computed tensors of MoE layer i.
func (u *upcycler) planLayer(b *builder, i int) error {
	out := b.out
	dense := map[hf.Proj]*safetensors.Tensor{}
	for _, p := range hf.FFNProjs {
		t, err := u.in.Tensor(hf.MLPLinear(i, p) + ".weight")
		if err != nil {
			return err
		}
		dense[p] = t
	}
	downDType := b.outDType(dense[hf.DownProj].DType)
	if u.r.info().exact {
		fix := "pass --dtype f32"
		if u.routedDown != 0 && !isPow2(float64(u.routedDown)) {
			fix += fmt.Sprintf(", or choose --expert-size/--shared-size so that the routed pieces per FFN (now %d) are a power of two", u.gr)
		}
		for _, f := range []float32{u.routedDown, u.sharedDown} {
			if f == 0 {
				continue
			}
			if err := checkScale(float64(f), downDType, string(u.mode), fix); err != nil {
				return err
			}
		}
	}
	h := u.h
	b.compute(out.RouterLinear(i)+".weight", dense[hf.GateProj], []int{u.E, h}, func() ([]float32, error) { return u.r.router(u, i) })
	if u.target.shared {
		b.compute(out.SharedExpertGateLinear(i)+".weight", dense[hf.GateProj], []int{1, h}, func() ([]float32, error) {
			return make([]float32, h), nil // sigmoid(0) = ½
		})
	}
	for _, p := range hf.FFNProjs {
		if u.target.shared {
			shape := []int{u.S, h}
			if p == hf.DownProj {
				shape = []int{h, u.S}
			}
			name := out.SharedExpertLinear(i, p) + ".weight"
			b.compute(name, dense[p], shape, func() ([]float32, error) { return u.ffn(i, -1, p, name) }, dense[p])
		}
		for e := 0; e < u.E; e++ {
			shape := []int{u.I, h}
			if p == hf.DownProj {
				shape = []int{h, u.I}
			}
			name := out.ExpertLinear(i, e, p) + ".weight"
			b.compute(name, dense[p], shape, func() ([]float32, error) { return u.ffn(i, e, p, name) }, dense[p])
		}
	}
	return nil
}

// randomRouter draws the router of layer i: rows ~ N(0,
// initializer_range²). In the grouped modes one row is drawn per replica
// and repeated for its adjacent pieces, so that they tie exactly and are
// selected together.
func (u *upcycler) randomRouter(layer int) []float32 {
	r := newRNG(u.opts.Seed, fmt.Sprintf("router/%d", layer))
	if !u.r.info().grouped {
		return normalRows(r, u.E, u.h, u.initStd)
	}
	rows := normalRows(r, u.R, u.h, u.initStd)
	out := make([]float32, 0, u.E*u.h)
	for rep := 0; rep < u.R; rep++ {
		for j := 0; j < u.gr; j++ {
			out = append(out, rows[rep*u.h:(rep+1)*u.h]...)
		}
	}
	return out
}

// ffn computes projection p of routed expert e (or of the shared expert
// when e < 0) in layer i.
func (u *upcycler) ffn(layer, e int, p hf.Proj, name string) ([]float32, error) {
	experts, shared, err := u.neurons(layer)
	if err != nil {
		return nil, err
	}
	src := shared
	if e >= 0 {
		src = experts[e]
	}
	t, err := u.in.Tensor(hf.MLPLinear(layer, p) + ".weight")
	if err != nil {
		return nil, err
	}
	m, err := newMatrix(t)
	if err != nil {
		return nil, err
	}
	scale := float32(1)
	switch {
	case e >= 0 && p == hf.DownProj:
		scale = u.routedDown * u.expertScale
	case e >= 0:
		scale = u.expertScale
	case p == hf.DownProj:
		scale = u.sharedDown
	}
	reinit := u.reinit > 0 && scale != 0 && (e >= 0 || u.r.info().slices)
	gs := scale
	if reinit {
		gs = 1 // re-initialize the unscaled piece, then scale it
	}
	var v []float32
	if p == hf.DownProj {
		v = m.gatherCols(src, gs)
	} else {
		v = m.gatherRows(src, gs)
	}
	if reinit {
		key := fmt.Sprintf("%d/%s", layer, p)
		u.mu.Lock()
		so, ok := u.stds[key]
		if !ok {
			so = &stdOnce{}
			u.stds[key] = so
		}
		u.mu.Unlock()
		so.once.Do(func() { so.std = m.std() })
		std := so.std
		r := newRNG(u.opts.Seed, "reinit/"+name)
		for i := range v {
			if uniform(r) < u.reinit {
				v[i] = float32(normal(r) * std)
			}
			v[i] *= scale
		}
	}
	return v, nil
}

// neurons returns, for layer i, the dense FFN neuron behind every neuron of
// every routed expert and of the shared expert (−1: a zero padding neuron),
// as the recipe assigns them. Replicas share their slices.
func (u *upcycler) neurons(layer int) (experts [][]int32, shared []int32, err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if c, ok := u.cache[layer]; ok {
		return c.experts, c.shared, nil
	}
	perm := func(copy int) []int32 {
		if !u.shuffle {
			p := make([]int32, u.F)
			for i := range p {
				p[i] = int32(i)
			}
			return p
		}
		key := fmt.Sprintf("shuffle/%d", layer)
		if u.r.info().slices {
			key = fmt.Sprintf("shuffle/%d/%d", layer, copy)
		}
		return permutation(newRNG(u.opts.Seed, key), u.F)
	}
	ctx := &recipeContext{layer: layer}
	experts, shared, err = u.r.neurons(u, ctx, perm)
	if err != nil {
		return nil, nil, fmt.Errorf("upcycle %s, layer %d: %w", u.mode, layer, err)
	}
	if !u.target.shared {
		shared = nil
	}
	if len(u.cache) >= neuronCacheLayers {
		oldest := -1
		for l := range u.cache {
			if oldest < 0 || l < oldest {
				oldest = l
			}
		}
		delete(u.cache, oldest)
	}
	u.cache[layer] = layerNeurons{experts, shared}
	return experts, shared, nil
}

// pieces cuts one FFN neuron order p into the G pieces of I neurons, the
// last padded with zero neurons (−1) to a whole piece.
func (u *upcycler) pieces(p []int32) [][]int32 {
	pieces := make([][]int32, u.G)
	for j := range pieces {
		pieces[j] = make([]int32, u.I)
		for t := range pieces[j] {
			if v := j*u.I + t; v < u.F {
				pieces[j][t] = p[v]
			} else {
				pieces[j][t] = -1
			}
		}
	}
	return pieces
}

// summary describes the layout.
func (u *upcycler) summary(in, out *hf.Config) *Summary {
	moe, dense := layerSplit(out)
	s := &Summary{
		Recipe: "upcycle", Input: u.in.Dir, InputArch: in.ModelType, OutputArch: out.ModelType,
		Exact: u.r.info().exact, MoELayers: moe, DenseLayers: dense,
		Experts: u.E, TopK: u.K, ExpertSize: u.I, SharedSize: u.S, NormTopKProb: u.norm,
		ParamsBefore: paramsOf(in),
	}
	us := &UpcycleSummary{
		Mode: u.mode, FFNSize: u.F, PiecesPerFFN: u.G, SharedPieces: u.s, PaddingNeurons: u.pad,
		RoutedDownScale: float64(u.routedDown), SharedDownScale: float64(u.sharedDown), ExpertScale: float64(u.expertScale),
		Shuffle: u.shuffle, ReinitFraction: u.reinit, Seed: u.opts.Seed,
	}
	if !u.r.info().slices {
		us.RoutedPieces = u.gr
	}
	if u.r.info().grouped {
		us.Replicas, us.SelectedReplicas = u.R, u.k
		us.RouterInit = fmt.Sprintf("one row per replica ~ N(0, %g²) (initializer_range), repeated for its %d adjacent pieces", u.initStd, u.gr)
	} else {
		us.RouterInit = fmt.Sprintf("every row ~ N(0, %g²) (initializer_range)", u.initStd)
	}
	u.r.describe(u, us, s)
	if !u.target.shared {
		us.SharedExpert = fmt.Sprintf("none (%s has no shared expert)", out.ModelType)
	}
	if u.reinit > 0 {
		us.Reinit = "each element independently with probability reinit_fraction, redrawn ~ N(0, σ²), σ = std of the dense layer's projection it comes from; before any scaling"
	}
	s.Upcycle = us
	if u.pad > 0 {
		s.note("intermediate_size %d is not a multiple of %d: every FFN was padded with %d zero neurons to %d pieces (zero neurons add nothing)", u.F, u.I, u.pad, u.G)
	}
	return s
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// divisorHint proposes divisors of n close to want: "1376 (4 pieces) or 2752 (2 pieces)".
func divisorHint(n, want int) string {
	below, above := 0, 0
	for d := 1; d <= n; d++ {
		if n%d != 0 {
			continue
		}
		if d <= want {
			below = d
		} else if above == 0 {
			above = d
		}
	}
	var opts []string
	for _, d := range []int{below, above} {
		if d > 0 {
			opts = append(opts, fmt.Sprintf("%d (%d pieces)", d, n/d))
		}
	}
	return strings.Join(opts, " or ")
}

// multiplesHint proposes the multiples of m around v: "8 or 12".
func multiplesHint(v, m int) string {
	lo := v / m * m
	hi := lo + m
	if lo == 0 {
		return fmt.Sprint(hi)
	}
	return fmt.Sprintf("%d or %d", lo, hi)
}

// moeShape is the MoE part of an upcycled config.
type moeShape struct {
	E, K, I, S int
	Norm       bool // norm_topk_prob
}

// moeConfig is the config of an upcycled model: in's config converted to the
// target architecture with the MoE shape given and the layer split planned,
// transformers' defaults for the keys the MoE config adds, and a check that
// every layer keeps its attention window (else the result would not be exact).
func moeConfig(in *hf.Checkpoint, target upcycleTarget, sh moeShape, moe []int, step int, mlpOnly []int, dtype safetensors.DType) (*hf.Config, error) {
	c := in.Config
	out := c.Clone()
	if err := out.ConvertTo(target.arch); err != nil {
		return nil, err
	}
	// Attention biases carry over: qwen2's q/k/v always have one (so the
	// qwen2_moe output says qkv_bias true), qwen3's follow attention_bias.
	for i := 0; i < c.NumHiddenLayers; i++ {
		if c.LayerWindow(i) != out.LayerWindow(i) {
			return nil, fmt.Errorf("%s: layer %d attends to a window of %d in %s but would get %d in %s (its sliding-window rule differs): upcycling would not be exact", in.Dir, i, c.LayerWindow(i), c.ModelType, out.LayerWindow(i), target.arch)
		}
	}
	out.NumExperts, out.NumExpertsPerTok = sh.E, sh.K
	out.MoEIntermediateSize, out.SharedExpertIntermediateSize = sh.I, sh.S
	out.NormTopKProb = sh.Norm
	out.DecoderSparseStep, out.MLPOnlyLayers = step, mlpOnly
	if dtype != "" {
		out.DType = configDType(dtype)
	}
	// Keys Qwen2MoeConfig has that a qwen2 config lacks, at transformers' defaults.
	if _, ok := out.Raw("output_router_logits"); !ok {
		out.SetRaw("output_router_logits", false)
	}
	if _, ok := out.Raw("router_aux_loss_coef"); !ok {
		out.SetRaw("router_aux_loss_coef", 0.001)
	}
	if got, _ := layerSplit(out); !slices.Equal(got, moe) {
		return nil, fmt.Errorf("internal error: config selects MoE layers %v, want %v", got, moe)
	}
	return out, nil
}
