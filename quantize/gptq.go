// Package quantize implements GPTQ quantization at 2, 3, 4 and 8 bits
// (Frantar et al., 2022; reference code IST-DASLab/gptq and AutoGPTQ) and
// round-to-nearest, on one matrix (GPTQ, RTN) and on a whole model (Run):
// calibration activations are run layer by layer through the
// already-quantized model, each true-sequential group of linears gets its
// Hessian from its inputs, routed experts from the tokens routed to them
// (or MoECalib's selection), per-module settings follow
// gptq.Config.Dynamic, lm_head optionally too, and the result is streamed
// into an AutoGPTQ-layout (or gptq_v2) checkpoint with a per-module report.
package quantize

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/moeforge/moeforge/formats/gptq"
	"github.com/moeforge/moeforge/internal/gemm"
	"github.com/moeforge/moeforge/internal/linalg"
)

// blockSize is the number of columns between lazy batch updates (the
// reference's blocksize).
const blockSize = 128

// innerBlock is the number of columns updated eagerly one by one inside a
// block; after each inner block its errors reach the rest of the block
// through one matrix product. Mathematically this is the reference's
// per-column update of the whole block, reordered.
const innerBlock = 16

// maxDampRaises is how many times the damping is multiplied by 10 when the
// Cholesky factorization fails before giving up.
const maxDampRaises = 4

// Result is a quantized matrix and what GPTQ measured on it.
type Result struct {
	Layer *gptq.Layer
	// Loss is the reference's error estimate Σ (w − q)² / (2·Hinv_ii²) over
	// every weight (0 for RTN).
	Loss float64
	// Damp is the damping fraction λ finally used; DampRaises counts the
	// times it was raised (×10) because H + λ·mean(diag)·I was not
	// numerically positive definite.
	Damp       float64
	DampRaises int
	// Dead counts inputs whose Hessian diagonal was 0 (never active in the
	// calibration data): their weights are set to 0, as the reference does.
	Dead int
	// ZeroShifted counts the (group, output) grids whose asymmetric zero of 0
	// the v1 layout cannot store, shifted to zero 1 (see findParams).
	ZeroShifted int
}

// GPTQ quantizes w [out, in] (row-major, the checkpoint layout) to 4 bits
// with the Hessian h = 2/n·Σ xxᵀ [in, in] of its calibration inputs. It
// follows fasterquant of the reference code step by step:
//
//  1. dead inputs (H_ii = 0) get H_ii = 1 and a zero weight column;
//  2. with static groups, every natural group's grid is computed now;
//  3. with act-order, inputs are permuted by descending diag(H) (stable);
//  4. H += λ·mean(diag H)·I, and Hinv = upper Cholesky factor of H⁻¹,
//     factored in float32 as the reference does (again in float64 when
//     float32 fails; λ ×10 and retry when that fails too);
//  5. columns are walked in blocks of 128: at each group start the grid is
//     computed from the current (already error-updated) weights of the
//     group, w is quantized to q = clamp(round(w/s)+z, 0, 15), the error
//     e = (w − s(q−z))/Hinv_ii is propagated to the remaining columns of
//     the block, and after the block to all later columns at once
//     (W[:, end:] −= E·Hinv[block, end:]).
//
// The reference computes a group's grid from its global weight matrix, in
// which columns of the current block have not yet received that block's
// earlier errors when groups are smaller than a block; here the grid always
// sees the current weights, as the algorithm describes. h is not modified.
func GPTQ(w []float32, out, in int, h []float64, cfg gptq.Config) (*Result, error) {
	if len(h) != in*in {
		return nil, fmt.Errorf("Hessian has %d values, want %d×%d", len(h), in, in)
	}
	return gptqThreads(w, out, in, slices.Clone(h), cfg, gemm.Threads())
}

