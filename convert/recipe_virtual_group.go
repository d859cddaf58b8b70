package convert

import "fmt"

// VirtualGroup: E = R·G experts, R replicas of the FFN's G pieces, a
// replica's pieces adjacent and sharing one router row; K = k·G,
// norm_topk_prob, down_proj × G. Exact.
const VirtualGroup Mode = "virtual-group"

type virtualGroup struct{ fromLayout }

func (virtualGroup) info() recipeInfo {
	return recipeInfo{mode: VirtualGroup, exact: true, grouped: true}
}

func (virtualGroup) resolveSizes(u *upcycler) error { return silentSharedWidth(u) }

func (virtualGroup) resolveRouting(u *upcycler) error {
	if err := requireNorm(u); err != nil {
		return err
	}
	u.routedDown = float32(u.gr)
	return nil
}

func (virtualGroup) neurons(u *upcycler, _ *recipeContext, perm func(int) []int32) ([][]int32, []int32, error) {
	e, s := replicaNeurons(u, perm(0))
	return e, s, nil
}

func (virtualGroup) describe(u *upcycler, us *UpcycleSummary, _ *Summary) {
	describeSilentShared(u, us)
}

// silentSharedWidth is the shared expert width of the recipes whose shared
// expert is silent: one expert width unless --shared-size says otherwise.
func silentSharedWidth(u *upcycler) error {
	if u.S == 0 {
		u.S = u.I
	}
	return nil
}

// requireNorm is the norm_topk_prob of the exact grouped recipes: the
// selected replicas' weights must sum to 1.
func requireNorm(u *upcycler) error {
	if req := u.opts.NormTopKProb; req != nil && !*req {
		return fmt.Errorf("%s is exact only with norm_topk_prob=true (the selected replicas' weights must sum to 1); drop --norm-topk-prob=false, or use megatron-scaled for the unnormalized recipe", u.mode)
	}
	u.norm = true
	return nil
}

// replicaNeurons assigns the experts of the grouped recipes without shared
// pieces: expert e is piece e mod G of replica e/G. The shared expert is
// silent (zero down_proj); its gate and up rows are FFN neurons (cycled)
// so that training can wake it.
func replicaNeurons(u *upcycler, p []int32) (experts [][]int32, shared []int32) {
	pieces := u.pieces(p)
	experts = make([][]int32, u.E)
	for e := range experts {
		experts[e] = pieces[e%u.gr]
	}
	shared = make([]int32, u.S)
	for v := range shared {
		shared[v] = p[v%u.F]
	}
	return experts, shared
}

func describeSilentShared(u *upcycler, us *UpcycleSummary) {
	us.SharedExpert = fmt.Sprintf("silent: %d FFN neurons in gate/up, down_proj 0, gate 0", u.S)
}
