//go:build amd64 && !purego

package gemm

import (
	"unsafe"

	"golang.org/x/sys/cpu"

	"github.com/moeforge/moeforge/internal/gemm/panel"
	"github.com/moeforge/moeforge/internal/half"
)

var (
	hasAVX2   = cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C
	hasAVX512 = hasAVX2 && cpu.X86.HasAVX512F
)

func archKernels() []*kernel {
	if !hasAVX2 {
		return nil
	}
	avx2 := &kernel{
		name: "avx2", mr: 6, nr: 16, kc: 256, mc: 144, nc: 512,
		micro:      kern6x16AVX2,
		widenBF16:  widenBF16SIMD,
		widenF16:   widenF16SIMD,
		dot:        dotSIMD,
		dotBF16:    dotBF16SIMD,
		int4Rows:   int4RowsSIMD,
		int4Sorted: int4SortedSIMD,
		int4Panel:  int4PanelSIMD,
		packRows:   packRowsAVX2,
		packBF16:   packBF16AVX2,
		packCols:   packColsSIMD,
		transpose:  transposeSIMD,
		smallM:     8,
		dot6x2F32:  dot6x2F32AVX2,
		dot6x2BF16: dot6x2BF16AVX2,
		dot6x2F16:  dot6x2F16AVX2,
		dot4x3F32:  dot4x3F32AVX2,
		dot2x5F32:  dot2x5F32AVX2,
		dot4x3BF16: dot4x3BF16AVX2,
		dot2x5BF16: dot2x5BF16AVX2,
		dot4x3F16:  dot4x3F16AVX2,
		dot2x5F16:  dot2x5F16AVX2,
		dotRows:    dotRowsSIMD,
		axpyRows:   axpyRowsSIMD,
		packF16:    packF16AVX2,
	}
	if !hasAVX512 {
		return []*kernel{avx2}
	}
	// AVX-512 differs only in the micro-kernel and its blocking; packing,
	// widening and int4 dequantization share the AVX2 routines.
	avx512 := *avx2
	avx512.name, avx512.mr, avx512.nr, avx512.mc, avx512.nc = "avx512", 14, 32, 140, 1024
	avx512.micro = kern14x32AVX512
	return []*kernel{&avx512, avx2}
}

func widenBF16SIMD(dst []float32, src []uint16) {
	n := len(src) &^ 7
	if n > 0 {
		_ = dst[n-1]
		widenBF16AVX2(unsafe.SliceData(dst), unsafe.SliceData(src), n)
	}
	widenBF16Go(dst[n:], src[n:])
}

func widenF16SIMD(dst []float32, src []uint16) {
	n := len(src) &^ 7
	if n > 0 {
		_ = dst[n-1]
		widenF16F16C(unsafe.SliceData(dst), unsafe.SliceData(src), n)
	}
	if n < len(src) {
		half.WidenF16(dst[n:], src[n:])
	}
}

// peakLoop runs n iterations of the widest register-resident FMA loop this
// machine has and returns the floating-point operations it performed.
func peakLoop(n int) float64 {
	switch {
	case hasAVX512:
		peakAVX512(n)
		return float64(n) * 24 * 16 * 2
	case hasAVX2:
		peakAVX2(n)
		return float64(n) * 12 * 8 * 2
	}
	return peakGo(n)
}

func dotSIMD(a, b []float32) float32 { return dotSplit(dotAVX2, dotGo, a, b) }

func dotBF16SIMD(a []float32, b []uint16) float32 { return dotSplit(dotBF16AVX2, dotBF16Go, a, b) }

// dotSplit sums the first multiple of 32 elements with the assembly loop
// and the rest in Go (len(b) ≥ len(a)).
func dotSplit[T float32 | uint16](asm func(a *float32, b *T, n int) float32, tail func(a []float32, b []T) float32, a []float32, b []T) float32 {
	n := len(a) &^ 31
	var s float32
	if n > 0 {
		_ = b[n-1]
		s = asm(&a[0], &b[0], n)
	}
	if n < len(a) {
		s += tail(a[n:], b[n:len(a)])
	}
	return s
}

