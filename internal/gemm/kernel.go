package gemm

// The amd64 kernels (kernel_amd64.s and their declarations in
// kernel_amd64_decl.go) are written by the avo program in internal/asm.
//go:generate go run -C ../asm . -pkg gemm

import (
	"fmt"
	"math"
	"os"
	"unsafe"

	"github.com/moeforge/moeforge/internal/gemm/impl"
	"github.com/moeforge/moeforge/internal/gemm/panel"
	"github.com/moeforge/moeforge/internal/half"
)

// microFunc computes one register tile of C: C[mr, nr] = Σ_p a[p]ᵀ·b[p] for
// kc steps of packed A (mr floats a step) and packed B (nr floats a step),
// adding into C instead when acc is set. C has row stride ldc floats.
// kc ≥ 1 and the whole mr × nr tile lies inside C.
type microFunc func(kc int, a, b, c *float32, ldc int, acc bool)

// kernel is one implementation of the products: a micro-kernel with its
// register tile and cache blocking, and the widening loops used by packing.
type kernel struct {
	name   string
	mr, nr int // register tile of C
	kc     int // depth of a packed block (B micro-panel kc×nr stays in L1)
	mc     int // rows of A packed at once (mc×kc stays in L2), multiple of mr
	nc     int // widest tile of C a worker packs B for, multiple of nr
	micro  microFunc
	// widenBF16/widenF16 convert len(src) elements into dst.
	widenBF16 func(dst []float32, src []uint16)
	widenF16  func(dst []float32, src []uint16)
	// dot returns Σ a[i]·b[i] over len(a) elements (len(b) ≥ len(a)).
	dot func(a, b []float32) float32
	// int4Rows is the inner loop of the int4 matrix-vector product.
	int4Rows func(y, a []float32, qw []int32, n, q0 int, gidx []int32, sc []float32, zs []int32, cols int)
	// int4Sorted is int4Rows for matrices whose 8 inputs of every QWeight word
	// share a group (g_idx without act-order); zsc = scale·zero per group and
	// output. nil: use int4Rows.
	int4Sorted func(y []float32, v *int4Vec, q0 int, sc []float32, zs []int32, zsc []float32, cols int)
	// dotBF16 returns Σ a[i]·widen(b[i]) over len(a) elements.
	dotBF16 func(a []float32, b []uint16) float32
	// int4Panel dequantizes outputs [q, q+rows) × inputs [p0, p1) of m into
	// d[(p−p0)·w + c], c < rows, with per-group tables sc, zs of row stride
	// ldt whose column t0 is output q (see int4Op).
	int4Panel func(d []float32, w int, m *Int4, q, rows int, sc []float32, zs []int32, ldt, t0, p0, p1 int)
	// packRows packs a full panel: panel[p·w+i] = src[i·ld+p] for i < w,
	// p < kc. The panel slice may be written up to 8 floats past its length
	// (within its capacity; packing buffers have that slack).
	packRows func(panel, src []float32, ld, w, kc int)
	// packBF16 and packF16 are packRows for 16-bit sources, widening as they
	// go; nil where the kernel widens rows first and then uses packRows.
	packBF16, packF16 func(panel []float32, src []uint16, ld, w, kc int)
	// packCols packs full panels of a column-major operand: for q < panels,
	// p < kc, i < w, dst[(q·kc+p)·w+i] = src[p·ld+q·w+i]; it may write up to
	// 8 floats past the panels (within dst's capacity). nil: use Go.
	packCols func(dst, src []float32, ld, w, kc, panels int)
	// smallM > 0 enables the unpacked dot-form products for 2 ≤ m ≤ smallM
	// (float32, bfloat16 and float16 weights) with these tiles.
	smallM                int
	dot6x2F32             dot6x2Func[float32]
	dot6x2BF16, dot6x2F16 dot6x2Func[uint16]
	// dotRows and axpyRows are DotRows and AxpyRows (bounds checked); nil: Go.
	dotRows  func(s, q, k []float32, ldk int)
	axpyRows func(o, p, v []float32, ldv int)
	// the 4×3 and 2×5 dot-form tiles (optional: 6×2 serves all m without them)
	dot4x3F32, dot2x5F32                         dotTileFunc[float32]
	dot4x3BF16, dot2x5BF16, dot4x3F16, dot2x5F16 dotTileFunc[uint16]
	// transpose writes dst[j·ldd+i] = src[i·lds+j] for i < rows, j < cols.
	transpose func(dst []float32, ldd int, src []float32, lds, rows, cols int)
}

// goKernel is the portable implementation, used where no SIMD kernel exists
// and selectable everywhere (SetImpl("go")) so that tests cover it.
var goKernel = &kernel{
	name: "go", mr: 2, nr: 4, kc: 256, mc: 128, nc: 512,
	micro:     microGo2x4,
	widenBF16: widenBF16Go,
	widenF16:  half.WidenF16,
	dot:       dotGo,
	int4Rows:  int4RowsGo,
	packRows:  panel.PackGo[float32],
	dotBF16:   dotBF16Go,
	int4Panel: int4PanelGo,
	transpose: transposeGo,
}

// kernels lists the implementations this machine can run, best first.
var kernels = append(checkedKernels(archKernels()), goKernel)

