package convert

import (
	"fmt"
	"math"
	"slices"

	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/safetensors"
)

// Carve is activation-aware expert carving (docs/carve.md): each dense FFN is
// partitioned, from activation statistics of calibration text, into a shared
// expert of the neurons active for most tokens and E routed experts of
// co-activated neurons, with a router fitted to predict each expert's
// activation mass. Only part of the FFN runs per token: approximate.
const Carve Mode = "carve"

// Carving methods (CarveOptions.Method).
const (
	// CarveActivation is the recipe: shared neurons by activation frequency,
	// balanced k-means on activation patterns, least-squares router.
	CarveActivation = "activation"
	// CarveContiguous is the baseline without data: the first S neurons are
	// the shared expert, the next E·I are cut in order into experts, and the
	// router rows are random ~ N(0, initializer_range²).
	CarveContiguous = "contiguous"
)

// Choices of CarveOptions.SharedBy, Features and RouterTarget.
const (
	CarveByMass      = "mass"
	CarveByFrequency = "frequency"
	CarveUnit        = "unit"
	CarveBinary      = "binary"
	CarveLogMass     = "log-mass"
)

// CarveOptions are the choices specific to --init carve. Zero values take
// the documented defaults.
type CarveOptions struct {
	// Calibration holds the calibration token windows (each a sequence
	// starting at position 0). Required by CarveActivation.
	Calibration [][]int
	// Method is CarveActivation (default) or CarveContiguous.
	Method string
	// SharedBy ranks neurons for the shared expert: CarveByMass (default:
	// the largest total contribution over the calibration tokens) or
	// CarveByFrequency (most often among a token's MarkerSize largest).
	SharedBy string
	// Features are what describes a routed neuron to the clustering, over
	// the calibration tokens: CarveByMass (default: its contributions),
	// CarveUnit (the same scaled to unit length: co-activation only) or
	// CarveBinary (1 where it is among the token's MarkerSize largest).
	Features string
	// RouterTarget is what the least-squares router predicts per expert:
	// CarveLogMass (default: the log of its activation mass) or CarveByMass.
	RouterTarget string
	// MarkerSize is how many of a token's largest-contribution neurons count
	// as "active" for that token (CarveByFrequency, CarveBinary). Default:
	// the active width S + K·I.
	MarkerSize int
	// Iterations caps the balanced k-means iterations (default 30).
	Iterations int
	// RefineSweeps caps the sweeps of swaps that raise the mass of every
	// token's K heaviest clusters after k-means (default 4; negative: none).
	RefineSweeps int
	// RouterSpread is the standard deviation of the written router logits
	// over the calibration tokens (default 1e-3): small, so that the
	// renormalized top-K weights are within about RouterSpread of 1/K and a
	// token's chosen experts add up to the dense output of their neurons.
	// The choice of experts does not depend on it.
	RouterSpread float64
}

// carveRecipe is a validated carving layout.
type carveRecipe struct {
	in      *hf.Checkpoint
	opts    UpcycleOptions
	co      CarveOptions
	h       int
	F, I    int
	E, K, S int
	initStd float64
	layers  map[int]*carvedLayer
}

// carvedLayer is the carving of one FFN: which dense neurons each expert
// holds and the router (already scaled, rounded to the output dtype).
type carvedLayer struct {
	shared  []int32
	experts [][]int32
	router  []float32 // [E, hidden]
	stats   CarveLayerStats
}

// CarveSummary is what carving found, per MoE layer.
type CarveSummary struct {
	Method string `json:"method"`
	// SharedBy, Features, RouterTarget and MarkerSize are the choices of
	// CarveOptions (activation method).
	SharedBy     string `json:"shared_by,omitempty"`
	Features     string `json:"features,omitempty"`
	RouterTarget string `json:"router_target,omitempty"`
	MarkerSize   int    `json:"marker_size,omitempty"`
	RefineSweeps int    `json:"refine_sweeps"`
	// CalibrationWindows and CalibrationTokens describe the calibration set.
	CalibrationWindows int `json:"calibration_windows"`
	CalibrationTokens  int `json:"calibration_tokens"`
	// Mass is how "activation mass" is measured.
	Mass string `json:"mass"`
	// Combine says how the selected experts' outputs are weighted.
	Combine      string            `json:"combine"`
	RouterSpread float64           `json:"router_spread"`
	Layers       []CarveLayerStats `json:"layers"`
}

