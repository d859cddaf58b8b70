package main

import (
	. "github.com/mmcloughlin/avo/reg"
)

// gemmKernels are the float32 kernels of internal/gemm.
func gemmKernels() {
	microTile{name: "kern6x16AVX2", regs: Y, mr: 6, unroll: 4}.generate()
	microTile{name: "kern14x32AVX512", regs: Z, mr: 14, unroll: 2}.generate()
	peak("peakAVX2", Y[:12], Y14, Y15)
	peak("peakAVX512", Z[:24], Z30, Z31)
	widen("widenBF16AVX2", fromBF16)
	widen("widenF16F16C", fromF16)
	for _, w8 := range []widen8{fromF32, fromBF16, fromF16} {
		transpose8(w8)
	}
	dot(fromF32)
	dot(fromBF16)
	int4Panel()
	int4Dot(false)
	int4Dot(true)
	packCols()
	for _, w8 := range []widen8{fromF32, fromBF16, fromF16} {
		dot6x2(w8)
		dotTile(w8, 4, 3)
		dotTile(w8, 2, 5)
	}
	axpyRows()
	dotRows()
	dotRows8()
}

// linalgKernels are the float64 kernels of internal/linalg.
func linalgKernels() {
	microTile{name: "kern6x8AVX2", double: true, regs: Y, mr: 6, unroll: 4, alpha: true}.generate()
	transpose4F64()
}
