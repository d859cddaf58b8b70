package convert

import "fmt"

// SharedExact: the dense FFN becomes the shared expert (gate 0, so
// sigmoid = ½, and down_proj × 2); the routed experts are FFN pieces
// with a zero down_proj, silent until trained. Exact.
const SharedExact Mode = "shared-exact"

type sharedExact struct{ fromLayout }

func (sharedExact) info() recipeInfo {
	return recipeInfo{mode: SharedExact, exact: true, needsShared: true}
}

func (sharedExact) resolveSizes(u *upcycler) error {
	F := u.F
	if u.S == 0 {
		u.S = F
	}
	if u.S < F {
		return fmt.Errorf("shared-exact puts the whole FFN into the shared expert, so --shared-size must be at least intermediate_size %d (got %d); to put only part of it there use hybrid-exact, e.g. --shared-size %d", F, u.S, (u.G/2)*u.I)
	}
	return nil
}

func (sharedExact) resolveRouting(u *upcycler) error {
	u.norm = u.opts.NormTopKProb != nil && *u.opts.NormTopKProb
	u.routedDown, u.sharedDown = 0, 2
	return nil
}

// neurons: routed expert e is piece e mod G; the shared expert is the whole
// FFN followed by zero neurons up to S.
func (sharedExact) neurons(u *upcycler, _ *recipeContext, perm func(int) []int32) ([][]int32, []int32, error) {
	p := perm(0)
	pieces := u.pieces(p)
	experts := make([][]int32, u.E)
	for e := range experts {
		experts[e] = pieces[e%u.G]
	}
	shared := make([]int32, u.S)
	for v := range shared {
		shared[v] = -1
		if v < u.F {
			shared[v] = p[v]
		}
	}
	return experts, shared, nil
}

func (sharedExact) describe(u *upcycler, us *UpcycleSummary, _ *Summary) {
	us.SharedExpert = fmt.Sprintf("the whole FFN (%d neurons", u.F)
	if u.S > u.F {
		us.SharedExpert += fmt.Sprintf(" + %d zero neurons", u.S-u.F)
	}
	us.SharedExpert += "), gate 0 (sigmoid ½), down_proj ×2; routed experts silent (down_proj 0)"
}
