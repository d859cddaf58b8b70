package convert

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/moeforge/moeforge/formats/hf"
)

// TestRecipeRegistry: every registered recipe parses by its name, names are
// unique, and Mode's properties come from the recipe's info.
func TestRecipeRegistry(t *testing.T) {
	seen := map[Mode]bool{}
	for _, r := range recipes {
		i := r.info()
		if seen[i.mode] {
			t.Errorf("mode %s registered twice", i.mode)
		}
		seen[i.mode] = true
		if m, err := ParseMode(string(i.mode)); err != nil || m != i.mode {
			t.Errorf("ParseMode(%q) = %q, %v", i.mode, m, err)
		}
		if i.mode.Exact() != i.exact || i.mode.NeedsSharedExpert() != i.needsShared {
			t.Errorf("%s: Exact/NeedsSharedExpert disagree with its info %+v", i.mode, i)
		}
	}
	want := []Mode{SharedExact, VirtualGroup, HybridExact, MegatronScaled, Qwen2Report, Carve}
	if !slices.Equal(Modes, want) {
		t.Errorf("Modes = %v, want %v", Modes, want)
	}
	if Mode("bogus").Exact() {
		t.Error("an unknown mode is not exact")
	}
}

// activationsRecipe is a data-driven test recipe: virtual-group's layout,
// with the neurons of each layer read through the activation hook.
type activationsRecipe struct {
	virtualGroup
	seen map[int]int // layer → tokens seen
}

const testActivations Mode = "test-activations"

func (r activationsRecipe) info() recipeInfo {
	i := r.virtualGroup.info()
	i.mode, i.needsActivations = testActivations, true
	return i
}

func (r activationsRecipe) neurons(u *upcycler, ctx *recipeContext, perm func(int) []int32) ([][]int32, []int32, error) {
	x, tokens, err := ctx.acts.FFNInputs(ctx.layer)
	if err != nil {
		return nil, nil, err
	}
	if len(x) != tokens*u.h {
		return nil, nil, fmt.Errorf("FFNInputs gave %d values for %d tokens", len(x), tokens)
	}
	if _, err := ctx.dense(hf.UpProj); err != nil {
		return nil, nil, err
	}
	r.seen[ctx.layer] = tokens
	return r.virtualGroup.neurons(u, ctx, perm)
}

type fakeActivations struct{ hidden, tokens int }

func (f fakeActivations) FFNInputs(layer int) ([]float32, int, error) {
	return make([]float32, f.tokens*f.hidden), f.tokens, nil
}

// TestRecipeActivationsHook: a recipe that needs activations is refused
// without the hook and gets it, per layer, with it.
func TestRecipeActivationsHook(t *testing.T) {
	r := activationsRecipe{seen: map[int]int{}}
	saved := recipes
	recipes = append(slices.Clip(recipes), r)
	defer func() { recipes = saved }()

	ck := openCheckpoint(t, denseTiny(t))
	if _, err := Upcycle(ck, UpcycleOptions{Mode: testActivations}); err == nil || !strings.Contains(err.Error(), "calibration") {
		t.Fatalf("without activations: err = %v, want a refusal", err)
	}
	p, err := Upcycle(ck, UpcycleOptions{Mode: testActivations, Activations: fakeActivations{ck.Config.HiddenSize, 5}})
	if err != nil {
		t.Fatal(err)
	}
	writePlan(t, p, 0)
	if len(r.seen) != ck.Config.NumHiddenLayers || r.seen[0] != 5 {
		t.Errorf("layers seen through the hook: %v, want all %d with 5 tokens", r.seen, ck.Config.NumHiddenLayers)
	}
}