// CarveLayerStats measures one carved layer on the calibration tokens (whose
// inputs come from the already-carved earlier layers). Mass shares are
// Σ over tokens of the mass of the neurons in question / Σ of all mass.
type CarveLayerStats struct {
	Layer int `json:"layer"`
	// SharedMass is the share of all activation mass in the shared expert.
	SharedMass float64 `json:"shared_mass"`
	// CoveredMass is the share in the shared expert and the K experts the
	// router chose: the part of the FFN's activation each token keeps.
	CoveredMass float64 `json:"covered_mass"`
	// RoutedCovered is the share of the routed experts' mass in the chosen
	// experts; OracleRoutedCovered the same for the best K experts of each
	// token (an upper bound for any router over these clusters); K/E would
	// be a random router's.
	RoutedCovered       float64 `json:"routed_covered"`
	OracleRoutedCovered float64 `json:"oracle_routed_covered"`
	// KMeansIterations is how many balanced k-means iterations ran.
	KMeansIterations int `json:"kmeans_iterations,omitempty"`
	// RefineSwaps is how many neuron swaps the top-K refinement made.
	RefineSwaps int `json:"refine_swaps,omitempty"`
}

// carve plans the carving of a dense qwen2 checkpoint (Upcycle with
// Mode Carve). It runs the calibration windows through the model layer by
// layer, each MoE layer carved from inputs computed by the already-carved
// layers before it.
func carve(in *hf.Checkpoint, opts UpcycleOptions) (*Plan, error) {
	c := in.Config
	target, ok := upcycleTargetOf(c)
	if !ok {
		return nil, fmt.Errorf("upcycle carve: model_type %q is not a dense architecture moeforge upcycles", c.ModelType)
	}
	if !target.shared {
		return nil, fmt.Errorf("upcycle carve puts the most active neurons into a shared expert, which %s has not", target.arch)
	}
	r := &carveRecipe{in: in, opts: opts, co: opts.Carve, h: c.HiddenSize, layers: map[int]*carvedLayer{}}
	if err := r.resolve(c); err != nil {
		return nil, fmt.Errorf("upcycle carve: %w", err)
	}
	moe, step, mlpOnly, err := selectLayers(c.NumHiddenLayers, opts.MoELayers, opts.DecoderSparseStep)
	if err != nil {
		return nil, err
	}
	out, err := moeConfig(in, target, moeShape{E: r.E, K: r.K, I: r.I, S: r.S, Norm: true}, moe, step, mlpOnly, opts.DType)
	if err != nil {
		return nil, err
	}
	b := newBuilder(in, out, opts.DType)
	downDType := b.outDType(safetensors.BF16)
	if t, err := in.Tensor(hf.MLPLinear(moe[0], hf.DownProj) + ".weight"); err == nil {
		downDType = b.outDType(t.DType)
	}
	if err := checkScale(float64(r.K), downDType, "carve (routed down_proj × top-k)", "pass --dtype f32, or use a power-of-two --top-k"); err != nil {
		return nil, err
	}
	routerDType := downDType
	if t, err := in.Tensor(hf.MLPLinear(moe[0], hf.GateProj) + ".weight"); err == nil {
		routerDType = b.outDType(t.DType)
	}
	switch r.co.Method {
	case CarveActivation:
		if err := r.calibrate(moe, routerDType); err != nil {
			return nil, err
		}
	case CarveContiguous:
		for _, i := range moe {
			r.layers[i] = r.contiguous(i, routerDType)
		}
	}
	for _, i := range moe {
		if err := r.planLayer(b, i); err != nil {
			return nil, err
		}
	}
	sum := r.summary(c, out, moe)
	p, err := b.plan(sum)
	if err != nil {
		return nil, err
	}
	sum.finish(p)
	if len(in.Unexpected) > 0 {
		sum.note("%d input tensors the config does not use were left out (e.g. %s)", len(in.Unexpected), in.Unexpected[0])
	}
	return p, nil
}