// gptqThreads is GPTQ with the column loop split over up to threads
// goroutines (products and factorizations use gemm.Threads()). It takes
// ownership of h and overwrites it.
func gptqThreads(w []float32, out, in int, h []float64, cfg gptq.Config, threads int) (*Result, error) {
	if err := checkConfig(cfg, out, in); err != nil {
		return nil, err
	}
	if len(w) != out*in {
		return nil, fmt.Errorf("weight has %d values, want %d×%d", len(w), out, in)
	}
	if len(h) != in*in {
		return nil, fmt.Errorf("Hessian has %d values, want %d×%d", len(h), in, in)
	}
	if i := nonFinite32(w); i >= 0 {
		return nil, fmt.Errorf("weight [%d, %d] is %v", i/in, i%in, w[i])
	}
	if i := nonFinite64(h); i >= 0 {
		return nil, fmt.Errorf("Hessian entry [%d, %d] is %v (calibration activations overflow)", i/in, i%in, h[i])
	}
	f, err := newFactor(h, in, cfg)
	if err != nil {
		return nil, err
	}
	return gptqWith(w, out, in, f, cfg, threads)
}

// factor is what GPTQ needs of a Hessian, the same for every matrix
// quantized with it: the dead inputs, the act-order permutation, and the
// upper Cholesky factor of the damped inverse (float32).
type factor struct {
	dead         []int
	perm         []int
	ut           []float32
	damp         float64
	raises       int
	in           int
	permutedRows bool
}

// newFactor prepares a Hessian (taking ownership of h): dead inputs get
// H_ii = 1, act-order permutes, and the damped inverse is factored.
func newFactor(h []float64, in int, cfg gptq.Config) (*factor, error) {
	if len(h) != in*in {
		return nil, fmt.Errorf("Hessian has %d values, want %d×%d", len(h), in, in)
	}
	if i := nonFinite64(h); i >= 0 {
		return nil, fmt.Errorf("Hessian entry [%d, %d] is %v (calibration activations overflow)", i/in, i%in, h[i])
	}
	H := h
	f := &factor{in: in}
	for i := 0; i < in; i++ {
		if H[i*in+i] == 0 {
			H[i*in+i] = 1
			f.dead = append(f.dead, i)
		}
	}
	f.perm = make([]int, in)
	for i := range f.perm {
		f.perm[i] = i
	}
	if cfg.DescAct {
		perm := f.perm
		sort.SliceStable(perm, func(a, b int) bool { return H[perm[a]*in+perm[a]] > H[perm[b]*in+perm[b]] })
		H = permuteSym(H, in, perm)
		f.permutedRows = true
	}
	u, lam, raises, err := inverseFactor(H, in, cfg.DampPercent)
	if err != nil {
		return nil, err
	}
	f.ut, f.damp, f.raises = u, lam, raises
	return f, nil
}

