package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// Y and Z are the vector registers by number.
var (
	Y = []VecPhysical{Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y8, Y9, Y10, Y11, Y12, Y13, Y14, Y15}
	Z = []VecPhysical{Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15,
		Z16, Z17, Z18, Z19, Z20, Z21, Z22, Z23, Z24, Z25, Z26, Z27, Z28, Z29, Z30, Z31}
)

// param is the frame address of the named argument.
func param(name string) Mem {
	b, err := Param(name).Resolve()
	if err != nil {
		panic(fmt.Sprintf("asm: parameter %s: %v", name, err))
	}
	return b.Addr
}

// shl multiplies r by 2^s (s = 0 leaves it).
func shl(s int, r GPPhysical) {
	if s > 0 {
		SHLQ(U8(s), r)
	}
}

// log2 of an element size in bytes.
func log2(bytes int) int {
	switch bytes {
	case 1:
		return 0
	case 2:
		return 1
	case 4:
		return 2
	case 8:
		return 3
	}
	panic("asm: element size")
}

// widen8 is how eight elements of a 16- or 32-bit source become eight float32
// lanes of a ymm register: the one difference between the float32, bfloat16
// and float16 variants of a kernel.
type widen8 struct {
	name  string // suffix of the kernel names: F32, BF16, F16
	bytes int    // size of one source element
	load  func(m Mem, y VecPhysical)
}

var (
	fromF32 = widen8{"F32", 4, func(m Mem, y VecPhysical) { VMOVUPS(m, y) }}
	// bfloat16 is the upper half of a float32.
	fromBF16 = widen8{"BF16", 2, func(m Mem, y VecPhysical) { VPMOVZXWD(m, y); VPSLLD(U8(16), y, y) }}
	// IEEE binary16 by F16C.
	fromF16 = widen8{"F16", 2, func(m Mem, y VecPhysical) { VCVTPH2PS(m, y) }}
)

// zeroVecs clears the registers (VPXORD for zmm, which AVX2 lacks).
func zeroVecs(ps bool, regs ...VecPhysical) {
	for _, r := range regs {
		switch {
		case r.Size() == 64:
			VPXORD(r, r, r)
		case ps:
			VXORPS(r, r, r)
		default:
			VXORPD(r, r, r)
		}
	}
}

// loop emits `name: body; DECQ n; JNZ name`.
func loop(name string, n GPPhysical, body func()) {
	Label(name)
	body()
	DECQ(n)
	JNZ(LabelRef(name))
}
