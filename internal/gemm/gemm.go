package gemm

import (
	"runtime"
	"sync"
	"sync/atomic"
)

var threads atomic.Int32

// SetThreads caps the number of goroutines a product uses (0 = GOMAXPROCS).
func SetThreads(n int) { threads.Store(int32(n)) }

// Threads returns the number of goroutines a product may use.
func Threads() int {
	if n := int(threads.Load()); n > 0 {
		return n
	}
	return runtime.GOMAXPROCS(0)
}

// MulT computes C[m, n] = A[m, k] · Bᵀ, or C += A·Bᵀ when accumulate is set.
// A is row-major with stride k, C row-major with stride n = b.Rows().
//
// B is widened (or dequantized) to float32 panel by panel inside the product;
// a single row of A (m = 1) takes a matrix-vector path that reads B once.
func MulT(c, a []float32, b Matrix, m int, accumulate bool) {
	n, k := b.Rows(), b.Cols()
	if m == 0 || n == 0 {
		return
	}
	_ = c[m*n-1]
	if k == 0 {
		if !accumulate {
			clear(c[:m*n])
		}
		return
	}
	_ = a[m*k-1]
	switch p := b.(type) { // the fast paths switch on value types
	case *F32:
		b = *p
	case *BF16:
		b = *p
	case *F16:
		b = *p
	case *Int4:
		b = *p
	}
	kern := active.Load()
	if m == 1 && gemv(kern, c[:n], a[:k], b, accumulate) {
		return
	}
	if smallProduct(kern, c, a, b, m, accumulate) {
		return
	}
	product(kern, c, n, rowsF32{a, k}, operandOf(b), m, n, k, accumulate)
}

// MulTF32 is MulT for plain float32 slices: C[m, n] (+)= A[m, k] · B[n, k]ᵀ.
func MulTF32(c, a, b []float32, m, n, k int, accumulate bool) {
	MulT(c, a, F32{Data: b, N: n, K: k}, m, accumulate)
}

// workspace holds one worker's packing buffers.
type workspace struct {
	ap, bp, tmp, edge []float32
	sc, zsc           []float32
	zs                []int32
	ct                []float32 // tile of C (SyrkAdd)
}

var workspaces sync.Pool

func getWorkspace(k *kernel, tileCols int) *workspace {
	ws, _ := workspaces.Get().(*workspace)
	if ws == nil {
		ws = new(workspace)
	}
	ws.ap = growSlack(ws.ap, k.mc*k.kc)
	ws.bp = growSlack(ws.bp, roundUp(tileCols, k.nr)*k.kc)
	ws.tmp = grow(ws.tmp, k.nr*k.kc)
	ws.edge = grow(ws.edge, k.mr*k.nr)
	return ws
}

// int4Tables returns the scales (as float32) and true zeros (stored nibble
// + 1 in the v1 layout, the nibble itself with V2) of every group for
// outputs [r0, r1), laid out [group][r1−r0].
func (ws *workspace) int4Tables(m *Int4, r0, r1 int) ([]float32, []int32) {
	groups := len(m.Scales) / m.N
	cols := r1 - r0
	ws.sc = grow(ws.sc, groups*cols)
	if cap(ws.zs) < groups*cols {
		ws.zs = make([]int32, groups*cols)
	}
	sc, zs := ws.sc, ws.zs[:groups*cols]
	widen := active.Load().widenF16
	off := int32(1)
	if m.V2 {
		off = 0
	}
	for g := 0; g < groups; g++ {
		widen(sc[g*cols:(g+1)*cols], m.Scales[g*m.N+r0:g*m.N+r1])
		zrow := m.QZeros[g*(m.N/8):]
		z := zs[g*cols : (g+1)*cols]
		c := 0
		for ; c < cols && (r0+c)%8 != 0; c++ {
			j := r0 + c
			z[c] = int32(uint32(zrow[j/8])>>(uint(j%8)*4)&15) + off
		}
		for ; c+8 <= cols; c += 8 {
			w := uint32(zrow[(r0+c)/8])
			zz := z[c : c+8 : c+8]
			zz[0] = int32(w&15) + off
			zz[1] = int32(w>>4&15) + off
			zz[2] = int32(w>>8&15) + off
			zz[3] = int32(w>>12&15) + off
			zz[4] = int32(w>>16&15) + off
			zz[5] = int32(w>>20&15) + off
			zz[6] = int32(w>>24&15) + off
			zz[7] = int32(w>>28) + off
		}
		for ; c < cols; c++ {
			j := r0 + c
			z[c] = int32(uint32(zrow[j/8])>>(uint(j%8)*4)&15) + off
		}
	}
	return sc, zs
}

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

// growSlack is grow with 16 floats of spare capacity (see kernel.packRows).
func growSlack(s []float32, n int) []float32 {
	if cap(s) < n+16 {
		return make([]float32, n, n+16)
	}
	return s[:n]
}

func roundUp(x, m int) int { return (x + m - 1) / m * m }

func ceilDiv(x, m int) int { return (x + m - 1) / m }