// gptqWith quantizes w [out, in] with a prepared factor (not modified).
func gptqWith(w []float32, out, in int, f *factor, cfg gptq.Config, threads int) (*Result, error) {
	if err := checkConfig(cfg, out, in); err != nil {
		return nil, err
	}
	if len(w) != out*in {
		return nil, fmt.Errorf("weight has %d values, want %d×%d", len(w), out, in)
	}
	if f.in != in {
		return nil, fmt.Errorf("Hessian is %d×%d, want %d×%d", f.in, f.in, in, in)
	}
	if i := nonFinite32(w); i >= 0 {
		return nil, fmt.Errorf("weight [%d, %d] is %v", i/in, i%in, w[i])
	}
	wt := transpose(w, out, in)
	res := &Result{Dead: len(f.dead)}
	for _, i := range f.dead {
		clear(wt[i*out : (i+1)*out])
	}
	gw := groupWidth(cfg, in)
	groups := gptq.NumGroups(in, cfg.GroupSize)
	layer := gptq.NewLayer(out, in, groups)
	gr := gridOf(cfg)
	layer.Layout = gr.layout
	sf := make([]float32, groups*out) // float32 values of the scales
	if cfg.StaticGroups {
		for g := 0; g < groups; g++ {
			n, err := findParams(wt, out, g*gw, min((g+1)*gw, in), 0, out, gr, layer.Scales[g*out:], sf[g*out:], layer.Zeros[g*out:])
			res.ZeroShifted += n
			if err != nil {
				return nil, err
			}
		}
	}
	perm := f.perm
	if f.permutedRows {
		wt = permuteRows(wt, out, perm)
	}
	res.Damp, res.DampRaises = f.damp, f.raises
	ut := f.ut

	groupOf := func(j int) int {
		if cfg.StaticGroups {
			return perm[j] / gw
		}
		return j / gw
	}
	threads = max(1, min(threads, out/64))
	chunk := (out/threads + 7) / 8 * 8
	losses := make([]float64, threads)
	errs := make([]error, threads)
	// The negated errors −e of the current block, one row per column: the
	// updates are then sums of products (AxpyRows, MulAtB).
	eb := make([]float32, blockSize*out)
	hcol := make([][]float32, threads) // per thread: Hinv[i0:j, j]
	for t := range hcol {
		hcol[t] = make([]float32, innerBlock)
	}
	var shifted atomic.Int64
	var wg sync.WaitGroup
	for b0 := 0; b0 < in; b0 += blockSize {
		b1 := min(b0+blockSize, in)
		for i0 := b0; i0 < b1; i0 += innerBlock {
			i1 := min(i0+innerBlock, b1)
			cols := func(t, c0, c1 int) {
				for j := i0; j < i1; j++ {
					g := groupOf(j)
					if !cfg.StaticGroups && j%gw == 0 {
						n, err := findParams(wt, out, j, min(j+gw, in), c0, c1, gr, layer.Scales[g*out:], sf[g*out:], layer.Zeros[g*out:])
						shifted.Add(int64(n))
						if err != nil {
							errs[t] = err
							return
						}
					}
					d := ut[j*in+j]
					row := wt[j*out : (j+1)*out]
					e := eb[(j-b0)*out : (j-b0+1)*out]
					if j > i0 {
						// This column's updates from the earlier columns of
						// the inner block: Σ_i Hinv[i, j]·(−e_i).
						p := hcol[t][:j-i0]
						for i := range p {
							p[i] = ut[(i0+i)*in+j]
						}
						gemm.AxpyRows(row[c0:c1], p, eb[(i0-b0)*out+c0:], out)
					}
					codes := layer.Codes[perm[j]*out : (perm[j]+1)*out]
					s, z := sf[g*out:(g+1)*out], layer.Zeros[g*out:(g+1)*out]
					var loss float64
					for c := c0; c < c1; c++ {
						q := code(row[c], s[c], z[c], gr.maxq)
						codes[c] = q
						ec := (row[c] - s[c]*float32(int32(q)-int32(z[c]))) / d
						e[c] = -ec
						loss += float64(ec) * float64(ec)
					}
					losses[t] += loss / 2
				}
			}
			if threads == 1 {
				cols(0, 0, out)
			} else {
				for t := 0; t < threads; t++ {
					c0, c1 := t*chunk, min((t+1)*chunk, out)
					if c0 >= c1 {
						continue
					}
					wg.Add(1)
					go func() { defer wg.Done(); cols(t, c0, c1) }()
				}
				wg.Wait()
			}
			if err := errors.Join(errs...); err != nil {
				return nil, err
			}
			if i1 < b1 {
				propagate(wt, ut, eb[(i0-b0)*out:], out, in, i0, i1, b1)
			}
		}
		if b1 < in {
			propagate(wt, ut, eb, out, in, b0, b1, in)
		}
	}
	for _, l := range losses {
		res.Loss += l
	}
	if math.IsNaN(res.Loss) || math.IsInf(res.Loss, 0) {
		return nil, fmt.Errorf("GPTQ loss is %v: the weight updates overflowed", res.Loss)
	}
	if cfg.StaticGroups || !cfg.DescAct {
		layer.GIdx = gptq.GroupIndex(in, cfg.GroupSize, nil)
	} else {
		layer.GIdx = gptq.GroupIndex(in, cfg.GroupSize, perm)
	}
	res.Layer = layer
	res.ZeroShifted += int(shifted.Load())
	return res, nil
}

