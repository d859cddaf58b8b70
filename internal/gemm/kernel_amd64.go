//go:build amd64 && !purego

package gemm

import (
	"unsafe"

	"golang.org/x/sys/cpu"

	"github.com/moeforge/moeforge/internal/half"
)

//go:noescape
func kern6x16AVX2(kc int, a, b, c *float32, ldc int, acc bool)

//go:noescape
func kern14x32AVX512(kc int, a, b, c *float32, ldc int, acc bool)

//go:noescape
func widenBF16AVX2(dst *float32, src *uint16, n int)

//go:noescape
func widenF16F16C(dst *float32, src *uint16, n int)

func peakAVX2(n int)

func peakAVX512(n int)

var (
	hasAVX2   = cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C
	hasAVX512 = hasAVX2 && cpu.X86.HasAVX512F
)

func archKernels() []*kernel {
	var ks []*kernel
	if hasAVX512 {
		ks = append(ks, &kernel{
			name: "avx512", mr: 14, nr: 32, kc: 256, mc: 140, nc: 1024,
			micro:     kern14x32AVX512,
			widenBF16: widenBF16SIMD,
			widenF16:  widenF16SIMD,
			dot:       dotGo,
			int4Rows:  int4RowsGo,
		})
	}
	if hasAVX2 {
		ks = append(ks, &kernel{
			name: "avx2", mr: 6, nr: 16, kc: 256, mc: 144, nc: 1024,
			micro:     kern6x16AVX2,
			widenBF16: widenBF16SIMD,
			widenF16:  widenF16SIMD,
			dot:       dotGo,
			int4Rows:  int4RowsGo,
		})
	}
	return ks
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
