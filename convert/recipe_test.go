package convert

import (
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
	want := []Mode{SharedExact, VirtualGroup, HybridExact, MegatronScaled, Qwen2Report}
	if !slices.Equal(Modes, want) {
		t.Errorf("Modes = %v, want %v", Modes, want)
	}
	if Mode("bogus").Exact() {
		t.Error("an unknown mode is not exact")
	}
}

// TestUpcycleTargetWithoutShared: with a target architecture whose MoE
// layers have no shared expert (as qwen3_moe), recipes that need one are
// refused and the others leave it out, still exactly.
func TestUpcycleTargetWithoutShared(t *testing.T) {
	saved := upcycleTargets[hf.Qwen2]
	upcycleTargets[hf.Qwen2] = upcycleTarget{arch: hf.Qwen2MoE, shared: false}
	defer func() { upcycleTargets[hf.Qwen2] = saved }()

	dir := denseTiny(t)
	ck := openCheckpoint(t, dir)
	for _, m := range []Mode{SharedExact, HybridExact, Qwen2Report} {
		_, err := Upcycle(ck, UpcycleOptions{Mode: m})
		if err == nil || !strings.Contains(err.Error(), "shared expert") {
			t.Errorf("%s without a shared expert: err = %v, want a refusal", m, err)
		}
	}
	p, err := Upcycle(ck, UpcycleOptions{Mode: VirtualGroup, ExpertSize: 64, Experts: 8, TopK: 4})
	if err != nil {
		t.Fatal(err)
	}
	if p.Config.SharedExpertIntermediateSize != 0 || p.Summary.SharedSize != 0 {
		t.Errorf("shared size %d in the config, %d in the summary; want 0", p.Config.SharedExpertIntermediateSize, p.Summary.SharedSize)
	}
	for _, ti := range p.Tensors {
		if strings.Contains(ti.Name, "shared_expert") {
			t.Fatalf("tensor %s planned for a target without a shared expert", ti.Name)
		}
	}
	out := writePlan(t, p, 0)
	got := parity(t, openModel(t, dir), openModel(t, out), randomSeqs(p.Config.VocabSize))
	if got.MaxRelLogitDiff > exactTol {
		t.Errorf("max rel logit diff %.3g > %g", got.MaxRelLogitDiff, exactTol)
	}
}