// int4PanelSIMD dequantizes inputs [p0, p1) of outputs [q, q+rows) into a
// panel of width w (rows ≤ w), 16 outputs at a time; see int4PanelGo.
func int4PanelSIMD(d []float32, w int, m *Int4, q, rows int, sc []float32, zs []int32, ldt, t0, p0, p1 int) {
	full := rows &^ 15
	if full > 0 && p1 > p0 {
		_ = m.QWeight[(p1-1)/8*m.N+q+full-1]
		_ = m.GIdx[p1-1]
		_ = d[(p1-p0-1)*w+full-1]
		for c := 0; c < full; c += 16 {
			// Each group's 16-entry rows must be inside the tables.
			_ = sc[(len(sc)/ldt-1)*ldt+t0+c+15]
			_ = zs[(len(zs)/ldt-1)*ldt+t0+c+15]
			int4PanelAVX2(&d[c], w, &m.QWeight[q+c], m.N, &m.GIdx[0], &sc[t0+c], &zs[t0+c], ldt, p0, p1)
		}
	}
	if full < rows {
		int4PanelGo(d[full:], w, m, q+full, rows-full, sc, zs, ldt, t0+full, p0, p1)
	}
}

// int4RowsSIMD is int4RowsGo with 16 outputs at a time in registers.
func int4RowsSIMD(y, a []float32, qw []int32, n, q0 int, gidx []int32, sc []float32, zs []int32, cols int) {
	full := cols &^ 15
	k := len(gidx)
	if full > 0 && k > 0 {
		_ = a[k-1]
		_ = qw[(k/8-1)*n+q0+full-1]
		groups := len(sc) / cols
		_ = sc[(groups-1)*cols+full-1]
		_ = zs[(groups-1)*cols+full-1]
		var tmp [16]float32
		// Blocks of int4RowBlock word rows across all the columns, so that
		// QWeight is read in that many sequential streams.
		for rb := 0; rb < k/8; rb += int4RowBlock {
			nr := min(int4RowBlock, k/8-rb)
			for c := 0; c < full; c += 16 {
				int4DotAVX2(&tmp[0], &a[8*rb], &qw[rb*n+q0+c], n, &gidx[8*rb], &sc[c], &zs[c], cols, nr)
				yy := y[c : c+16]
				for i, v := range tmp {
					yy[i] += v
				}
			}
		}
	}
	if full < cols {
		int4RowsGoRange(y, a, qw, n, q0, gidx, sc, zs, cols, full, cols)
	}
}

// packRowsAVX2, packBF16AVX2 and packF16AVX2 are packRowsGo (widening as
// they go) with 8×8 register transposes.
func packRowsAVX2(dst, src []float32, ld, w, kc int) {
	panel.Pack(transpose8AVX2, 8, panel.Strided[float32], dst, src, ld, w, kc)
}

func packBF16AVX2(dst []float32, src []uint16, ld, w, kc int) {
	panel.Pack(transpose8BF16AVX2, 8, func(d []float32, s []uint16, ld int) {
		for i := range d {
			d[i] = half.BF16ToF32(s[i*ld])
		}
	}, dst, src, ld, w, kc)
}

func packF16AVX2(dst []float32, src []uint16, ld, w, kc int) {
	panel.Pack(transpose8F16AVX2, 8, func(d []float32, s []uint16, ld int) {
		for i := range d {
			d[i] = half.F16ToF32(s[i*ld])
		}
	}, dst, src, ld, w, kc)
}

// packColsSIMD packs the full panels of a column-major operand; see
// kernel.packCols.
func packColsSIMD(dst, src []float32, ld, w, kc, panels int) {
	if panels <= 0 || kc <= 0 {
		return
	}
	_ = src[(kc-1)*ld+panels*w-1]
	_ = dst[:cap(dst)][panels*w*kc+7]
	packColsAVX2(&dst[0], &src[0], ld, w, kc, panels)
}