// resolve applies the defaults and refuses layouts that are not a partition
// of the FFN.
func (r *carveRecipe) resolve(c *hf.Config) error {
	o := r.opts
	switch {
	case o.Shuffle:
		return fmt.Errorf("--shuffle does not apply: carving chooses the neurons of each expert itself")
	case o.ReinitFraction != nil && *o.ReinitFraction != 0:
		return fmt.Errorf("--reinit-fraction does not apply to carve (it copies dense neurons)")
	case o.NormTopKProb != nil && !*o.NormTopKProb:
		return fmt.Errorf("carve needs norm_topk_prob=true (with down_proj × top-k a token's chosen experts add up to the dense output of their neurons); drop --norm-topk-prob=false")
	case o.PadZeros:
		return fmt.Errorf("--pad zero does not apply to carve: the shared and routed experts must partition the FFN (S + E·I = intermediate_size)")
	}
	if r.co.Method == "" {
		r.co.Method = CarveActivation
	}
	if r.co.Method != CarveActivation && r.co.Method != CarveContiguous {
		return fmt.Errorf("unknown carve method %q (want %s or %s)", r.co.Method, CarveActivation, CarveContiguous)
	}
	F := c.IntermediateSize
	r.F = F
	r.I, r.S, r.E, r.K = o.ExpertSize, o.SharedSize, o.Experts, o.TopK
	if r.I == 0 {
		r.I = max(F/16, 1)
	}
	if r.S == 0 {
		if r.E > 0 {
			r.S = F - r.E*r.I
		} else {
			r.S = F / 4
		}
	}
	if r.I < 1 || r.S < 1 || r.E < 0 || r.K < 0 {
		return fmt.Errorf("--expert-size %d and --shared-size %d must be positive (--experts %d, --top-k %d not negative)", r.I, r.S, r.E, r.K)
	}
	if r.S >= F {
		return fmt.Errorf("--shared-size %d leaves no neuron of the FFN (intermediate_size %d) to route: use less, e.g. %d", r.S, F, F/4)
	}
	if r.E == 0 {
		if (F-r.S)%r.I != 0 {
			return fmt.Errorf("the %d neurons outside the shared expert (intermediate_size %d − --shared-size %d) are not a multiple of --expert-size %d: choose sizes with S + E·I = %d, e.g. --shared-size %d --expert-size %d",
				F-r.S, F, r.S, r.I, F, F/4, max(F/16, 1))
		}
		r.E = (F - r.S) / r.I
	}
	if r.S+r.E*r.I != F {
		return fmt.Errorf("carve partitions the FFN: --shared-size %d + --experts %d × --expert-size %d = %d, want intermediate_size %d (e.g. --experts %d with this shared size, if %d divides %d)",
			r.S, r.E, r.I, r.S+r.E*r.I, F, (F-r.S)/r.I, r.I, F-r.S)
	}
	if r.K == 0 {
		// Half of the FFN active per token, or at least one expert.
		r.K = max((F/2-r.S)/r.I, 1)
	}
	if r.K > r.E {
		return fmt.Errorf("--top-k %d is more than --experts %d", r.K, r.E)
	}
	for _, c := range []struct {
		v         *string
		what, def string
		ok        []string
	}{
		{&r.co.SharedBy, "shared-neuron ranking", CarveByMass, []string{CarveByMass, CarveByFrequency}},
		{&r.co.Features, "clustering features", CarveByMass, []string{CarveByMass, CarveUnit, CarveBinary}},
		{&r.co.RouterTarget, "router target", CarveLogMass, []string{CarveLogMass, CarveByMass}},
	} {
		if *c.v == "" {
			*c.v = c.def
		}
		if !slices.Contains(c.ok, *c.v) {
			return fmt.Errorf("unknown carve %s %q (want one of %v)", c.what, *c.v, c.ok)
		}
	}
	if r.co.MarkerSize == 0 {
		r.co.MarkerSize = r.S + r.K*r.I
	}
	if r.co.MarkerSize < 1 || r.co.MarkerSize > F {
		return fmt.Errorf("carve marker size %d must be between 1 and intermediate_size %d", r.co.MarkerSize, F)
	}
	if r.co.Iterations == 0 {
		r.co.Iterations = 30
	}
	if r.co.RefineSweeps == 0 {
		r.co.RefineSweeps = 4
	}
	if r.co.RouterSpread == 0 {
		r.co.RouterSpread = 1e-3
	}
	if !(r.co.RouterSpread > 0) || math.IsInf(r.co.RouterSpread, 0) {
		return fmt.Errorf("carve router spread %g must be positive", r.co.RouterSpread)
	}
	if r.co.Method == CarveActivation && len(r.co.Calibration) == 0 {
		return fmt.Errorf("carve needs calibration text: pass --calib FILE (its first --split-at of the characters is used)")
	}
	r.initStd = 0.02
	if raw, ok := c.Raw("initializer_range"); ok {
		if _, err := fmt.Sscan(string(raw), &r.initStd); err != nil || !(r.initStd > 0) {
			return fmt.Errorf("config initializer_range=%s: want a positive number", raw)
		}
	}
	return nil
}

