package convert

import (
	"fmt"
	"math"
)

// MegatronScaled: virtual-group's experts and router without
// renormalization; every expert's gate, up and down × (R·G/k)^(1/3)
// (arXiv 2410.07524). Approximate.
const MegatronScaled Mode = "megatron-scaled"

type megatronScaled struct{ fromLayout }

func (megatronScaled) info() recipeInfo {
	return recipeInfo{mode: MegatronScaled, grouped: true}
}

func (megatronScaled) resolveSizes(u *upcycler) error { return silentSharedWidth(u) }

func (megatronScaled) resolveRouting(u *upcycler) error {
	if req := u.opts.NormTopKProb; req != nil && *req {
		return fmt.Errorf("megatron-scaled is defined with norm_topk_prob=false (softmax over all experts, then top-k); drop --norm-topk-prob, or use virtual-group for the normalized, exact recipe")
	}
	u.norm = false
	u.routedDown = 1
	u.expertScale = float32(math.Cbrt(float64(u.E) * float64(u.G) / float64(u.K)))
	return nil
}

func (megatronScaled) neurons(u *upcycler, _ *recipeContext, perm func(int) []int32) ([][]int32, []int32, error) {
	e, s := replicaNeurons(u, perm(0))
	return e, s, nil
}

func (megatronScaled) describe(u *upcycler, us *UpcycleSummary, _ *Summary) {
	describeSilentShared(u, us)
}
