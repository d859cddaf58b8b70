package gemm

import (
	"sync"
	"sync/atomic"
)

// syrkChunk is how many rows of X are summed in float32 before the partial
// product is added into the float64 H.
const syrkChunk = 2048

// SyrkAdd accumulates H[k, k] += Xᵀ·X for X [n, k] (row-major), in float64.
// Both triangles of H are written.
//
// Only the tiles of the upper triangle are computed (with the SIMD kernel,
// packing X directly since its columns are the rows of both factors); each
// tile is summed in float32 over at most syrkChunk rows of X at a time, added
// into H and mirrored into the lower triangle.
func SyrkAdd(h []float64, x []float32, n, k int) {
	if n == 0 || k == 0 {
		return
	}
	_ = h[k*k-1]
	_ = x[n*k-1]
	kern := active.Load()
	// Square tiles of H whose side is a multiple of both register dimensions.
	side := max(kern.mc, 192)
	side = roundUp(side, kern.nr)
	for side%kern.mr != 0 {
		side += kern.nr
	}
	tk := ceilDiv(k, side)
	type pair struct{ ti, tj int }
	var tiles []pair
	for ti := 0; ti < tk; ti++ {
		for tj := ti; tj < tk; tj++ {
			tiles = append(tiles, pair{ti, tj})
		}
	}
	workers := min(Threads(), len(tiles))
	var next atomic.Int32
	var wg sync.WaitGroup
	work := func() {
		ws := getWorkspace(kern, side)
		ws.ct = grow(ws.ct, side*side)
		for {
			t := int(next.Add(1)) - 1
			if t >= len(tiles) {
				break
			}
			i0, j0 := tiles[t].ti*side, tiles[t].tj*side
			i1, j1 := min(i0+side, k), min(j0+side, k)
			w := j1 - j0
			ct := ws.ct[:(i1-i0)*w]
			for r0 := 0; r0 < n; r0 += syrkChunk {
				r1 := min(r0+syrkChunk, n)
				rows := colsF32{x[r0*k:], k}
				tri := triNone
				if i0 == j0 {
					tri = triUpper
				}
				ws.tile(kern, ct, w, rows, rows, i0, i1, j0, j1, r1-r0, false, tri)
				addTile(h, k, ct, w, i0, i1, j0, j1)
			}
		}
		workspaces.Put(ws)
	}
	if workers <= 1 {
		work()
		return
	}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() { defer wg.Done(); work() }()
	}
	wg.Wait()
}

// addTile adds the float32 tile ct (rows [i0, i1) × columns [j0, j1) of XᵀX,
// row stride w) into H, upper part and its mirror image: on a diagonal tile
// the entries with j ≥ i, elsewhere (i1 ≤ j0) all of them. The mirror is
// written row by row of H, reading the tile by columns.
func addTile(h []float64, k int, ct []float32, w, i0, i1, j0, j1 int) {
	if i0 == j0 {
		for i := i0; i < i1; i++ {
			src := ct[(i-i0)*w+(i-j0) : (i-i0)*w+(j1-j0)]
			hu := h[i*k+i : i*k+j1]
			for j, v := range src {
				hu[j] += float64(v)
			}
			for j, v := range src[1:] {
				h[(i+1+j)*k+i] += float64(v)
			}
		}
		return
	}
	for i := i0; i < i1; i++ {
		src := ct[(i-i0)*w : (i-i0)*w+(j1-j0)]
		hu := h[i*k+j0 : i*k+j1]
		for j, v := range src {
			hu[j] += float64(v)
		}
	}
	// Mirror, 8 rows of H at a time so that both H and the tile are read in
	// runs.
	for jb := j0; jb < j1; jb += 8 {
		je := min(jb+8, j1)
		for i := i0; i < i1; i++ {
			for jj, v := range ct[(i-i0)*w+jb-j0 : (i-i0)*w+je-j0] {
				h[(jb+jj)*k+i] += float64(v)
			}
		}
	}
}