// contiguous is the data-free baseline layout of layer i.
func (r *carveRecipe) contiguous(layer int, routerDType safetensors.DType) *carvedLayer {
	cl := &carvedLayer{shared: iota32(0, r.S)}
	for e := 0; e < r.E; e++ {
		cl.experts = append(cl.experts, iota32(r.S+e*r.I, r.I))
	}
	cl.router = normalRows(newRNG(r.opts.Seed, fmt.Sprintf("carve/router/%d", layer)), r.E, r.h, r.initStd)
	roundTo(cl.router, routerDType)
	cl.stats.Layer = layer
	return cl
}

func iota32(from, n int) []int32 {
	s := make([]int32, n)
	for i := range s {
		s[i] = int32(from + i)
	}
	return s
}

// planLayer registers the tensors of carved layer i: the router, the shared
// expert (gate 0 so that sigmoid = ½, down_proj × 2: exactly the dense
// contribution of its neurons) and the routed experts (down_proj × K).
func (r *carveRecipe) planLayer(b *builder, i int) error {
	out := b.out
	cl := r.layers[i]
	dense := map[hf.Proj]*safetensors.Tensor{}
	for _, p := range hf.FFNProjs {
		t, err := r.in.Tensor(hf.MLPLinear(i, p) + ".weight")
		if err != nil {
			return err
		}
		dense[p] = t
	}
	h := r.h
	b.compute(out.RouterLinear(i)+".weight", dense[hf.GateProj], []int{r.E, h}, func() ([]float32, error) { return cl.router, nil })
	b.compute(out.SharedExpertGateLinear(i)+".weight", dense[hf.GateProj], []int{1, h}, func() ([]float32, error) {
		return make([]float32, h), nil
	})
	for _, p := range hf.FFNProjs {
		shape := []int{r.S, h}
		if p == hf.DownProj {
			shape = []int{h, r.S}
		}
		b.compute(out.SharedExpertLinear(i, p)+".weight", dense[p], shape, func() ([]float32, error) {
			return gather(dense[p], p, cl.shared, 2)
		}, dense[p])
		for e := 0; e < r.E; e++ {
			shape := []int{r.I, h}
			if p == hf.DownProj {
				shape = []int{h, r.I}
			}
			b.compute(out.ExpertLinear(i, e, p)+".weight", dense[p], shape, func() ([]float32, error) {
				return gather(dense[p], p, cl.experts[e], float32(r.K))
			}, dense[p])
		}
	}
	return nil
}

