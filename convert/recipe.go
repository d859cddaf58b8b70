package convert

import (
	"fmt"
	"strings"

	"github.com/moeforge/moeforge/formats/hf"
)

// Mode is an upcycling initialization (ALGORITHMS.md §1), the --init
// value. Each mode is one recipe, in its own file recipe_*.go.
type Mode string

// recipes is the registry of upcycling recipes, in the order --help and
// error messages list them. A new recipe is one file recipe_NAME.go that
// declares its Mode and a type implementing recipe, plus one line here.
var recipes = []recipe{
	sharedExact{},
	virtualGroup{},
	hybridExact{},
	megatronScaled{},
	qwen2Report{},
	carving{},
}

// Modes lists every mode.
var Modes = func() []Mode {
	m := make([]Mode, len(recipes))
	for i, r := range recipes {
		m[i] = r.info().mode
	}
	return m
}()

// recipe is one upcycling initialization: how a dense FFN's neurons become
// routed experts and a shared expert, with which scale factors and router.
// Upcycle does everything that is not the recipe's (validating sizes,
// padding, layer selection, shuffling, re-initialization, the output config
// and tensors, the summary); the recipe fills in its part of the layout in
// two steps, may compute per-layer choices from data once before anything
// is planned, and says which dense neurons each expert holds and what each
// layer's router is. Recipes that derive everything from the layout embed
// fromLayout (no preparation, random router rows).
type recipe interface {
	// info states the recipe's fixed properties.
	info() recipeInfo
	// resolveSizes sets the shared expert's width u.S (u.opts.SharedSize,
	// 0 = the recipe's default) and the number of FFN pieces it takes,
	// u.s (0 unless the shared expert is made of whole pieces), refusing
	// invalid widths and options that do not apply. It runs after the
	// expert width and the pieces (u.I, u.G, u.pad) are known; u.E and
	// u.K hold the request (0 = not given) and a recipe with its own
	// defaults fills them in here (Upcycle fills the rest and derives the
	// routed pieces u.gr and replicas u.R, u.k afterwards).
	resolveSizes(u *upcycler) error
	// resolveRouting sets norm_topk_prob (u.norm, from the request
	// u.opts.NormTopKProb) and the scale factors u.routedDown,
	// u.sharedDown (0 = silent) and u.expertScale (preset to 1), once the
	// routed experts are known.
	resolveRouting(u *upcycler) error
	// prepare runs once, after the layout and the output config are
	// known and before any tensor is planned, with the MoE layers in
	// order and the builder that will plan them (for the output dtypes).
	// A data-driven recipe computes its per-layer choices here — carve
	// runs calibration text through the model, carving each layer on the
	// outputs of the already-carved layers before it — and returns them;
	// Upcycle keeps the result in u.prepared for neurons, router and
	// describe.
	prepare(u *upcycler, b *builder, moe []int) (any, error)
	// neurons returns, for one layer, the dense FFN neuron behind every
	// neuron of every routed expert (len u.E, each len u.I) and of the
	// shared expert (len u.S; nil when the target has none); -1 is a zero
	// padding neuron. perm(c) is the seeded neuron order of the layer's
	// FFN copy c (the identity unless shuffling); u.pieces cuts one into
	// the G pieces of I neurons. The layout is final.
	neurons(u *upcycler, ctx *recipeContext, perm func(copy int) []int32) (experts [][]int32, shared []int32, err error)
	// router returns layer's router weight [E, hidden].
	router(u *upcycler, layer int) ([]float32, error)
	// describe fills the recipe's part of the summary (what the shared
	// expert holds, how the router was made, recipe-specific counts,
	// per-layer statistics and notes).
	describe(u *upcycler, us *UpcycleSummary, s *Summary)
}

// fromLayout is embedded by the recipes whose experts follow from the
// layout alone: nothing to prepare, router rows drawn at random
// (upcycler.randomRouter).
type fromLayout struct{}

func (fromLayout) prepare(*upcycler, *builder, []int) (any, error) { return nil, nil }

func (fromLayout) router(u *upcycler, layer int) ([]float32, error) {
	return u.randomRouter(layer), nil
}

// recipeInfo are a recipe's fixed properties.
type recipeInfo struct {
	mode Mode
	// exact: the output reproduces the dense model's logits; exact recipes
	// refuse re-initialization and a 16-bit output that would round a
	// down_proj factor.
	exact bool
	// grouped: the experts are replicas of the FFN's routed pieces, a
	// replica's pieces adjacent and sharing one router row (E and K are
	// whole replicas).
	grouped bool
	// slices: the recipe slices shuffled copies of the FFN instead of
	// cutting one FFN into pieces, so the expert width need not divide
	// the FFN's (no padding) and may exceed it; every copy is shuffled
	// independently, and re-initialization reaches the shared expert too.
	slices bool
	// defaultReinit is the re-initialized share when --reinit-fraction is
	// not given.
	defaultReinit float64
	// needsShared: the recipe puts part of the dense function into the
	// shared expert, so the target architecture must have one (qwen2_moe
	// does; qwen3_moe does not). A recipe without it omits the shared
	// expert where there is none and, where there is one, leaves it silent
	// (carve: fills it with the neurons of largest activation mass).
	needsShared bool
	// partition: the recipe itself assigns every FFN neuron to the shared
	// expert or to one routed expert (S + E·I = F), so the FFN is not cut
	// into pieces of I and I need not divide F (no padding).
	partition bool
	// defaultPieces: the default expert width is F / defaultPieces
	// (0 = 4).
	defaultPieces int
}

// recipeContext is what Upcycle hands a recipe's neurons beyond the
// layout: the layer.
type recipeContext struct {
	layer int
}

// upcycleTarget is the MoE architecture a dense architecture upcycles
// into, and whether its MoE layers have a shared expert.
type upcycleTarget struct {
	arch   hf.Arch
	shared bool
}

// upcycleTargetOf is the target of a dense checkpoint's architecture, as
// formats/hf's architecture table states it (qwen2 → qwen2_moe with a
// shared expert, qwen3 → qwen3_moe without); false for MoE inputs.
func upcycleTargetOf(c *hf.Config) (upcycleTarget, bool) {
	a, ok := c.UpcycleTarget()
	if !ok {
		return upcycleTarget{}, false
	}
	return upcycleTarget{arch: a, shared: a.HasSharedExpertSlot()}, true
}

// recipeOf returns the recipe of mode m.
func recipeOf(m Mode) (recipe, bool) {
	for _, r := range recipes {
		if r.info().mode == m {
			return r, true
		}
	}
	return nil, false
}

// ParseMode checks a --init value.
func ParseMode(s string) (Mode, error) {
	if _, ok := recipeOf(Mode(s)); ok {
		return Mode(s), nil
	}
	names := make([]string, len(Modes))
	for i, m := range Modes {
		names[i] = string(m)
	}
	return "", fmt.Errorf("unknown --init mode %q (want one of %s)", s, strings.Join(names, ", "))
}

// Exact reports whether the mode reproduces the dense model's logits.
func (m Mode) Exact() bool {
	r, ok := recipeOf(m)
	return ok && r.info().exact
}

// NeedsSharedExpert reports whether the mode needs a target architecture
// whose MoE layers have a shared expert.
func (m Mode) NeedsSharedExpert() bool {
	r, ok := recipeOf(m)
	return ok && r.info().needsShared
}