// propagate applies the negated errors ne of columns [k0, k1) (rows of ne,
// stride out) to the columns [k1, r1) of wt: wt[r, :] += Σ_k Hinv[k, r]·
// ne[k, :], one product reading both factors in place (Hinv's rows k0…k1−1
// from column k1 on, and ne).
func propagate(wt, ut, ne []float32, out, in, k0, k1, r1 int) {
	gemm.MulAtB(wt[k1*out:], out, ut[k0*in+k1:], in, ne, out, r1-k1, out, k1-k0, true)
}

// inverseFactor dampens H (in place: H_ii = H_ii + λ·mean(diag H)) and
// returns the upper Cholesky factor of its inverse, raising λ ×10 (at most
// maxDampRaises times) while the factorization fails.
func inverseFactor(H []float64, n int, damp float64) (u []float32, lam float64, raises int, err error) {
	diag := make([]float64, n)
	var mean float64
	for i := range diag {
		diag[i] = H[i*n+i]
		mean += diag[i]
	}
	mean /= float64(n)
	lam = damp
	for {
		for i, d := range diag {
			H[i*n+i] = d + lam*mean
		}
		u, err = upperInverseFactor(H, n)
		if err == nil {
			return u, lam, raises, nil
		}
		var npd *linalg.NotPositiveDefiniteError
		if !errors.As(err, &npd) || raises == maxDampRaises {
			return nil, lam, raises, fmt.Errorf("Hessian is not positive definite even with damping %g: %w", lam, err)
		}
		lam *= 10
		raises++
	}
}

// upperInverseFactor returns the upper Cholesky factor U of H⁻¹ (H⁻¹ =
// Uᵀ·U) in float32. It is computed in float32 (linalg.CholeskyInverseUpper32,
// as the reference factors on a GPU, at twice the float64 rate); only when
// float32 finds H not positive definite is it computed again in float64,
// whose error, if any, the caller answers by raising the damping.
func upperInverseFactor(H []float64, n int) ([]float32, error) {
	u := make([]float32, n*n)
	for i := 0; i < n; i++ { // only the upper triangle is read
		for k, x := range H[i*n+i : (i+1)*n] {
			u[i*n+i+k] = float32(x)
		}
	}
	err := linalg.CholeskyInverseUpper32(u, n)
	var npd *linalg.NotPositiveDefiniteError
	if !errors.As(err, &npd) {
		return u, err
	}
	u64, err := linalg.CholeskyInverseUpper(H, n)
	if err != nil {
		return nil, err
	}
	for i, v := range u64 {
		u[i] = float32(v)
	}
	return u, nil
}

// transpose returns the [cols, rows] transpose of the row-major m [rows, cols],
// in tiles of 16×16 (read column by column from L1, written a cache line
// at a time).
func transpose(m []float32, rows, cols int) []float32 {
	t := make([]float32, rows*cols)
	const tile = 16
	for r0 := 0; r0 < rows; r0 += tile {
		r1 := min(r0+tile, rows)
		for c0 := 0; c0 < cols; c0 += tile {
			c1 := min(c0+tile, cols)
			for c := c0; c < c1; c++ {
				dst := t[c*rows+r0 : c*rows+r1]
				src := m[r0*cols+c:]
				for i := range dst {
					dst[i] = src[i*cols]
				}
			}
		}
	}
	return t
}

// permuteSym returns P·H·Pᵀ: entry [a, b] = H[perm[a], perm[b]].
func permuteSym(h []float64, n int, perm []int) []float64 {
	p := make([]float64, n*n)
	for a, pa := range perm {
		src := h[pa*n : (pa+1)*n]
		dst := p[a*n : (a+1)*n]
		for b, pb := range perm {
			dst[b] = src[pb]
		}
	}
	return p
}

// permuteRows returns the rows of m [len(perm), w] in the order perm.
func permuteRows(m []float32, w int, perm []int) []float32 {
	p := make([]float32, len(m))
	for a, pa := range perm {
		copy(p[a*w:(a+1)*w], m[pa*w:(pa+1)*w])
	}
	return p
}

func nonFinite32(v []float32) int {
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return i
		}
	}
	return -1
}

func nonFinite64(v []float64) int {
	for i, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return i
		}
	}
	return -1
}
