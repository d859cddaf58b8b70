package model

import (
	"math"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/moeforge/moeforge/internal/gemm"
)

// forward computes Down(silu(Gate x) ⊙ Up x) for x [rows, hidden].
func (f *FFN) forward(x []float32, rows int, hooks *Hooks) []float32 {
	g := apply(f.Gate, x, rows, hooks)
	u := apply(f.Up, x, rows, hooks)
	swiglu(g, u)
	return apply(f.Down, g, rows, hooks)
}

// SwiGLU sets g[i] = silu(g[i])·u[i]: the input of an FFN's down
// projection from its gate and up outputs, as FFN.forward computes it.
func SwiGLU(g, u []float32) { swiglu(g, u) }

// swiglu sets g[i] = silu(g[i])·u[i], on all threads when the block is large.
func swiglu(g, u []float32) {
	const chunk = 1 << 14
	if len(g) < 2*chunk {
		for i, v := range g {
			g[i] = silu(v) * u[i]
		}
		return
	}
	parallelFor((len(g)+chunk-1)/chunk, func(lo, hi int) {
		for i := lo * chunk; i < min(hi*chunk, len(g)); i++ {
			g[i] = silu(g[i]) * u[i]
		}
	})
}

func silu(x float32) float32 { return x / (1 + exp32(-x)) }

// Sigmoid is 1/(1+e^-x) as the shared expert gate computes it.
func Sigmoid(x float32) float32 { return sigmoid(x) }

func sigmoid(x float32) float32 { return 1 / (1 + exp32(-x)) }

// exp32 returns e^x to float32 precision (relative error below 1e-7, about
// one unit in the last place), about twice as fast as math.Exp: x = n·ln2 + r
// with |r| ≤ ln2/2, e^r by its degree-7 Taylor polynomial in float64 (error
// below 5e-9), times 2^n. Results below the smallest normal float32 flush to
// zero.
func exp32(x float32) float32 {
	const (
		log2e = 1.4426950408889634
		ln2   = 0.6931471805599453
		magic = 6755399441055744.0 // 1.5·2^52: adding it rounds to an integer
	)
	if !(x > -87.33654) { // also NaN
		if x != x {
			return x
		}
		return 0
	}
	if x > 88.72283 {
		return float32(math.Inf(1))
	}
	xd := float64(x)
	t := xd*log2e + magic
	n := t - magic
	r := xd - n*ln2
	p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720+r*(1.0/5040)))))))
	// The low bits of t hold n (two's complement): n+1023 is 2^n's exponent.
	return float32(p * math.Float64frombits((math.Float64bits(t)+1023)<<52))
}

// Route computes the routing of x [rows, hidden]: router logits [rows, E],
// and for each token the top-k experts (best first, ties to the lower index)
// with their weights: softmax over all experts, renormalized over the top-k
// when NormTopK.
func (e *MoE) Route(logits []float32, rows int) (experts []int32, weights []float32) {
	E, K := len(e.Experts), e.TopK
	experts = make([]int32, rows*K)
	weights = make([]float32, rows*K)
	probs := make([]float64, E)
	idx := make([]int, E)
	for r := 0; r < rows; r++ {
		lr := logits[r*E : (r+1)*E]
		maxl := math.Inf(-1)
		for _, v := range lr {
			maxl = math.Max(maxl, float64(v))
		}
		var sum float64
		for i, v := range lr {
			probs[i] = math.Exp(float64(v) - maxl)
			sum += probs[i]
		}
		for i := range probs {
			probs[i] /= sum
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool { return probs[idx[a]] > probs[idx[b]] })
		top := 1.0
		if e.NormTopK {
			top = 0
			for j := 0; j < K; j++ {
				top += probs[idx[j]]
			}
		}
		for j := 0; j < K; j++ {
			experts[r*K+j] = int32(idx[j])
			weights[r*K+j] = float32(probs[idx[j]] / top)
		}
	}
	return experts, weights
}

// runExperts returns each expert's output [len(tokens[ex]), h] for the rows
// of x routed to it. Without a LinearInput hook (which must see the experts
// one at a time, in order) experts run concurrently, largest first: most
// experts' products are too small to keep all cores busy on their own.
func (e *MoE) runExperts(x []float32, h int, tokens [][]int32, hooks *Hooks) [][]float32 {
	ys := make([][]float32, len(tokens))
	run := func(ex int) {
		toks := tokens[ex]
		buf := make([]float32, 0, len(toks)*h)
		for _, r := range toks {
			buf = append(buf, x[int(r)*h:(int(r)+1)*h]...)
		}
		ys[ex] = e.Experts[ex].forward(buf, len(toks), hooks)
	}
	var order []int
	for ex, toks := range tokens {
		if len(toks) > 0 {
			order = append(order, ex)
		}
	}
	if hooks != nil && hooks.LinearInput != nil || gemm.Threads() == 1 {
		for _, ex := range order {
			run(ex)
		}
		return ys
	}
	sort.SliceStable(order, func(a, b int) bool { return len(tokens[order[a]]) > len(tokens[order[b]]) })
	var next atomic.Int32
	var wg sync.WaitGroup
	for w := 0; w < min(gemm.Threads(), len(order)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(order) {
					return
				}
				run(order[i])
			}
		}()
	}
	wg.Wait()
	return ys
}

// forward runs the sparse block on x [rows, hidden]. Tokens are grouped by
// expert: each expert runs one product over the rows routed to it.
func (e *MoE) forward(layer int, x []float32, rows int, hooks *Hooks) []float32 {
	h := e.Router.In()
	logits := apply(e.Router, x, rows, hooks)
	experts, weights := e.Route(logits, rows)
	if hooks != nil && hooks.Routing != nil {
		hooks.Routing(layer, logits, experts, weights)
	}
	out := make([]float32, rows*h)
	// Group (token, weight) pairs by expert.
	K := e.TopK
	counts := make([]int, len(e.Experts))
	for _, ex := range experts {
		counts[ex]++
	}
	tokens := make([][]int32, len(e.Experts))
	ws := make([][]float32, len(e.Experts))
	for i, c := range counts {
		tokens[i] = make([]int32, 0, c)
		ws[i] = make([]float32, 0, c)
	}
	for r := 0; r < rows; r++ {
		for j := 0; j < K; j++ {
			ex := experts[r*K+j]
			tokens[ex] = append(tokens[ex], int32(r))
			ws[ex] = append(ws[ex], weights[r*K+j])
		}
	}
	ys := e.runExperts(x, h, tokens, hooks)
	// Accumulate in expert order, whatever order the experts ran in, so that
	// the sums do not depend on the number of threads.
	for ex, toks := range tokens {
		y := ys[ex]
		for i, r := range toks {
			w := ws[ex][i]
			dst := out[int(r)*h : (int(r)+1)*h]
			for d, v := range y[i*h : (i+1)*h] {
				dst[d] += w * v
			}
		}
	}
	if e.Shared != nil {
		y := e.Shared.forward(x, rows, hooks)
		g := apply(e.SharedGate, x, rows, hooks)
		for r := 0; r < rows; r++ {
			s := sigmoid(g[r])
			dst := out[r*h : (r+1)*h]
			for d, v := range y[r*h : (r+1)*h] {
				dst[d] += s * v
			}
		}
	}
	return out
}
