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
// expert of the neurons carrying most activation mass (none for a target
// without one, qwen3_moe) and E routed experts of co-activated neurons, with
// a router fitted to predict each expert's activation mass. Only part of the
// FFN runs per token: approximate. The recipe is this file; its steps are in
// carve_capture.go (calibration, layer by layer), carve_cluster.go (shared
// neurons, balanced clustering, top-K refinement) and carve_router.go.
const Carve Mode = "carve"

// Carving methods (CarveOptions.Method).
const (
	// CarveActivation is the recipe: shared neurons by activation mass,
	// balanced k-means on activation patterns, least-squares router.
	CarveActivation = "activation"
	// CarveContiguous is the baseline without data: the first S neurons are
	// the shared expert (if any), the next E·I are cut in order into
	// experts, and the router rows are random ~ N(0, initializer_range²).
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
	// CarveOptions (activation method; SharedBy only where there is a
	// shared expert).
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
	// SharedMass is the share of all activation mass in the shared expert
	// (0 without one: then CoveredMass is RoutedCovered).
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

// carving is the carve recipe (Upcycle with Mode Carve).
type carving struct{}

func (carving) info() recipeInfo {
	return recipeInfo{mode: Carve, partition: true, defaultPieces: 16}
}

// resolveSizes applies carve's defaults (I = F/16, S = F/4 where the target
// has a shared expert and 0 where it has none, E = (F − S)/I, K for half of
// the FFN active) and its option defaults into u.opts.Carve, and refuses
// layouts that are not a partition of the FFN and options that do not apply.
func (carving) resolveSizes(u *upcycler) error {
	o := u.opts
	switch {
	case o.Shuffle:
		return fmt.Errorf("--shuffle does not apply: carving chooses the neurons of each expert itself")
	case o.ReinitFraction != nil && *o.ReinitFraction != 0:
		return fmt.Errorf("--reinit-fraction does not apply to carve (it copies dense neurons)")
	case o.PadZeros:
		return fmt.Errorf("--pad zero does not apply to carve: the shared and routed experts must partition the FFN (S + E·I = intermediate_size)")
	}
	co := &u.opts.Carve
	if co.Method == "" {
		co.Method = CarveActivation
	}
	if co.Method != CarveActivation && co.Method != CarveContiguous {
		return fmt.Errorf("unknown carve method %q (want %s or %s)", co.Method, CarveActivation, CarveContiguous)
	}
	F := u.F
	if u.E < 0 || u.K < 0 {
		return fmt.Errorf("--experts %d and --top-k %d must not be negative", u.E, u.K)
	}
	if u.target.shared {
		if u.S == 0 {
			if u.E > 0 {
				u.S = F - u.E*u.I
			} else {
				u.S = F / 4
			}
		}
		if u.S < 1 {
			return fmt.Errorf("--expert-size %d and --shared-size %d must be positive (--experts %d, --top-k %d not negative)", u.I, u.S, u.E, u.K)
		}
		if u.S >= F {
			return fmt.Errorf("--shared-size %d leaves no neuron of the FFN (intermediate_size %d) to route: use less, e.g. %d", u.S, F, F/4)
		}
	}
	if u.E == 0 {
		if (F-u.S)%u.I != 0 {
			if !u.target.shared {
				return fmt.Errorf("intermediate_size %d is not a multiple of --expert-size %d (%s has no shared expert, so the E experts hold all neurons): use e.g. --expert-size %s", F, u.I, u.target.arch, divisorHint(F, u.I))
			}
			return fmt.Errorf("the %d neurons outside the shared expert (intermediate_size %d − --shared-size %d) are not a multiple of --expert-size %d: choose sizes with S + E·I = %d, e.g. --shared-size %d --expert-size %d",
				F-u.S, F, u.S, u.I, F, F/4, max(F/16, 1))
		}
		u.E = (F - u.S) / u.I
	}
	if u.S+u.E*u.I != F {
		if !u.target.shared {
			return fmt.Errorf("carve partitions the FFN, and %s has no shared expert: --experts %d × --expert-size %d = %d, want intermediate_size %d (e.g. --experts %d, if %d divides %d)",
				u.target.arch, u.E, u.I, u.E*u.I, F, F/u.I, u.I, F)
		}
		return fmt.Errorf("carve partitions the FFN: --shared-size %d + --experts %d × --expert-size %d = %d, want intermediate_size %d (e.g. --experts %d with this shared size, if %d divides %d)",
			u.S, u.E, u.I, u.S+u.E*u.I, F, (F-u.S)/u.I, u.I, F-u.S)
	}
	if u.K == 0 {
		// Half of the FFN active per token, or at least one expert.
		u.K = max((F/2-u.S)/u.I, 1)
	}
	if u.K > u.E {
		return fmt.Errorf("--top-k %d is more than --experts %d", u.K, u.E)
	}
	for _, c := range []struct {
		v         *string
		what, def string
		ok        []string
	}{
		{&co.SharedBy, "shared-neuron ranking", CarveByMass, []string{CarveByMass, CarveByFrequency}},
		{&co.Features, "clustering features", CarveByMass, []string{CarveByMass, CarveUnit, CarveBinary}},
		{&co.RouterTarget, "router target", CarveLogMass, []string{CarveLogMass, CarveByMass}},
	} {
		if *c.v == "" {
			*c.v = c.def
		}
		if !slices.Contains(c.ok, *c.v) {
			return fmt.Errorf("unknown carve %s %q (want one of %v)", c.what, *c.v, c.ok)
		}
	}
	if co.MarkerSize == 0 {
		co.MarkerSize = u.S + u.K*u.I
	}
	if co.MarkerSize < 1 || co.MarkerSize > F {
		return fmt.Errorf("carve marker size %d must be between 1 and intermediate_size %d", co.MarkerSize, F)
	}
	if co.Iterations == 0 {
		co.Iterations = 30
	}
	if co.RefineSweeps == 0 {
		co.RefineSweeps = 4
	}
	if co.RouterSpread == 0 {
		co.RouterSpread = 1e-3
	}
	if !(co.RouterSpread > 0) || math.IsInf(co.RouterSpread, 0) {
		return fmt.Errorf("carve router spread %g must be positive", co.RouterSpread)
	}
	if co.Method == CarveActivation && len(co.Calibration) == 0 {
		return fmt.Errorf("carve needs calibration text: pass --calib FILE (its first --split-at of the characters is used)")
	}
	return nil
}

// resolveRouting: norm_topk_prob true and routed down_proj × K, so that a
// token's K chosen experts, each weighted ≈ 1/K, add up to the dense output
// of their neurons; the shared expert (gate 0, so sigmoid ½) down_proj × 2.
func (carving) resolveRouting(u *upcycler) error {
	if o := u.opts; o.NormTopKProb != nil && !*o.NormTopKProb {
		return fmt.Errorf("carve needs norm_topk_prob=true (with down_proj × top-k a token's chosen experts add up to the dense output of their neurons); drop --norm-topk-prob=false")
	}
	u.norm = true
	u.routedDown = float32(u.K)
	if u.target.shared {
		u.sharedDown = 2
	}
	return nil
}

// carveRun is one carving: the validated layout and options, and the
// carved layers.
type carveRun struct {
	in      *hf.Checkpoint
	co      CarveOptions
	seed    uint64
	h       int
	F, I    int
	E, K, S int
	initStd float64
	layers  map[int]*carvedLayer
}

// prepare carves every MoE layer before anything is planned: from the
// calibration windows, each layer on the inputs the already-carved layers
// before it give (calibrate), or the contiguous baseline.
func (carving) prepare(u *upcycler, b *builder, moe []int) (any, error) {
	r := &carveRun{in: u.in, co: u.opts.Carve, seed: u.opts.Seed, h: u.h, F: u.F, I: u.I, E: u.E, K: u.K, S: u.S,
		initStd: u.initStd, layers: map[int]*carvedLayer{}}
	downDType := b.outDType(safetensors.BF16)
	if t, err := u.in.Tensor(hf.MLPLinear(moe[0], hf.DownProj) + ".weight"); err == nil {
		downDType = b.outDType(t.DType)
	}
	if err := checkScale(float64(r.K), downDType, "carve (routed down_proj × top-k)", "pass --dtype f32, or use a power-of-two --top-k"); err != nil {
		return nil, err
	}
	routerDType := downDType
	if t, err := u.in.Tensor(hf.MLPLinear(moe[0], hf.GateProj) + ".weight"); err == nil {
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
	return r, nil
}

// neurons returns the carved experts of a layer; the neuron order perm
// does not apply (carving chooses the neurons itself).
func (carving) neurons(u *upcycler, ctx *recipeContext, _ func(int) []int32) ([][]int32, []int32, error) {
	cl := u.prepared.(*carveRun).layers[ctx.layer]
	return cl.experts, cl.shared, nil
}

// router returns a layer's fitted (or, contiguous, random) router, already
// rounded to the output dtype.
func (carving) router(u *upcycler, layer int) ([]float32, error) {
	return u.prepared.(*carveRun).layers[layer].router, nil
}

// contiguous is the data-free baseline layout of layer i.
func (r *carveRun) contiguous(layer int, routerDType safetensors.DType) *carvedLayer {
	cl := &carvedLayer{shared: iota32(0, r.S)}
	for e := 0; e < r.E; e++ {
		cl.experts = append(cl.experts, iota32(r.S+e*r.I, r.I))
	}
	cl.router = normalRows(newRNG(r.seed, fmt.Sprintf("carve/router/%d", layer)), r.E, r.h, r.initStd)
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

// describe fills the carve summary: the layout's counts, how the shared
// expert and the router were chosen, and the per-layer coverage.
func (carving) describe(u *upcycler, us *UpcycleSummary, s *Summary) {
	r := u.prepared.(*carveRun)
	us.PiecesPerFFN, us.RoutedPieces = r.E, r.E
	combine := fmt.Sprintf("norm_topk_prob true and routed down_proj × %d: the K renormalized weights are 1/K up to the router spread, so the chosen experts add up to the dense output of their neurons", r.K)
	if r.S > 0 {
		combine += "; shared expert gate 0 (sigmoid ½), down_proj × 2: exact"
	}
	cs := &CarveSummary{
		Method:       r.co.Method,
		Mass:         "|h_n|·‖W_down[:, n]‖ per neuron n and token, h = silu(x·W_gate)·(x·W_up)",
		Combine:      combine,
		RouterSpread: r.co.RouterSpread,
	}
	for _, w := range r.co.Calibration {
		cs.CalibrationTokens += len(w)
	}
	cs.CalibrationWindows = len(r.co.Calibration)
	switch r.co.Method {
	case CarveActivation:
		cs.Features, cs.RouterTarget = r.co.Features, r.co.RouterTarget
		if r.S > 0 {
			cs.SharedBy = r.co.SharedBy // no shared expert: nothing was ranked
		}
		cs.RefineSweeps = max(r.co.RefineSweeps, 0)
		if cs.SharedBy == CarveByFrequency || r.co.Features == CarveBinary {
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
	for _, i := range s.MoELayers {
		cs.Layers = append(cs.Layers, r.layers[i].stats)
	}
	s.Carve = cs
	active := r.S + r.K*r.I
	if r.S > 0 {
		s.note("carve: %d of %d FFN neurons active per token (%.1f%%): shared %d + top-%d × %d", active, r.F, 100*float64(active)/float64(r.F), r.S, r.K, r.I)
	} else {
		s.note("carve: %d of %d FFN neurons active per token (%.1f%%): top-%d × %d, no shared expert", active, r.F, 100*float64(active)/float64(r.F), r.K, r.I)
	}
}