// tile computes C[i0:i1, j0:j1] (+)= A[i0:i1, :]·B[j0:j1, :]ᵀ over depth
// [0, depth). c holds element (i0, j0) at c[0] with row stride ldc. With
// tri = triUpper, register tiles entirely below the diagonal (j < i) are
// skipped and their part of c is left as it was; with triLower, those
// entirely above it (j > i).
func (ws *workspace) tile(k *kernel, c []float32, ldc int, a, b operand, i0, i1, j0, j1, depth int, acc bool, tri triangle) {
	mr, nr := k.mr, k.nr
	for p0 := 0; p0 < depth; p0 += k.kc {
		p1 := min(p0+k.kc, depth)
		kc := p1 - p0
		accum := acc || p0 > 0
		b.pack(k, ws, ws.bp, j0, j1, p0, p1, nr)
		for ic := i0; ic < i1; ic += k.mc {
			ie := min(ic+k.mc, i1)
			a.pack(k, ws, ws.ap, ic, ie, p0, p1, mr)
			for jr := j0; jr < j1; jr += nr {
				bpanel := &ws.bp[(jr-j0)*kc]
				cols := min(nr, j1-jr)
				for ir := ic; ir < ie; ir += mr {
					apanel := &ws.ap[(ir-ic)*kc]
					rows := min(mr, ie-ir)
					if tri == triUpper && jr+cols <= ir || tri == triLower && ir+rows <= jr {
						continue
					}
					off := (ir-i0)*ldc + jr - j0
					if rows == mr && cols == nr {
						k.micro(kc, apanel, bpanel, &c[off], ldc, accum)
						continue
					}
					k.micro(kc, apanel, bpanel, &ws.edge[0], nr, false)
					for i := 0; i < rows; i++ {
						src := ws.edge[i*nr : i*nr+cols]
						dst := c[off+i*ldc : off+i*ldc+cols]
						if accum {
							for j, v := range src {
								dst[j] += v
							}
						} else {
							copy(dst, src)
						}
					}
				}
			}
		}
	}
}

// triangle selects the register tiles of C that tile computes.
type triangle int

const (
	triNone  triangle = iota // all of them
	triUpper                 // those meeting the upper triangle (j ≥ i)
	triLower                 // those meeting the lower triangle (j ≤ i)
)

// grid splits C[m, n] into tm × tn tiles of rows × cols (multiples of the
// register tile) so that the workers have enough, evenly sized work.
func grid(k *kernel, m, n, workers int) (rows, cols int) {
	tm, tn := 1, ceilDiv(n, k.nc)
	canN := func(t int) bool { return ceilDiv(n, t) >= 2*k.nr }
	canM := func(t int) bool { return ceilDiv(m, t) >= 2*k.mr }
	for tm*tn < workers {
		switch {
		case canN(tn + 1):
			tn++
		case canM(tm + 1):
			tm++
		default:
			goto done
		}
	}
	// With few tiles, make their number a multiple of the workers.
	if t := tm * tn; workers > 1 && t < 4*workers && t%workers != 0 {
		want := roundUp(t, workers)
		if canN(want / tm) {
			tn = want / tm
		} else if canM(want / tn) {
			tm = want / tn
		}
	}
done:
	return roundUp(ceilDiv(m, tm), k.mr), roundUp(ceilDiv(n, tn), k.nr)
}

// product computes C[m, n] (+)= A·Bᵀ over depth kk with the given kernel, C
// row-major with stride ldc, spreading tiles of C over Threads() goroutines.
func product(k *kernel, c []float32, ldc int, a, b operand, m, n, kk int, acc bool) {
	workers := Threads()
	if 2*m*n*kk < 1<<18 {
		workers = 1
	}
	rows, cols := grid(k, m, n, workers)
	tm, tn := ceilDiv(m, rows), ceilDiv(n, cols)
	tiles := tm * tn
	workers = min(workers, tiles)
	run := func(ws *workspace, t int) {
		ti, tj := t/tn, t%tn
		i0, j0 := ti*rows, tj*cols
		i1, j1 := min(i0+rows, m), min(j0+cols, n)
		ws.tile(k, c[i0*ldc+j0:], ldc, a, b, i0, i1, j0, j1, kk, acc, triNone)
	}
	runTiles(k, cols, tiles, workers, run)
}

// runTiles calls run for tiles 0…tiles-1, on workers goroutines that take
// the next tile as they finish one (each with its own workspace for panels
// up to wsCols wide), or on this goroutine when workers ≤ 1.
func runTiles(k *kernel, wsCols, tiles, workers int, run func(ws *workspace, t int)) {
	if workers <= 1 {
		ws := getWorkspace(k, wsCols)
		for t := 0; t < tiles; t++ {
			run(ws, t)
		}
		workspaces.Put(ws)
		return
	}
	var next atomic.Int32
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws := getWorkspace(k, wsCols)
			for {
				t := int(next.Add(1)) - 1
				if t >= tiles {
					break
				}
				run(ws, t)
			}
			workspaces.Put(ws)
		}()
	}
	wg.Wait()
}

// Dot returns Σ a[i]·b[i] over len(a) elements with the active
// implementation's kernel (SIMD where available).
func Dot(a, b []float32) float32 {
	if len(a) == 0 {
		return 0
	}
	return active.Load().dot(a, b[:len(a)])
}
