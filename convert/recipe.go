package convert

import (
	"fmt"
	"strings"

	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/safetensors"
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
}

// Modes lists every mode.
var Modes = func() []Mode {
	m := make([]Mode, len(recipes))
	for i, r := range recipes {
		m[i] = r.info().mode
	}
	return append(m, Carve) // carve.go: its own planner, not a recipe
}()

// recipe is one upcycling initialization: how a dense FFN's neurons become
// routed experts and a shared expert, with which scale factors. Upcycle does
// everything that is not the recipe's (validating sizes, padding, layer
// selection, router rows, shuffling, re-initialization, the output config
// and tensors); the recipe fills in its part of the layout in two steps and
// says which dense neurons each expert holds.
type recipe interface {
	// info states the recipe's fixed properties.
	info() recipeInfo
	// resolveShared sets the shared expert's width u.S (u.opts.SharedSize,
	// 0 = the recipe's default) and the number of FFN pieces it takes,
	// u.s (0 unless the shared expert is made of whole pieces), refusing
	// invalid widths. It runs after the expert width and the pieces (u.I,
	// u.G, u.pad) are known and before the routed experts (u.gr, u.E,
	// u.K, u.R, u.k) are.
	resolveShared(u *upcycler) error
	// resolveRouting sets norm_topk_prob (u.norm, from the request
	// u.opts.NormTopKProb) and the scale factors u.routedDown,
	// u.sharedDown (0 = silent) and u.expertScale (preset to 1), once the
	// routed experts are known.
	resolveRouting(u *upcycler) error
	// neurons returns, for one layer, the dense FFN neuron behind every
	// neuron of every routed expert (len u.E, each len u.I) and of the
	// shared expert (len u.S; nil when the target has none); -1 is a zero
	// padding neuron. perm(c) is the seeded neuron order of the layer's
	// FFN copy c (the identity unless shuffling); u.pieces cuts one into
	// the G pieces of I neurons. The layout is final; ctx carries what a
	// data-driven recipe needs.
	neurons(u *upcycler, ctx *recipeContext, perm func(copy int) []int32) (experts [][]int32, shared []int32, err error)
	// describe fills the recipe's part of the summary (what the shared
	// expert holds, recipe-specific counts and notes).
	describe(u *upcycler, us *UpcycleSummary, s *Summary)
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
	// does; qwen3_moe does not). A recipe without it leaves the shared
	// expert silent where there is one and omits it where there is none.
	needsShared bool
	// needsActivations: the recipe is data-driven (e.g. activation
	// carving) and needs UpcycleOptions.Activations.
	needsActivations bool
}

// recipeContext is what Upcycle hands a recipe's neurons beyond the
// layout: the layer and, for data-driven recipes, the activation hook.
type recipeContext struct {
	layer int
	in    *hf.Checkpoint
	// acts is UpcycleOptions.Activations (non-nil when the recipe's info
	// says needsActivations).
	acts Activations
}

// dense returns the layer's dense projection p ([F, H] or, for down_proj,
// [H, F]), memory-mapped; read it with newMatrix.
func (c *recipeContext) dense(p hf.Proj) (*safetensors.Tensor, error) {
	return c.in.Tensor(hf.MLPLinear(c.layer, p) + ".weight")
}

// Activations is the hook through which a data-driven recipe (one that
// chooses or orders neurons by how the dense model uses them on calibration
// text, as activation carving does) sees the dense model at work. convert
// runs no model itself: the caller implements it, typically with package
// model on windows from corpus.Calibration, running the earlier layers to
// produce a layer's input. No current recipe uses it.
type Activations interface {
	// FFNInputs returns the inputs of layer's MLP (the post-attention
	// RMSNorm output) for every calibration token, row-major [tokens,
	// hidden_size], computed with the dense model's layers before it.
	FFNInputs(layer int) (x []float32, tokens int, err error)
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
	if _, ok := recipeOf(Mode(s)); ok || Mode(s) == Carve {
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
	return ok && r.info().needsShared || m == Carve
}