// transposeSIMD is transposeGo with 8×8 register transposes for the whole
// blocks of 8 rows × 8 columns.
func transposeSIMD(dst []float32, ldd int, src []float32, lds, rows, cols int) {
	rb, cb := rows&^7, cols&^7
	if rb > 0 && cb > 0 {
		_ = src[(rb-1)*lds+cb-1]
		_ = dst[(cb-1)*ldd+rb-1]
		var offs [8]int
		for i := 0; i < rb; i += 8 {
			for r := range offs {
				offs[r] = (i + r) * lds
			}
			// Columns j < cb of rows i…i+7 go to dst rows j, columns i…i+7.
			transpose8AVX2(&dst[i], ldd, &src[0], offs, cb/8)
		}
	}
	if cb < cols {
		transposeGo(dst[cb*ldd:], ldd, src[cb:], lds, rows, cols-cb)
	}
	if rb < rows && cb > 0 {
		transposeGo(dst[rb:], ldd, src[rb*lds:], lds, rows-rb, cb)
	}
}

// int4SortedSIMD is kernel.int4Sorted: 16 outputs at a time with one scale
// per word of QWeight.
func int4SortedSIMD(y []float32, v *int4Vec, q0 int, sc []float32, zs []int32, zsc []float32, cols int) {
	full := cols &^ 15
	rows := len(v.rowGroup)
	if full > 0 && rows > 0 {
		_ = v.a[8*rows-1]
		_ = v.asum[rows-1]
		_ = v.qw[(rows-1)*v.n+q0+full-1]
		groups := len(sc) / cols
		_ = sc[(groups-1)*cols+full-1]
		_ = zsc[(groups-1)*cols+full-1]
		var tmp [16]float32
		for rb := 0; rb < rows; rb += int4RowBlock {
			nr := min(int4RowBlock, rows-rb)
			for c := 0; c < full; c += 16 {
				int4DotSortedAVX2(&tmp[0], &v.a[8*rb], &v.qw[rb*v.n+q0+c], v.n, &v.rowGroup[rb], &sc[c], &zsc[c], cols, nr, &v.asum[rb])
				yy := y[c : c+16]
				for i, t := range tmp {
					yy[i] += t
				}
			}
		}
	}
	if full < cols {
		int4RowsGoRange(y, v.a, v.qw, v.n, q0, v.gidx, sc, zs, cols, full, cols)
	}
}

// int4RowBlock is how many QWeight word rows the int4 matrix-vector kernels
// take per call.
const int4RowBlock = 16

// dotRowsSIMD: the first multiple of 32 columns in assembly, the rest in Go.
// Eight rows at a time when the head width is a multiple of 8.
func dotRowsSIMD(s, q, k []float32, ldk int) {
	if len(q)%8 == 0 && len(s) >= 8 {
		r8 := len(s) / 8
		dotRows8AVX2(&s[0], &q[0], &k[0], ldk, r8, len(q)/8)
		if len(s) == 8*r8 {
			return
		}
		s, k = s[8*r8:], k[8*r8*ldk:]
	}
	n := len(q) &^ 31
	if n > 0 {
		dotRowsAVX2(&s[0], &q[0], &k[0], ldk, len(s), n/32)
	} else {
		clear(s)
	}
	if n < len(q) {
		for j := range s {
			s[j] += dotGo(q[n:], k[j*ldk+n:j*ldk+len(q)])
		}
	}
}

// axpyRowsSIMD: the first multiple of 64 columns in assembly, the rest in Go.
func axpyRowsSIMD(o, p, v []float32, ldv int) {
	n := len(o) &^ 63
	if n > 0 {
		axpyRowsAVX2(&o[0], &p[0], &v[0], ldv, len(p), n/64)
	}
	if n < len(o) {
		axpyRowsGo(o[n:], p, v[n:], ldv)
	}
}
