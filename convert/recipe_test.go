package convert

import (
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
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

// preparedRecipe is a test recipe with virtual-group's layout whose
// prepare records the MoE layers it is given and whose router comes from
// what it prepared: constant rows, the layer's index + 1.
type preparedRecipe struct {
	virtualGroup
	calls *[][]int
}

const testPrepared Mode = "test-prepared"

func (r preparedRecipe) info() recipeInfo {
	i := r.virtualGroup.info()
	i.mode = testPrepared
	return i
}

func (r preparedRecipe) prepare(u *upcycler, _ *builder, moe []int) (any, error) {
	*r.calls = append(*r.calls, slices.Clone(moe))
	rows := map[int]float32{}
	for _, l := range moe {
		rows[l] = float32(l + 1)
	}
	return rows, nil
}

func (r preparedRecipe) router(u *upcycler, layer int) ([]float32, error) {
	v, ok := u.prepared.(map[int]float32)[layer]
	if !ok {
		return nil, fmt.Errorf("layer %d was not prepared", layer)
	}
	w := make([]float32, u.E*u.h)
	for i := range w {
		w[i] = v
	}
	return w, nil
}

// TestRecipePrepareAndRouter: Upcycle calls a recipe's prepare once, with
// the MoE layers in order, before planning, and writes the router the
// recipe returns from what it prepared.
func TestRecipePrepareAndRouter(t *testing.T) {
	var calls [][]int
	saved := recipes
	recipes = append(slices.Clip(recipes), preparedRecipe{calls: &calls})
	defer func() { recipes = saved }()

	ck := openCheckpoint(t, denseTiny(t))
	p, err := Upcycle(ck, UpcycleOptions{Mode: testPrepared, MoELayers: []int{2, 0}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([][]int{{0, 2}}, calls); diff != "" {
		t.Errorf("prepare calls (-want +got):\n%s", diff)
	}
	out := openCheckpoint(t, writePlan(t, p, 0))
	for _, l := range []int{0, 2} {
		w := tensorF32(t, out, out.Config.RouterLinear(l)+".weight")
		if len(w) != out.Config.NumExperts*out.Config.HiddenSize || slices.ContainsFunc(w, func(v float32) bool { return v != float32(l+1) }) {
			t.Errorf("layer %d: router is not the recipe's (all %d): %v…", l, l+1, w[:4])
		}
	}
}
