package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// microTile describes a register-tile micro-kernel: C[mr, 2·lanes] from kc
// steps of a packed A micro-panel (mr elements a step) and a packed B
// micro-panel (two vectors a step). The one generator writes the float32
// AVX2 6×16 and AVX-512 14×32 kernels of gemm and the float64 AVX2 6×8 one
// of linalg.
//
// Registers: V0,V1 one step of B, V2,V3 alternately a broadcast element of A,
// V4… the 2·mr accumulators (row i in V(4+2i), V(5+2i)).
type microTile struct {
	name   string
	double bool          // float64 elements (else float32)
	regs   []VecPhysical // the vector registers, by number
	mr     int
	unroll int // steps per iteration of the main loop
	// alpha: C += alpha·AB (func(kc int, a, b, c *T, ldc int, alpha T));
	// otherwise C = AB or C += AB by the flag acc (…, ldc int, acc bool).
	alpha bool
}

func (t microTile) elem() int {
	if t.double {
		return 8
	}
	return 4
}

func (t microTile) vec() int { return int(t.regs[0].Size()) }

func (t microTile) nr() int { return 2 * t.vec() / t.elem() }

func (t microTile) step(ao, bo int) {
	b0, b1 := t.regs[0], t.regs[1]
	load, bcast, fma := VMOVUPS, VBROADCASTSS, VFMADD231PS
	if t.double {
		load, bcast, fma = VMOVUPD, VBROADCASTSD, VFMADD231PD
	}
	load(Mem{Base: RDI, Disp: bo}, b0)
	load(Mem{Base: RDI, Disp: bo + t.vec()}, b1)
	for i := 0; i < t.mr; i++ {
		a := t.regs[2+i%2]
		bcast(Mem{Base: RSI, Disp: ao + i*t.elem()}, a)
		fma(b0, a, t.regs[4+2*i])
		fma(b1, a, t.regs[5+2*i])
	}
}

func (t microTile) generate() {
	typ := "float32"
	last := "acc bool"
	if t.double {
		typ = "float64"
	}
	if t.alpha {
		last = "alpha " + typ
	}
	TEXT(t.name, NOSPLIT, fmt.Sprintf("func(kc int, a, b, c *%s, ldc int, %s)", typ, last))
	Pragma("noescape")
	if t.alpha {
		Doc(fmt.Sprintf("%s adds alpha·Σ_p a[p]ᵀ·b[p] to C[%d, %d] (row stride ldc) for kc ≥ 1", t.name, t.mr, t.nr()),
			fmt.Sprintf("steps of packed A (%d elements a step) and packed B (%d a step).", t.mr, t.nr()))
	} else {
		Doc(fmt.Sprintf("%s is a microFunc with a %d×%d register tile.", t.name, t.mr, t.nr()))
	}
	Load(Param("kc"), RCX)
	Load(Param("a"), RSI)
	Load(Param("b"), RDI)
	Load(Param("c"), RDX)
	Load(Param("ldc"), R8)
	shl(log2(t.elem()), R8)
	acc := t.regs[4 : 4+2*t.mr]
	zeroVecs(!t.double, acc...)
	astep, bstep := t.mr*t.elem(), 2*t.vec()
	CMPQ(RCX, U8(t.unroll))
	JLT(LabelRef("tail"))
	Label("loop")
	for u := 0; u < t.unroll; u++ {
		t.step(u*astep, u*bstep)
	}
	ADDQ(U32(t.unroll*astep), RSI)
	ADDQ(U32(t.unroll*bstep), RDI)
	SUBQ(U8(t.unroll), RCX)
	CMPQ(RCX, U8(t.unroll))
	JGE(LabelRef("loop"))

	Label("tail")
	TESTQ(RCX, RCX)
	JZ(LabelRef("store"))
	loop("one", RCX, func() {
		t.step(0, 0)
		ADDQ(U32(astep), RSI)
		ADDQ(U32(bstep), RDI)
	})

	Label("store")
	rows := func(row func(r0, r1 VecPhysical)) {
		for i := 0; i < t.mr; i++ {
			row(acc[2*i], acc[2*i+1])
			ADDQ(R8, RDX)
		}
		VZEROUPPER()
		RET()
	}
	c0, c1 := Mem{Base: RDX}, Mem{Base: RDX, Disp: t.vec()}
	if t.alpha {
		// C row += alpha·acc, alpha broadcast in V2; V0, V1 scratch.
		VBROADCASTSD(param("alpha"), t.regs[2])
		rows(func(r0, r1 VecPhysical) {
			VMOVUPD(c0, t.regs[0])
			VMOVUPD(c1, t.regs[1])
			VFMADD231PD(t.regs[2], r0, t.regs[0])
			VFMADD231PD(t.regs[2], r1, t.regs[1])
			VMOVUPD(t.regs[0], c0)
			VMOVUPD(t.regs[1], c1)
		})
		return
	}
	Load(Param("acc"), RAX)
	TESTQ(RAX, RAX)
	JZ(LabelRef("overwrite"))
	rows(func(r0, r1 VecPhysical) {
		VADDPS(c0, r0, r0)
		VADDPS(c1, r1, r1)
		VMOVUPS(r0, c0)
		VMOVUPS(r1, c1)
	})
	Label("overwrite")
	rows(func(r0, r1 VecPhysical) {
		VMOVUPS(r0, c0)
		VMOVUPS(r1, c1)
	})
}

// peak writes a peak-throughput loop: n iterations of len(chains)
// independent register-resident FMA chains on zero operands (so no special
// values arise), with x and y the operands.
func peak(name string, chains []VecPhysical, x, y VecPhysical) {
	TEXT(name, NOSPLIT, "func(n int)")
	Doc(fmt.Sprintf("%s runs n iterations of %d independent %d-byte FMA chains.", name, len(chains), x.Size()))
	Load(Param("n"), RCX)
	zeroVecs(true, append(append([]VecPhysical{}, chains...), x, y)...)
	TESTQ(RCX, RCX)
	JLE(LabelRef("done"))
	loop("loop", RCX, func() {
		for _, c := range chains {
			VFMADD231PS(x, y, c)
		}
	})
	Label("done")
	VZEROUPPER()
	RET()
}
