package gemm

import (
	"sync"

	"github.com/moeforge/moeforge/internal/half"
)

// dot6x2Func computes the 12 vector partial sums of 6 rows of A (row stride
// lda) against 2 rows of B (the second ldb elements after the first) over k8
// steps of 8; out[(2r+j)·8 : +8] belongs to A row r and B row j.
type dot6x2Func[T float32 | uint16] func(a *float32, lda int, b *T, ldb, k8 int, out *[96]float32)

// smallProduct computes C (+)= A·Bᵀ for a few rows of A (2 ≤ m ≤
// kernel.smallM) without packing: B (float32, bfloat16 or float16) is
// streamed once, row pair by row pair, each pair against the rows of A held
// in cache. It reports whether it handled the product. (Measured on AVX2 with
// a bf16 1408×2048 weight: 1.6× the packed product at m = 2 and 4, even at
// 8, slower from 16 on, where packing pays off.)
func smallProduct(kern *kernel, c, a []float32, b Matrix, m int, acc bool) bool {
	if kern.smallM == 0 || m > kern.smallM || m < 2 {
		return false
	}
	n, kk := b.Rows(), b.Cols()
	if kk < 8 {
		return false
	}
	switch bm := b.(type) {
	case F32:
		smallRun(kern, c, a, bm.Data, m, n, kk, acc, kern.dot6x2F32, func(x float32) float32 { return x })
	case BF16:
		smallRun(kern, c, a, bm.Data, m, n, kk, acc, kern.dot6x2BF16, half.BF16ToF32)
	case F16:
		smallRun(kern, c, a, bm.Data, m, n, kk, acc, kern.dot6x2F16, half.F16ToF32)
	default:
		return false
	}
	return true
}

func smallRun[T float32 | uint16](kern *kernel, c, a []float32, b []T, m, n, kk int, acc bool, dot dot6x2Func[T], widen func(T) float32) {
	_ = b[n*kk-1]
	// A, padded with zero rows to a multiple of 6.
	m6 := roundUp(m, 6)
	ap := make([]float32, m6*kk)
	copy(ap, a[:m*kk])
	pairs := ceilDiv(n, 2)
	workers := min(Threads(), pairs)
	if m*n*kk < 1<<17 {
		workers = 1
	}
	k8 := kk / 8
	work := func(p0, p1 int) {
		var out [96]float32
		for pr := p0; pr < p1; pr++ {
			j0 := 2 * pr
			second := min(j0+1, n-1) - j0 // 0 when n is odd and this is the last row
			for g := 0; g < m6; g += 6 {
				dot(&ap[g*kk], kk, &b[j0*kk], second*kk, k8, &out)
				for r := 0; r < 6 && g+r < m; r++ {
					arow := ap[(g+r)*kk : (g+r+1)*kk]
					for jj := 0; jj <= second; jj++ {
						v := out[(2*r+jj)*8 : (2*r+jj)*8+8]
						s := ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]))
						brow := b[(j0+jj)*kk : (j0+jj+1)*kk]
						for p := 8 * k8; p < kk; p++ {
							s += arow[p] * widen(brow[p])
						}
						if acc {
							c[(g+r)*n+j0+jj] += s
						} else {
							c[(g+r)*n+j0+jj] = s
						}
					}
				}
			}
		}
	}
	if workers <= 1 {
		work(0, pairs)
		return
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		p0, p1 := w*pairs/workers, (w+1)*pairs/workers
		wg.Add(1)
		go func() { defer wg.Done(); work(p0, p1) }()
	}
	wg.Wait()
}