// checkedKernels drops SIMD kernels whose micro-kernel fails a small product
// at start-up (a few microseconds): a safety net for instruction sets that the
// machines running the tests may lack (AVX-512 on the project's machines).
func checkedKernels(ks []*kernel) []*kernel {
	var ok []*kernel
	for _, k := range ks {
		if err := selfCheck(k); err != nil {
			fmt.Fprintf(os.Stderr, "gemm: %s kernel disabled: %v\n", k.name, err)
			continue
		}
		ok = append(ok, k)
	}
	return ok
}

// selfCheck runs k's micro-kernel on one register tile of depth 37 (both
// overwrite and accumulate) and compares it with a float64 sum.
func selfCheck(k *kernel) error {
	const kc = 37
	mr, nr := k.mr, k.nr
	a := make([]float32, kc*mr)
	b := make([]float32, kc*nr)
	for i := range a {
		a[i] = float32(i%13) - 6
	}
	for i := range b {
		b[i] = float32(i%7)*0.5 - 1.5
	}
	ldc := nr + 3
	c := make([]float32, mr*ldc)
	for i := range c {
		c[i] = 1000 // must be overwritten
	}
	for pass, acc := range []bool{false, true} {
		k.micro(kc, &a[0], &b[0], &c[0], ldc, acc)
		for i := 0; i < mr; i++ {
			for j := 0; j < nr; j++ {
				var want float64
				for p := 0; p < kc; p++ {
					want += float64(a[p*mr+i]) * float64(b[p*nr+j])
				}
				want *= float64(pass + 1)
				if got := float64(c[i*ldc+j]); math.Abs(got-want) > 1e-3 {
					return fmt.Errorf("self-check: C[%d,%d] = %v, want %v (acc=%v)", i, j, got, want, acc)
				}
			}
			for j := nr; j < ldc; j++ {
				if c[i*ldc+j] != 1000 {
					return fmt.Errorf("self-check: wrote outside its tile at [%d,%d]", i, j)
				}
			}
		}
	}
	return nil
}

// active is the kernel in use.
var active = impl.New("gemm", kernels, func(k *kernel) string { return k.name })

func init() {
	if name := os.Getenv("MOEFORGE_GEMM"); name != "" {
		if err := SetImpl(name); err != nil {
			fmt.Fprintf(os.Stderr, "gemm: MOEFORGE_GEMM: %v\n", err)
		}
	}
}

// Impls lists the kernel implementations available on this machine, best
// first: a subset of "avx512", "avx2" and always "go".
func Impls() []string { return active.Names() }

// Impl returns the name of the implementation in use.
func Impl() string { return active.Load().name }

// SetImpl selects an implementation by name (see Impls); "" or "auto" picks the
// best one. The environment variable MOEFORGE_GEMM does the same at start-up.
// It is meant for tests and benchmarks: products already running keep theirs.
func SetImpl(name string) error { return active.Set(name) }

// microGo2x4 is the portable micro-kernel (see impl.Tile2x4).
func microGo2x4(kc int, a, b, c *float32, ldc int, acc bool) {
	t := impl.Tile2x4(unsafe.Slice(a, 2*kc), unsafe.Slice(b, 4*kc))
	C := unsafe.Slice(c, ldc+4)
	for i, r := range [2][]float32{C[0:4:4], C[ldc : ldc+4 : ldc+4]} {
		if acc {
			r[0], r[1], r[2], r[3] = r[0]+t[i][0], r[1]+t[i][1], r[2]+t[i][2], r[3]+t[i][3]
		} else {
			r[0], r[1], r[2], r[3] = t[i][0], t[i][1], t[i][2], t[i][3]
		}
	}
}

func widenBF16Go(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	for i, h := range src {
		dst[i] = math.Float32frombits(uint32(h) << 16)
	}
}

func dotGo(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func dotBF16Go(a []float32, b []uint16) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * math.Float32frombits(uint32(b[i])<<16)
		s1 += a[i+1] * math.Float32frombits(uint32(b[i+1])<<16)
		s2 += a[i+2] * math.Float32frombits(uint32(b[i+2])<<16)
		s3 += a[i+3] * math.Float32frombits(uint32(b[i+3])<<16)
	}
	for ; i < len(a); i++ {
		s0 += a[i] * math.Float32frombits(uint32(b[i])<<16)
	}
	return (s0 + s1) + (s2 + s3)
}

func transposeGo(dst []float32, ldd int, src []float32, lds, rows, cols int) {
	for j := 0; j < cols; j++ {
		d := dst[j*ldd : j*ldd+rows]
		s := src[j:]
		for i := range d {
			d[i] = s[i*lds]
		}
	}
}

func (k *kernel) tilesF32() dotTiles[float32] {
	return dotTiles[float32]{k.dot6x2F32, k.dot4x3F32, k.dot2x5F32}
}

func (k *kernel) tilesBF16() dotTiles[uint16] {
	return dotTiles[uint16]{k.dot6x2BF16, k.dot4x3BF16, k.dot2x5BF16}
}

func (k *kernel) tilesF16() dotTiles[uint16] {
	return dotTiles[uint16]{k.dot6x2F16, k.dot4x3F16, k.dot2x5F16}
}
