package convert

import (
	"fmt"
	"math"

	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/gemm"
	"github.com/moeforge/moeforge/internal/linalg"
)

// routerRidge is the ridge term of the least-squares router, relative to the
// mean diagonal of XᵀX.
const routerRidge = 1e-3

// fitRouter fits the router of a carved layer: W [E, hidden] minimizing
// Σ_t ‖W·x_t − y_t‖² + λ‖W‖², where y_t holds the (log) activation mass of
// every expert for calibration token t (a linear predictor of which experts
// matter for a token), then scales it so that the logits have standard deviation
// RouterSpread across experts: top-K picks the experts with the largest
// predicted mass and their renormalized weights are ≈ 1/K. The result is
// rounded to dtype.
func (r *carveRun) fitRouter(layer int, xin []float32, N int, M []float64, dtype safetensors.DType) ([]float32, error) {
	H, E := r.h, r.E
	hs := gemm.NewHessian(H, 0)
	hs.Add(xin, N)
	A := hs.H()
	var tr float64
	for i := 0; i < H; i++ {
		tr += A[i*H+i]
	}
	lambda := routerRidge * tr / float64(H)
	if !(lambda > 0) {
		return nil, fmt.Errorf("carve layer %d: the FFN inputs are all zero on the calibration tokens", layer)
	}
	for i := 0; i < H; i++ {
		A[i*H+i] += lambda
	}
	// The target: each expert's mass, or its log (offset by a thousandth
	// of the mean expert mass, so that silent experts stay finite).
	target := M
	if r.co.RouterTarget == CarveLogMass {
		var mean float64
		for _, v := range M {
			mean += v
		}
		eps := 1e-3*mean/float64(len(M)) + 1e-30
		target = make([]float64, len(M))
		for i, v := range M {
			target[i] = math.Log(v + eps)
		}
	}
	B := make([]float64, H*E) // Xᵀ target
	for t := 0; t < N; t++ {
		x := xin[t*H : (t+1)*H]
		m := target[t*E : (t+1)*E]
		for i, xv := range x {
			if xv == 0 {
				continue
			}
			b := B[i*E : (i+1)*E]
			for e, mv := range m {
				b[e] += float64(xv) * mv
			}
		}
	}
	inv, err := linalg.InverseSPD(A, H)
	if err != nil {
		return nil, fmt.Errorf("carve layer %d: router least squares: %w", layer, err)
	}
	w := make([]float32, E*H) // W[e, i] = Σ_j inv[i, j]·B[j, e]
	for i := 0; i < H; i++ {
		for e := 0; e < E; e++ {
			var s float64
			for j := 0; j < H; j++ {
				s += inv[i*H+j] * B[j*E+e]
			}
			w[e*H+i] = float32(s)
		}
	}
	// Spread of the logits across experts (each token's mean removed).
	z := make([]float32, N*E)
	gemm.MulT(z, xin, gemm.F32{Data: w, N: E, K: H}, N, false)
	var ss float64
	for t := 0; t < N; t++ {
		zt := z[t*E : (t+1)*E]
		var mean float64
		for _, v := range zt {
			mean += float64(v)
		}
		mean /= float64(E)
		for _, v := range zt {
			ss += (float64(v) - mean) * (float64(v) - mean)
		}
	}
	std := math.Sqrt(ss / float64(N*E))
	if !(std > 0) || math.IsInf(std, 0) {
		return nil, fmt.Errorf("carve layer %d: the fitted router gives the same logit to every expert (activation mass does not vary with the input)", layer)
	}
	scale := float32(r.co.RouterSpread / std)
	for i := range w {
		w[i] *= scale
	}
	roundTo(w, dtype)
	return w, nil
}
