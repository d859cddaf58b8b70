package linalg

// The amd64 kernels (kernel_amd64.s and their declarations in
// kernel_amd64_decl.go) are written by the avo program in internal/asm.
//go:generate go run -C ../asm . -pkg linalg

import (
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/moeforge/moeforge/internal/gemm"
	"github.com/moeforge/moeforge/internal/gemm/impl"
	"github.com/moeforge/moeforge/internal/gemm/panel"
)

// kernel is a float64 micro-kernel with its register tile and blocking.
type kernel struct {
	name   string
	mr, nr int // register tile of C
	kc     int // depth of a packed block
	mc     int // rows of A packed at once, a multiple of mr
	// micro adds alpha · Σ_p a[p]ᵀ·b[p] to C[mr, nr] (row stride ldc) for
	// kc ≥ 1 packed steps.
	micro func(kc int, a, b, c *float64, ldc int, alpha float64)
	// packRows packs a full panel: panel[p·w+i] = src[i·ld+p] for i < w,
	// p < kc; it may write up to 4 elements past the panel's length.
	packRows func(panel, src []float64, ld, w, kc int)
}

var goKernel = &kernel{name: "go", mr: 2, nr: 4, kc: 256, mc: 128, micro: micro2x4, packRows: panel.PackGo[float64]}

var kernels = append(archKernels(), goKernel)

// active is the kernel in use.
var active = impl.New("linalg", kernels, func(k *kernel) string { return k.name })

// Impls lists the float64 kernels available here, best first ("avx2", "go").
func Impls() []string { return active.Names() }

// SetImpl selects the float64 kernel by name; "" picks the best. Meant for
// tests and benchmarks.
func SetImpl(name string) error { return active.Set(name) }

// micro2x4 is the portable micro-kernel (see impl.Tile2x4).
func micro2x4(kc int, a, b, c *float64, ldc int, alpha float64) {
	t := impl.Tile2x4(unsafe.Slice(a, 2*kc), unsafe.Slice(b, 4*kc))
	C := unsafe.Slice(c, ldc+4)
	for i, r := range [2][]float64{C[0:4:4], C[ldc : ldc+4 : ldc+4]} {
		r[0] += alpha * t[i][0]
		r[1] += alpha * t[i][1]
		r[2] += alpha * t[i][2]
		r[3] += alpha * t[i][3]
	}
}

// mat is a factor of a product seen as rows × depth: element (r, p) is
// data[r·ld+p], or data[p·ld+r] when trans is set.
type mat struct {
	data  []float64
	ld    int
	trans bool
}

// pack writes rows [r0, r1) × depth [p0, p1) as panels of w rows (zero past
// r1): panel q at dst[q·w·(p1−p0):] holds w values per depth step.
func (o mat) pack(k *kernel, dst []float64, r0, r1, p0, p1, w int) {
	kc := p1 - p0
	for q := r0; q < r1; q += w {
		pl := dst[(q-r0)*kc : (q-r0+w)*kc]
		rows := min(w, r1-q)
		if o.trans {
			for p := 0; p < kc; p++ {
				d := pl[p*w : p*w+w]
				copy(d, o.data[(p0+p)*o.ld+q:(p0+p)*o.ld+q+rows])
				clear(d[rows:])
			}
			continue
		}
		if rows == w {
			k.packRows(pl, o.data[q*o.ld+p0:], o.ld, w, kc)
			continue
		}
		for i := 0; i < rows; i++ {
			panel.Scatter(pl, o.data[(q+i)*o.ld+p0:(q+i)*o.ld+p1], i, w)
		}
		if rows < w {
			for p := 0; p < kc; p++ {
				clear(pl[p*w+rows : p*w+w])
			}
		}
	}
}

// product describes C[m, n] += alpha · Σ_p A(i, p)·B(j, p) over a depth range.
type product struct {
	c      []float64
	ldc    int
	a, b   mat
	m, n   int
	alpha  float64
	p0, p1 int // depth range
	// lower skips tiles of C that lie entirely above the diagonal (j > i).
	lower bool
	// depth, when set, narrows the depth range for the tile rows [i0, i1) ×
	// columns [j0, j1) (to skip known zeros of triangular factors).
	depth func(i0, i1, j0, j1 int) (p0, p1 int)
}

// tileCols is the widest block of C whose B panel a worker packs at once.
const tileCols = 256

type workspace struct{ ap, bp, edge []float64 }

var workspaces sync.Pool

