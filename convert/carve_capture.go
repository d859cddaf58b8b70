package convert

import (
	"fmt"
	"math"
	"slices"

	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/gemm"
	"github.com/moeforge/moeforge/internal/half"
	"github.com/moeforge/moeforge/model"
)

// calibrate carves every MoE layer in order. The calibration windows run
// through the model; at MoE layer i the FFN inputs are captured, the layer is
// carved from them, and the carved layer (in memory, with the weights the
// output will hold) replaces the dense MLP before the windows move on, so
// that later layers are carved on the inputs the carved model gives them.
func (r *carveRun) calibrate(moe []int, dtype safetensors.DType) error {
	m, err := model.Load(r.in)
	if err != nil {
		return err
	}
	if maxPos := m.Config.MaxPositionEmbeddings; maxPos > 0 {
		for _, s := range r.co.Calibration {
			if len(s) > maxPos {
				return fmt.Errorf("carve: a calibration window of %d tokens exceeds max_position_embeddings=%d: use a smaller --calib-seqlen", len(s), maxPos)
			}
		}
	}
	batch := &model.Batch{Seqs: r.co.Calibration}
	x, err := m.Embed(batch)
	if err != nil {
		return fmt.Errorf("carve calibration: %w", err)
	}
	isMoE := map[int]bool{}
	for _, i := range moe {
		isMoE[i] = true
	}
	last := moe[len(moe)-1]
	for i := 0; i <= last; i++ {
		l := m.Layers[i]
		if !isMoE[i] {
			m.ForwardLayer(l, x, batch, nil)
			continue
		}
		dense := l.MLP
		var xin []float32
		hooks := &model.Hooks{LinearInput: func(lin *model.Linear, in []float32, rows int) {
			if lin == dense.Gate {
				xin = slices.Clone(in[:rows*r.h])
			}
		}}
		m.ForwardLayer(l, slices.Clone(x), batch, hooks)
		cl, err := r.carveLayer(i, dense, xin, dtype)
		if err != nil {
			return err
		}
		r.layers[i] = cl
		if i == last {
			break
		}
		l.MLP, l.MoE = nil, r.moeOf(dense, cl, dtype)
		m.ForwardLayer(l, x, batch, nil)
	}
	return nil
}

// widenAll returns a whole matrix as float32 [rows, cols].
func widenAll(w gemm.Matrix) []float32 {
	v := make([]float32, w.Rows()*w.Cols())
	w.Widen(v, w.Cols(), 0, w.Rows(), 0, w.Cols())
	return v
}

// carveLayer computes the activations of the dense FFN on its calibration
// inputs xin [N, hidden] and carves it: shared neurons, balanced clusters,
// router, and the coverage statistics.
func (r *carveRun) carveLayer(layer int, dense *model.FFN, xin []float32, dtype safetensors.DType) (*carvedLayer, error) {
	H, F := r.h, r.F
	N := len(xin) / H
	if N == 0 {
		return nil, fmt.Errorf("carve layer %d: no calibration tokens", layer)
	}
	// Contributions c[t, n] = |h_n(x_t)| · ‖W_down[:, n]‖.
	g := make([]float32, N*F)
	u := make([]float32, N*F)
	dense.Gate.Forward(g, xin, N)
	dense.Up.Forward(u, xin, N)
	down := widenAll(dense.Down.W) // [H, F]
	dn := make([]float64, F)
	for row := 0; row < H; row++ {
		for n, v := range down[row*F : (row+1)*F] {
			dn[n] += float64(v) * float64(v)
		}
	}
	for n := range dn {
		dn[n] = math.Sqrt(dn[n])
	}
	c := g
	for i, gv := range g {
		hv := float64(gv) / (1 + math.Exp(-float64(gv))) * float64(u[i])
		c[i] = float32(math.Abs(hv) * dn[i%F])
		if math.IsNaN(hv) || math.IsInf(hv, 0) {
			return nil, fmt.Errorf("carve layer %d: activation of neuron %d is %g on calibration token %d (NaN or Inf in the model)", layer, i%F, hv, i/F)
		}
	}
	u = nil

	shared, routed := r.pickShared(c, N)
	assign, iters := r.cluster(layer, c, N, routed)
	swaps := r.refineTopK(c, N, routed, assign, r.co.RefineSweeps)
	cl := &carvedLayer{shared: shared, experts: make([][]int32, r.E)}
	for j, e := range assign {
		cl.experts[e] = append(cl.experts[e], routed[j])
	}
	for e := range cl.experts {
		slices.Sort(cl.experts[e])
	}
	// Mass of every expert per token, M[t, e].
	M := make([]float64, N*r.E)
	owner := make([]int, F)
	for n := range owner {
		owner[n] = -1
	}
	for e, ns := range cl.experts {
		for _, n := range ns {
			owner[n] = e
		}
	}
	var total, sharedMass float64
	for t := 0; t < N; t++ {
		row := c[t*F : (t+1)*F]
		mt := M[t*r.E : (t+1)*r.E]
		for n, v := range row {
			total += float64(v)
			if e := owner[n]; e >= 0 {
				mt[e] += float64(v)
			} else {
				sharedMass += float64(v)
			}
		}
	}
	router, err := r.fitRouter(layer, xin, N, M, dtype)
	if err != nil {
		return nil, err
	}
	cl.router = router
	cl.stats = coverage(layer, xin, N, H, r.E, r.K, router, M, total, sharedMass)
	cl.stats.KMeansIterations, cl.stats.RefineSwaps = iters, swaps
	return cl, nil
}

