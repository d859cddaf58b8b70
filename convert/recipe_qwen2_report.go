package convert

import "fmt"

// Qwen2Report: shuffled FFN copies sliced into experts, a fraction of
// each expert re-initialized, random router (Qwen2 technical report).
// Approximate.
const Qwen2Report Mode = "qwen2-report"

type qwen2Report struct{ fromLayout }

func (qwen2Report) info() recipeInfo {
	return recipeInfo{mode: Qwen2Report, slices: true, defaultReinit: 0.5, needsShared: true}
}

func (qwen2Report) resolveSizes(u *upcycler) error {
	if u.S == 0 {
		u.S = u.I
	}
	return nil
}

func (qwen2Report) resolveRouting(u *upcycler) error {
	u.norm = u.opts.NormTopKProb != nil && *u.opts.NormTopKProb
	u.routedDown, u.sharedDown = 1, 1
	u.copies = ceilDiv(u.E*u.I+u.S, u.F)
	return nil
}

// neurons concatenates u.copies independently shuffled copies of the FFN;
// expert e takes virtual neurons [e·I, (e+1)·I), the shared expert the S
// after them; the rest is discarded.
func (qwen2Report) neurons(u *upcycler, _ *recipeContext, perm func(int) []int32) ([][]int32, []int32, error) {
	F, I := u.F, u.I
	perms := make([][]int32, u.copies)
	for c := range perms {
		perms[c] = perm(c)
	}
	slice := func(v0, n int) []int32 {
		s := make([]int32, n)
		for t := range s {
			v := v0 + t
			s[t] = perms[v/F][v%F]
		}
		return s
	}
	experts := make([][]int32, u.E)
	for e := range experts {
		experts[e] = slice(e*I, I)
	}
	return experts, slice(u.E*I, u.S), nil
}

func (qwen2Report) describe(u *upcycler, us *UpcycleSummary, s *Summary) {
	us.SharedExpert = fmt.Sprintf("%d neurons sliced from the shuffled FFN copies after the experts, gate 0 (sigmoid ½)", u.S)
	us.Copies = u.copies
	us.DiscardedNeurons = u.copies*u.F - u.E*u.I - u.S
	s.note("qwen2-report: the FFN was replicated %d times, each copy shuffled, and sliced into %d experts of %d and a shared expert of %d; %d neurons per layer were discarded",
		u.copies, u.E, u.I, u.S, us.DiscardedNeurons)
}