// gather takes neurons src of a dense FFN projection: rows of gate/up,
// columns of down (scaled by downScale).
func gather(t *safetensors.Tensor, p hf.Proj, src []int32, downScale float32) ([]float32, error) {
	m, err := newMatrix(t)
	if err != nil {
		return nil, err
	}
	if p == hf.DownProj {
		return m.gatherCols(src, downScale), nil
	}
	return m.gatherRows(src, 1), nil
}

// summary describes the carving.
func (r *carveRecipe) summary(in, out *hf.Config, moe []int) *Summary {
	mo, dense := layerSplit(out)
	s := &Summary{
		Recipe: "upcycle", Input: r.in.Dir, InputArch: in.ModelType, OutputArch: out.ModelType,
		MoELayers: mo, DenseLayers: dense,
		Experts: r.E, TopK: r.K, ExpertSize: r.I, SharedSize: r.S, NormTopKProb: true,
		ParamsBefore: paramsOf(in),
	}
	us := &UpcycleSummary{
		Mode: Carve, FFNSize: r.F, PiecesPerFFN: r.E, RoutedPieces: r.E,
		RoutedDownScale: float64(r.K), SharedDownScale: 2, ExpertScale: 1, Seed: r.opts.Seed,
	}
	cs := &CarveSummary{
		Method:       r.co.Method,
		Mass:         "|h_n|·‖W_down[:, n]‖ per neuron n and token, h = silu(x·W_gate)·(x·W_up)",
		Combine:      fmt.Sprintf("norm_topk_prob true and routed down_proj × %d: the K renormalized weights are 1/K up to the router spread, so the chosen experts add up to the dense output of their neurons; shared expert gate 0 (sigmoid ½), down_proj × 2: exact", r.K),
		RouterSpread: r.co.RouterSpread,
	}
	for _, w := range r.co.Calibration {
		cs.CalibrationTokens += len(w)
	}
	cs.CalibrationWindows = len(r.co.Calibration)
	switch r.co.Method {
	case CarveActivation:
		cs.SharedBy, cs.Features, cs.RouterTarget = r.co.SharedBy, r.co.Features, r.co.RouterTarget
		cs.RefineSweeps = max(r.co.RefineSweeps, 0)
		if r.co.SharedBy == CarveByFrequency || r.co.Features == CarveBinary {
			cs.MarkerSize = r.co.MarkerSize
		}
		if r.co.SharedBy == CarveByFrequency {
			us.SharedExpert = fmt.Sprintf("the %d neurons most often among a token's %d largest contributions", r.S, r.co.MarkerSize)
		} else {
			us.SharedExpert = fmt.Sprintf("the %d neurons of largest activation mass", r.S)
		}
		us.SharedExpert += " on the calibration tokens, gate 0 (sigmoid ½), down_proj ×2: exact for them"
		us.RouterInit = fmt.Sprintf("least squares from the FFN input to each expert's %s on the calibration tokens, scaled to logit std %g", map[string]string{CarveLogMass: "log activation mass", CarveByMass: "activation mass"}[r.co.RouterTarget], r.co.RouterSpread)
	case CarveContiguous:
		cs.Mass = ""
		us.SharedExpert = fmt.Sprintf("neurons 0-%d, gate 0 (sigmoid ½), down_proj ×2", r.S-1)
		us.RouterInit = fmt.Sprintf("every row ~ N(0, %g²) (initializer_range)", r.initStd)
	}
	for _, i := range moe {
		cs.Layers = append(cs.Layers, r.layers[i].stats)
	}
	s.Upcycle, s.Carve = us, cs
	active := r.S + r.K*r.I
	s.note("carve: %d of %d FFN neurons active per token (%.1f%%): shared %d + top-%d × %d", active, r.F, 100*float64(active)/float64(r.F), r.S, r.K, r.I)
	return s
}
