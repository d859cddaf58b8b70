package convert

import "fmt"

// HybridExact: the Qwen1.5-MoE shape: s = S/I pieces form the shared
// expert (gate 0, down × 2), the other G−s form virtual groups
// (down × (G−s)). Exact.
const HybridExact Mode = "hybrid-exact"

type hybridExact struct{ fromLayout }

func (hybridExact) info() recipeInfo {
	return recipeInfo{mode: HybridExact, exact: true, grouped: true, needsShared: true}
}

func (hybridExact) resolveSizes(u *upcycler) error {
	F, I, G := u.F, u.I, u.G
	if G < 2 {
		return fmt.Errorf("hybrid-exact needs at least 2 pieces per FFN, but intermediate_size %d / --expert-size %d gives %d: use a smaller expert size, e.g. %d", F, I, G, max(F/4, 1))
	}
	if u.S == 0 {
		u.S = (G / 2) * I
	}
	if u.S%I != 0 || u.S/I < 1 || u.S/I >= G {
		return fmt.Errorf("hybrid-exact moves whole pieces into the shared expert: --shared-size must be a multiple of --expert-size %d between %d and %d (1 to %d of the %d pieces), e.g. %d; got %d",
			I, I, (G-1)*I, G-1, G, (G/2)*I, u.S)
	}
	u.s = u.S / I
	return nil
}

func (hybridExact) resolveRouting(u *upcycler) error {
	if err := requireNorm(u); err != nil {
		return err
	}
	u.routedDown, u.sharedDown = float32(u.gr), 2
	return nil
}

// neurons: the first s pieces form the shared expert; expert e is piece
// s + e mod (G−s) of replica e/(G−s).
func (hybridExact) neurons(u *upcycler, _ *recipeContext, perm func(int) []int32) ([][]int32, []int32, error) {
	pieces := u.pieces(perm(0))
	experts := make([][]int32, u.E)
	for e := range experts {
		experts[e] = pieces[u.s+e%u.gr]
	}
	var shared []int32
	for j := 0; j < u.s; j++ {
		shared = append(shared, pieces[j]...)
	}
	return experts, shared, nil
}

func (hybridExact) describe(u *upcycler, us *UpcycleSummary, _ *Summary) {
	us.SharedExpert = fmt.Sprintf("pieces 0-%d of the FFN (%d neurons), gate 0 (sigmoid ½), down_proj ×2", u.s-1, u.S)
}
