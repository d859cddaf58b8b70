package gemm

import (
	"sync"

	"github.com/moeforge/moeforge/internal/half"
)

// dotTileFunc computes the vector partial sums of a tile of ra rows of A
// (row stride lda) against rb rows of B (row stride ldb) over k8 steps of 8;
// out[(rb·r+j)·8 : +8] belongs to A row r and B row j.
type dotTileFunc[T float32 | uint16] func(a *float32, lda int, b *T, ldb, k8 int, out *[96]float32)

// dot6x2Func is the 6×2 tile (kept by name: the first dot-form kernel).
type dot6x2Func[T float32 | uint16] = dotTileFunc[T]

// dotTile is one dot-form kernel and its shape.
type dotTile[T float32 | uint16] struct {
	ra, rb int
	f      dotTileFunc[T]
}

// dotTiles are a kernel's dot-form tiles for one type of B: 6×2, and where
// present 4×3 and 2×5.
type dotTiles[T float32 | uint16] struct{ t6x2, t4x3, t2x5 dotTileFunc[T] }

// pick returns the tile for m rows of A that wastes the fewest padded rows:
// 2×5 for 2 rows, 6×2 for 3, 5 and 6, 4×3 otherwise (4, 7, 8 and 9–16).
func (d dotTiles[T]) pick(m int) dotTile[T] {
	switch {
	case m <= 2 && d.t2x5 != nil:
		return dotTile[T]{2, 5, d.t2x5}
	case (m == 3 || m == 5 || m == 6 || d.t4x3 == nil) && d.t6x2 != nil:
		return dotTile[T]{6, 2, d.t6x2}
	case d.t4x3 != nil:
		return dotTile[T]{4, 3, d.t4x3}
	}
	return dotTile[T]{}
}

// smallProduct computes C (+)= A·Bᵀ for a few rows of A (2 ≤ m ≤
// kernel.smallM) without packing: B (float32, bfloat16 or float16) is
// streamed once, a few rows at a time, each group against all the rows of A
// held in cache. It reports whether it handled the product. (Measured on
// AVX2 with a bf16 1408×2048 weight: 1.6× the packed product at m = 2 and
// 4. On the 256×256 bf16 weights of a small model, same process: 3.5× at
// m = 2 (2×5 tile), 1.5× at 4, 1.4× at 6, even at 8 (4×3), behind it from
// 12 on, hence smallM = 8 on AVX2.)
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
		return smallRun(c, a, bm.Data, m, n, kk, acc, kern.tilesF32().pick(m), func(x float32) float32 { return x })
	case BF16:
		return smallRun(c, a, bm.Data, m, n, kk, acc, kern.tilesBF16().pick(m), half.BF16ToF32)
	case F16:
		return smallRun(c, a, bm.Data, m, n, kk, acc, kern.tilesF16().pick(m), half.F16ToF32)
	}
	return false
}

func smallRun[T float32 | uint16](c, a []float32, b []T, m, n, kk int, acc bool, tile dotTile[T], widen func(T) float32) bool {
	if tile.f == nil {
		return false
	}
	_ = b[n*kk-1]
	ra, rb := tile.ra, tile.rb
	// A, padded with zero rows to a multiple of ra.
	mp := roundUp(m, ra)
	ap := make([]float32, mp*kk)
	copy(ap, a[:m*kk])
	groups := ceilDiv(n, rb)
	// The last group of B, when n is not a multiple of rb, is read from a
	// copy padded with zero rows.
	var bt []T
	if tail := n % rb; tail != 0 {
		bt = make([]T, rb*kk)
		copy(bt, b[(n-tail)*kk:])
	}
	workers := min(Threads(), groups)
	if m*n*kk < 1<<18 {
		workers = 1
	}
	k8 := kk / 8
	work := func(g0, g1 int) {
		var out [96]float32
		for g := g0; g < g1; g++ {
			j0 := g * rb
			bs := b[j0*kk:]
			if j0+rb > n {
				bs = bt
			}
			rows := min(rb, n-j0)
			for i0 := 0; i0 < mp; i0 += ra {
				tile.f(&ap[i0*kk], kk, &bs[0], kk, k8, &out)
				for r := 0; r < ra && i0+r < m; r++ {
					arow := ap[(i0+r)*kk : (i0+r+1)*kk]
					for jj := 0; jj < rows; jj++ {
						v := out[(rb*r+jj)*8 : (rb*r+jj)*8+8]
						s := ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]))
						brow := b[(j0+jj)*kk : (j0+jj+1)*kk]
						for p := 8 * k8; p < kk; p++ {
							s += arow[p] * widen(brow[p])
						}
						if acc {
							c[(i0+r)*n+j0+jj] += s
						} else {
							c[(i0+r)*n+j0+jj] = s
						}
					}
				}
			}
		}
	}
	if workers <= 1 {
		work(0, groups)
		return true
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		g0, g1 := w*groups/workers, (w+1)*groups/workers
		wg.Add(1)
		go func() { defer wg.Done(); work(g0, g1) }()
	}
	wg.Wait()
	return true
}