func (pr *product) run() {
	if pr.m == 0 || pr.n == 0 || pr.p1 <= pr.p0 {
		return
	}
	k := active.Load()
	workers := gemm.Threads()
	if float64(pr.m)*float64(pr.n)*float64(pr.p1-pr.p0) < 1<<18 {
		workers = 1
	}
	// Tiles: columns in blocks of tileCols; rows split so that there are a
	// few tiles per worker (triangular products are uneven).
	tn := ceilDiv(pr.n, tileCols)
	tm := 1
	if workers > 1 {
		tm = max(1, min(ceilDiv(4*workers, tn), pr.m/(4*k.mr)))
	}
	rows := roundUp(ceilDiv(pr.m, tm), k.mr)
	cols := roundUp(ceilDiv(pr.n, tn), k.nr)
	type tile struct{ i0, i1, j0, j1 int }
	var tiles []tile
	for i0 := 0; i0 < pr.m; i0 += rows {
		for j0 := 0; j0 < pr.n; j0 += cols {
			t := tile{i0, min(i0+rows, pr.m), j0, min(j0+cols, pr.n)}
			if pr.lower && t.j0 >= t.i1 {
				continue
			}
			tiles = append(tiles, t)
		}
	}
	workers = min(workers, len(tiles))
	var next atomic.Int32
	work := func() {
		ws, _ := workspaces.Get().(*workspace)
		if ws == nil {
			ws = new(workspace)
		}
		ws.ap = grow(ws.ap, k.mc*k.kc)
		ws.bp = grow(ws.bp, cols*k.kc)
		ws.edge = grow(ws.edge, k.mr*k.nr)
		for {
			t := int(next.Add(1)) - 1
			if t >= len(tiles) {
				break
			}
			tl := tiles[t]
			pr.tile(k, ws, tl.i0, tl.i1, tl.j0, tl.j1)
		}
		workspaces.Put(ws)
	}
	if workers <= 1 {
		work()
		return
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() { defer wg.Done(); work() }()
	}
	wg.Wait()
}

func grow(s []float64, n int) []float64 {
	if cap(s) < n+8 {
		return make([]float64, n, n+8) // slack for 4-wide packing stores
	}
	return s[:n]
}

func roundUp(x, m int) int { return (x + m - 1) / m * m }

// tile computes C[i0:i1, j0:j1]. The B panel is packed once per depth block
// and shared by all row blocks; each row block narrows the depth to its own
// range (pr.depth) and skips register tiles above the diagonal (pr.lower).
func (pr *product) tile(k *kernel, ws *workspace, i0, i1, j0, j1 int) {
	mr, nr := k.mr, k.nr
	d0, d1 := pr.p0, pr.p1
	if pr.depth != nil {
		lo, hi := pr.p1, pr.p0
		for ic := i0; ic < i1; ic += k.mc {
			a, b := pr.depth(ic, min(ic+k.mc, i1), j0, j1)
			lo, hi = min(lo, a), max(hi, b)
		}
		d0, d1 = max(d0, lo), min(d1, hi)
	}
	for p0 := d0; p0 < d1; p0 += k.kc {
		p1 := min(p0+k.kc, d1)
		kcb := p1 - p0
		pr.b.pack(k, ws.bp, j0, j1, p0, p1, nr)
		for ic := i0; ic < i1; ic += k.mc {
			ie := min(ic+k.mc, i1)
			if pr.lower && j0 >= ie {
				continue
			}
			q0, q1 := p0, p1
			if pr.depth != nil {
				a, b := pr.depth(ic, ie, j0, j1)
				q0, q1 = max(q0, a), min(q1, b)
				if q1 <= q0 {
					continue
				}
			}
			kc := q1 - q0
			pr.a.pack(k, ws.ap, ic, ie, q0, q1, mr)
			for jr := j0; jr < j1; jr += nr {
				bpanel := &ws.bp[(jr-j0)*kcb+(q0-p0)*nr]
				cols := min(nr, j1-jr)
				for ir := ic; ir < ie; ir += mr {
					rows := min(mr, ie-ir)
					if pr.lower && jr >= ir+rows {
						continue
					}
					apanel := &ws.ap[(ir-ic)*kc]
					off := ir*pr.ldc + jr
					if rows == mr && cols == nr {
						k.micro(kc, apanel, bpanel, &pr.c[off], pr.ldc, pr.alpha)
						continue
					}
					clear(ws.edge)
					k.micro(kc, apanel, bpanel, &ws.edge[0], nr, pr.alpha)
					for i := 0; i < rows; i++ {
						dst := pr.c[off+i*pr.ldc : off+i*pr.ldc+cols]
						for j, v := range ws.edge[i*nr : i*nr+cols] {
							dst[j] += v
						}
					}
				}
			}
		}
	}
}

func ceilDiv(x, m int) int { return (x + m - 1) / m }

// MulAdd computes C[m, n] += alpha · A[m, k] · B[n, k]ᵀ for row-major
// operands with the given leading dimensions (A, B, C row strides).
func MulAdd(c []float64, ldc int, a []float64, lda int, b []float64, ldb int, m, n, k int, alpha float64) {
	pr := product{c: c, ldc: ldc, a: mat{a, lda, false}, b: mat{b, ldb, false}, m: m, n: n, alpha: alpha, p1: k}
	pr.run()
}