// coverage measures the share of activation mass the router's choice keeps.
func coverage(layer int, xin []float32, N, H, E, K int, router []float32, M []float64, total, sharedMass float64) CarveLayerStats {
	z := make([]float32, N*E)
	gemm.MulT(z, xin, gemm.F32{Data: router, N: E, K: H}, N, false)
	var chosen, oracle, routed float64
	idx := make([]int, E)
	for t := 0; t < N; t++ {
		mt := M[t*E : (t+1)*E]
		for _, v := range mt {
			routed += v
		}
		for _, e := range topK(z[t*E:(t+1)*E], K, idx) {
			chosen += mt[e]
		}
		best := slices.Clone(mt)
		slices.SortFunc(best, func(a, b float64) int { return cmpDesc(a, b) })
		for _, v := range best[:K] {
			oracle += v
		}
	}
	s := CarveLayerStats{Layer: layer}
	if total > 0 {
		s.SharedMass = sharedMass / total
		s.CoveredMass = (sharedMass + chosen) / total
	}
	if routed > 0 {
		s.RoutedCovered = chosen / routed
		s.OracleRoutedCovered = oracle / routed
	}
	return s
}

func cmpDesc(a, b float64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

// topK returns the indices of the K largest values (ties to the lower
// index, as model.MoE.Route), using idx (len ≥ len(v)) as scratch.
func topK(v []float32, K int, idx []int) []int {
	idx = idx[:len(v)]
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmpDesc(float64(v[a]), float64(v[b])) })
	return idx[:K]
}

// moeOf builds carved layer cl as an in-memory model.MoE over the dense
// FFN's weights, exactly as the output checkpoint will hold it (without a
// shared expert when S = 0, as for qwen3_moe).
func (r *carveRun) moeOf(dense *model.FFN, cl *carvedLayer, dtype safetensors.DType) *model.MoE {
	H := r.h
	gate, up, down := widenAll(dense.Gate.W), widenAll(dense.Up.W), widenAll(dense.Down.W)
	F := r.F
	ffn := func(src []int32, downScale float32) *model.FFN {
		n := len(src)
		gw, uw, dw := make([]float32, n*H), make([]float32, n*H), make([]float32, H*n)
		for i, s := range src {
			copy(gw[i*H:(i+1)*H], gate[int(s)*H:(int(s)+1)*H])
			copy(uw[i*H:(i+1)*H], up[int(s)*H:(int(s)+1)*H])
			for row := 0; row < H; row++ {
				dw[row*n+i] = down[row*F+int(s)] * downScale
			}
		}
		for _, w := range [][]float32{gw, uw, dw} {
			roundTo(w, dtype)
		}
		return &model.FFN{
			Gate: &model.Linear{Name: "carve.gate_proj", W: gemm.F32{Data: gw, N: n, K: H}},
			Up:   &model.Linear{Name: "carve.up_proj", W: gemm.F32{Data: uw, N: n, K: H}},
			Down: &model.Linear{Name: "carve.down_proj", W: gemm.F32{Data: dw, N: H, K: n}},
		}
	}
	moe := &model.MoE{
		Router:   &model.Linear{Name: "carve.router", W: gemm.F32{Data: cl.router, N: r.E, K: H}},
		TopK:     r.K,
		NormTopK: true,
	}
	if r.S > 0 {
		moe.Shared = ffn(cl.shared, 2)
		moe.SharedGate = &model.Linear{Name: "carve.shared_expert_gate", W: gemm.F32{Data: make([]float32, H), N: 1, K: H}}
	}
	for _, src := range cl.experts {
		moe.Experts = append(moe.Experts, ffn(src, float32(r.K)))
	}
	return moe
}

// roundTo rounds v in place to the values dtype can hold (to nearest even),
// so that in-memory weights equal the written ones.
func roundTo(v []float32, dtype safetensors.DType) {
	switch dtype {
	case safetensors.BF16:
		for i, f := range v {
			v[i] = half.BF16ToF32(half.F32ToBF16(f))
		}
	case safetensors.F16:
		for i, f := range v {
			v[i] = half.F16ToF32(half.F32ToF16(f))
		}
	}
}
