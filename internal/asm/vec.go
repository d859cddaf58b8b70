package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// widen writes dst[i] = float32(src[i]) for n a multiple of 8 (16-bit sources).
func widen(name string, w8 widen8) {
	TEXT(name, NOSPLIT, "func(dst *float32, src *uint16, n int)")
	Pragma("noescape")
	Doc(fmt.Sprintf("%s widens n (a multiple of 8) %s values to float32.", name, w8.name))
	Load(Param("dst"), RDI)
	Load(Param("src"), RSI)
	Load(Param("n"), RCX)
	SHRQ(U8(3), RCX)
	JZ(LabelRef("done"))
	loop("loop", RCX, func() {
		w8.load(Mem{Base: RSI}, Y0)
		VMOVUPS(Y0, Mem{Base: RDI})
		ADDQ(U8(8*w8.bytes), RSI)
		ADDQ(U8(32), RDI)
	})
	Label("done")
	VZEROUPPER()
	RET()
}

// dot writes Σ a[i]·b[i] over n float32 a and n b of w8's type, n a multiple
// of 32: four ymm accumulators, b widened into registers, a from memory.
func dot(w8 widen8) {
	name, src := "dotAVX2", "float32"
	if w8.bytes == 2 {
		name, src = "dot"+w8.name+"AVX2", "uint16"
	}
	TEXT(name, NOSPLIT, fmt.Sprintf("func(a *float32, b *%s, n int) float32", src))
	Pragma("noescape")
	Doc(fmt.Sprintf("%s returns Σ a[i]·b[i] for n a multiple of 32.", name))
	Load(Param("a"), RSI)
	Load(Param("b"), RDI)
	Load(Param("n"), RCX)
	zeroVecs(true, Y0, Y1, Y2, Y3)
	SHRQ(U8(5), RCX)
	JZ(LabelRef("sum"))
	loop("loop", RCX, func() {
		for i := 0; i < 4; i++ {
			w8.load(Mem{Base: RDI, Disp: 8 * w8.bytes * i}, Y[4+i])
		}
		for i := 0; i < 4; i++ {
			VFMADD231PS(Mem{Base: RSI, Disp: 32 * i}, Y[4+i], Y[i])
		}
		ADDQ(U32(128), RSI)
		ADDQ(U32(32*w8.bytes), RDI)
	})
	Label("sum")
	VADDPS(Y1, Y0, Y0)
	VADDPS(Y3, Y2, Y2)
	VADDPS(Y2, Y0, Y0)
	VEXTRACTF128(U8(1), Y0, X1)
	VADDPS(X1, X0, X0)
	VHADDPS(X0, X0, X0)
	VHADDPS(X0, X0, X0)
	VZEROUPPER()
	Store(X0, ReturnIndex(0))
	RET()
}

// dot6x2 writes the dot-form tile for few rows of A: 6 rows of A × 2 rows of
// B (of w8's type), summed along k in vectors, no packing. out receives the
// 12 vector accumulators (row r of A with row j of B in out[(2r+j)·8 : +8]),
// to be summed by the caller.
//
// A rows at SI, SI+R8, SI+2·R8, R9, R9+R8, R9+2·R8 (R9 = SI+3·R8); B rows at
// DI and DI+R10, widened into Y0, Y1; Y4…Y15 the accumulators.
func dot6x2(w8 widen8) {
	name := "dot6x2" + w8.name + "AVX2"
	src := "uint16"
	if w8.bytes == 4 {
		src = "float32"
	}
	TEXT(name, NOSPLIT, fmt.Sprintf("func(a *float32, lda int, b *%s, ldb int, k8 int, out *[96]float32)", src))
	Pragma("noescape")
	Doc(fmt.Sprintf("%s is the 6×2 dot-form tile over k8 steps of 8 (B in %s).", name, w8.name))
	Load(Param("a"), RSI)
	Load(Param("lda"), R8)
	SHLQ(U8(2), R8)
	Load(Param("b"), RDI)
	Load(Param("ldb"), R10)
	shl(log2(w8.bytes), R10)
	Load(Param("k8"), RCX)
	Load(Param("out"), RDX)
	LEAQ(Mem{Base: RSI, Index: R8, Scale: 2}, R9)
	ADDQ(R8, R9)
	acc := Y[4:16]
	zeroVecs(true, acc...)
	TESTQ(RCX, RCX)
	JLE(LabelRef("store"))
	rows := []Mem{{Base: RSI}, {Base: RSI, Index: R8, Scale: 1}, {Base: RSI, Index: R8, Scale: 2},
		{Base: R9}, {Base: R9, Index: R8, Scale: 1}, {Base: R9, Index: R8, Scale: 2}}
	loop("loop", RCX, func() {
		w8.load(Mem{Base: RDI}, Y0)
		w8.load(Mem{Base: RDI, Index: R10, Scale: 1}, Y1)
		ADDQ(U8(8*w8.bytes), RDI)
		for r, m := range rows {
			a := Y[2+r%2]
			VMOVUPS(m, a)
			VFMADD231PS(Y0, a, acc[2*r])
			VFMADD231PS(Y1, a, acc[2*r+1])
		}
		ADDQ(U8(32), RSI)
		ADDQ(U8(32), R9)
	})
	Label("store")
	for i, r := range acc {
		VMOVUPS(r, Mem{Base: RDX, Disp: 32 * i})
	}
	VZEROUPPER()
	RET()
}

// nibbles extracts nibble j of the 16 words in Y2, Y3 into Y5, Y6 (Y15 holds
// 15 in every lane), subtracts the zero points at zs (when given) and
// converts to float32.
func nibbles(j int, zs *Mem) {
	VPSRLD(U8(4*j), Y2, Y5)
	VPSRLD(U8(4*j), Y3, Y6)
	VPAND(Y15, Y5, Y5)
	VPAND(Y15, Y6, Y6)
	if zs != nil {
		VPSUBD(*zs, Y5, Y5)
		VPSUBD(zs.Offset(32), Y6, Y6)
	}
	VCVTDQ2PS(Y5, Y5)
	VCVTDQ2PS(Y6, Y6)
}

// fifteen sets every lane of Y15 to 15 (the nibble mask).
func fifteen() {
	MOVL(U32(15), EAX)
	VMOVD(EAX, X15)
	VPBROADCASTD(X15, Y15)
}

// int4Tables loads the arguments the int4 kernels share, in their order:
// qw → SI, n (bytes) → R8, the group index (per input or per word row) → R9,
// sc → R10, the zero table → R11, ldt (bytes) → R12.
func int4Tables(group, zero string) {
	Load(Param("qw"), RSI)
	Load(Param("n"), R8)
	SHLQ(U8(2), R8)
	Load(Param(group), R9)
	Load(Param("sc"), R10)
	Load(Param(zero), R11)
	Load(Param("ldt"), R12)
	SHLQ(U8(2), R12)
}

func int4Panel() {
	TEXT("int4PanelAVX2", NOSPLIT, "func(dst *float32, w int, qw *int32, n int, gidx *int32, sc *float32, zs *int32, ldt int, p0, p1 int)")
	Pragma("noescape")
	Doc("int4PanelAVX2 dequantizes 16 consecutive outputs (qw, sc and zs point at the first) for",
		"inputs p in [p0, p1): dst[(p−p0)·w + c] = sc[g·ldt+c]·float(nibble(qw[(p/8)·n+c], p%8) − zs[g·ldt+c])",
		"with g = gidx[p].")
	Load(Param("dst"), RDI)
	Load(Param("w"), R13)
	SHLQ(U8(2), R13)
	int4Tables("gidx", "zs")
	Load(Param("p0"), RCX)
	Load(Param("p1"), RBX)
	SUBQ(RCX, RBX)
	JLE(LabelRef("done"))
	fifteen()
	Label("loop")
	MOVQ(RCX, RAX)
	ANDQ(U8(7), RAX)
	SHLQ(U8(2), RAX)
	VMOVQ(RAX, X14)
	MOVLQSX(Mem{Base: R9, Index: RCX, Scale: 4}, RAX)
	IMULQ(R12, RAX)
	MOVQ(RCX, RDX)
	SHRQ(U8(3), RDX)
	IMULQ(R8, RDX)
	VMOVDQU(Mem{Base: RSI, Index: RDX, Scale: 1}, Y0)
	VMOVDQU(Mem{Base: RSI, Index: RDX, Scale: 1, Disp: 32}, Y1)
	VPSRLD(X14, Y0, Y0)
	VPSRLD(X14, Y1, Y1)
	VPAND(Y15, Y0, Y0)
	VPAND(Y15, Y1, Y1)
	VPSUBD(Mem{Base: R11, Index: RAX, Scale: 1}, Y0, Y0)
	VPSUBD(Mem{Base: R11, Index: RAX, Scale: 1, Disp: 32}, Y1, Y1)
	VCVTDQ2PS(Y0, Y0)
	VCVTDQ2PS(Y1, Y1)
	VMULPS(Mem{Base: R10, Index: RAX, Scale: 1}, Y0, Y0)
	VMULPS(Mem{Base: R10, Index: RAX, Scale: 1, Disp: 32}, Y1, Y1)
	VMOVUPS(Y0, Mem{Base: RDI})
	VMOVUPS(Y1, Mem{Base: RDI, Disp: 32})
	ADDQ(R13, RDI)
	INCQ(RCX)
	DECQ(RBX)
	JNZ(LabelRef("loop"))
	Label("done")
	VZEROUPPER()
	RET()
}

// int4Dot writes the int4 matrix-vector kernels for 16 outputs (qw and the
// tables point at the first), rows word rows of QWeight at a time:
//
//	int4DotAVX2:       y[c] = Σ_{i<8·rows} a[i]·sc[g·ldt+c]·(nibble(qw[(i/8)·n+c], i%8) − zs[g·ldt+c]), g = gidx[i];
//	int4DotSortedAVX2: for matrices whose 8 inputs of a word share a group g = rowGroup[r] (word row r),
//	                   y[c] = Σ_r sc[g·ldt+c]·Σ_j a[8r+j]·q − zsc[g·ldt+c]·asum[r],
//	                   with zsc = scale·zero and asum[r] = Σ_j a[8r+j].
//
// Registers: Y2, Y3 the 16 words of a row, Y4 a broadcast input, Y5, Y6
// its nibbles, Y15 the nibble mask; Y0, Y1 (and for int4DotAVX2 Y7, Y8 for
// odd j) the outputs; for the sorted kernel Y8…Y11 the row's unscaled sums.
func int4Dot(sorted bool) {
	if sorted {
		TEXT("int4DotSortedAVX2", NOSPLIT, "func(y *float32, a *float32, qw *int32, n int, rowGroup *int32, sc, zsc *float32, ldt int, rows int, asum *float32)")
		Doc("int4DotSortedAVX2 is int4DotAVX2 for matrices whose 8 inputs of a word share a group (see int4SortedSIMD).")
	} else {
		TEXT("int4DotAVX2", NOSPLIT, "func(y *float32, a *float32, qw *int32, n int, gidx *int32, sc *float32, zs *int32, ldt int, rows int)")
		Doc("int4DotAVX2 computes 16 outputs of the int4 matrix-vector product over 8·rows inputs (see int4RowsSIMD).")
	}
	Pragma("noescape")
	Load(Param("y"), RDI)
	Load(Param("a"), RDX)
	if sorted {
		int4Tables("rowGroup", "zsc")
	} else {
		int4Tables("gidx", "zs")
	}
	Load(Param("rows"), RCX)
	if sorted {
		Load(Param("asum"), RBX)
		zeroVecs(true, Y0, Y1)
	} else {
		zeroVecs(true, Y0, Y1, Y7, Y8)
	}
	TESTQ(RCX, RCX)
	JLE(LabelRef("store"))
	fifteen()
	loop("loop", RCX, func() {
		VMOVDQU(Mem{Base: RSI}, Y2)
		VMOVDQU(Mem{Base: RSI, Disp: 32}, Y3)
		if sorted {
			zeroVecs(true, Y8, Y9, Y10, Y11)
		}
		for j := 0; j < 8; j++ {
			acc0, acc1 := Y0, Y1
			if sorted {
				acc0, acc1 = Y8, Y9
			}
			if j%2 == 1 {
				acc0, acc1 = Y7, Y8
				if sorted {
					acc0, acc1 = Y10, Y11
				}
			}
			if sorted {
				VBROADCASTSS(Mem{Base: RDX, Disp: 4 * j}, Y4)
				nibbles(j, nil)
			} else {
				MOVLQSX(Mem{Base: R9, Disp: 4 * j}, RAX)
				IMULQ(R12, RAX)
				VBROADCASTSS(Mem{Base: RDX, Disp: 4 * j}, Y4)
				nibbles(j, &Mem{Base: R11, Index: RAX, Scale: 1})
				VMULPS(Mem{Base: R10, Index: RAX, Scale: 1}, Y5, Y5)
				VMULPS(Mem{Base: R10, Index: RAX, Scale: 1, Disp: 32}, Y6, Y6)
			}
			VFMADD231PS(Y5, Y4, acc0)
			VFMADD231PS(Y6, Y4, acc1)
		}
		step := 32 // bytes of gidx per word row
		if sorted {
			VADDPS(Y10, Y8, Y8)
			VADDPS(Y11, Y9, Y9)
			MOVLQSX(Mem{Base: R9}, RAX)
			IMULQ(R12, RAX)
			VFMADD231PS(Mem{Base: R10, Index: RAX, Scale: 1}, Y8, Y0)
			VFMADD231PS(Mem{Base: R10, Index: RAX, Scale: 1, Disp: 32}, Y9, Y1)
			VBROADCASTSS(Mem{Base: RBX}, Y4)
			VFNMADD231PS(Mem{Base: R11, Index: RAX, Scale: 1}, Y4, Y0)
			VFNMADD231PS(Mem{Base: R11, Index: RAX, Scale: 1, Disp: 32}, Y4, Y1)
			step = 4 // of rowGroup
		}
		ADDQ(R8, RSI)
		ADDQ(U8(step), R9)
		if sorted {
			ADDQ(U8(4), RBX)
		}
		ADDQ(U8(32), RDX)
	})
	Label("store")
	if !sorted {
		VADDPS(Y7, Y0, Y0)
		VADDPS(Y8, Y1, Y1)
	}
	VMOVUPS(Y0, Mem{Base: RDI})
	VMOVUPS(Y1, Mem{Base: RDI, Disp: 32})
	VZEROUPPER()
	RET()
}

// packCols packs panels of a column-major operand: for q < panels, p < kc,
// i < w, dst[(q·kc+p)·w+i] = src[p·ld+q·w+i]. Loads never pass the w floats
// of a step (the last partial vector is a masked load); stores are 8 wide and
// in increasing order, so with w%8 ≠ 0 each spills up to 7 zeros into the
// next step (overwritten by it) or past the last panel (the caller's slack).
func packCols() {
	// Lane masks: mask+4·(8−r) holds r lanes set, then clear ones.
	mask := GLOBL("maskTable", RODATA|NOPTR)
	for i := 0; i < 16; i++ {
		v := uint32(0)
		if i < 8 {
			v = 0xffffffff
		}
		DATA(4*i, U32(v))
	}
	TEXT("packColsAVX2", NOSPLIT, "func(dst, src *float32, ld, w, kc, panels int)")
	Pragma("noescape")
	Doc("packColsAVX2 packs full panels of a column-major operand; see kernel.packCols.")
	Load(Param("dst"), RDI)
	Load(Param("src"), RSI)
	Load(Param("ld"), R8)
	SHLQ(U8(2), R8)
	Load(Param("w"), R12)
	Load(Param("kc"), R10)
	Load(Param("panels"), RBX)
	MOVQ(R12, R11)
	SHRQ(U8(3), R11) // full vectors per step
	MOVQ(R12, RAX)
	ANDQ(U8(7), RAX) // floats in the last, partial vector
	MOVQ(U32(8), RCX)
	SUBQ(RAX, RCX)
	LEAQ(mask, RDX)
	VMOVDQU(Mem{Base: RDX, Index: RCX, Scale: 4}, Y15)
	SHLQ(U8(2), R12) // bytes per step
	TESTQ(RBX, RBX)
	JLE(LabelRef("done"))
	TESTQ(R10, R10)
	JLE(LabelRef("done"))
	Label("panel")
	MOVQ(RSI, R13)
	MOVQ(R10, RCX)
	Label("step")
	XORQ(RDX, RDX)
	MOVQ(R11, R9)
	TESTQ(R9, R9)
	JZ(LabelRef("rem"))
	loop("vec", R9, func() {
		VMOVUPS(Mem{Base: R13, Index: RDX, Scale: 1}, Y0)
		VMOVUPS(Y0, Mem{Base: RDI, Index: RDX, Scale: 1})
		ADDQ(U8(32), RDX)
	})
	Label("rem")
	TESTQ(RAX, RAX)
	JZ(LabelRef("next"))
	VMASKMOVPS(Mem{Base: R13, Index: RDX, Scale: 1}, Y15, Y0)
	VMOVUPS(Y0, Mem{Base: RDI, Index: RDX, Scale: 1})
	Label("next")
	ADDQ(R8, R13)
	ADDQ(R12, RDI)
	DECQ(RCX)
	JNZ(LabelRef("step"))
	ADDQ(R12, RSI)
	DECQ(RBX)
	JNZ(LabelRef("panel"))
	Label("done")
	VZEROUPPER()
	RET()
}

// dotTile writes the dot-form tile of ra rows of A × rb rows of B (of w8's
// type), summed along k in vectors, no packing: out[(rb·r+j)·8 : +8] holds
// the vector partial sums of A row r with B row j, for the caller to sum.
// A rows are lda float32 apart, B rows ldb elements apart. Registers: B
// rows widened into Y0…Y(rb-1), the ra·rb accumulators after them, and the
// A vector in Y15 (ra·rb + rb ≤ 15).
func dotTile(w8 widen8, ra, rb int) {
	if ra*rb+rb > 15 || ra*rb > 12 {
		panic("dotTile: too many registers")
	}
	name := fmt.Sprintf("dot%dx%d%sAVX2", ra, rb, w8.name)
	src := "uint16"
	if w8.bytes == 4 {
		src = "float32"
	}
	TEXT(name, NOSPLIT, fmt.Sprintf("func(a *float32, lda int, b *%s, ldb int, k8 int, out *[96]float32)", src))
	Pragma("noescape")
	Doc(fmt.Sprintf("%s is the %d×%d dot-form tile over k8 steps of 8 (B in %s).", name, ra, rb, w8.name))
	Load(Param("a"), RSI)
	Load(Param("lda"), R8)
	SHLQ(U8(2), R8)
	Load(Param("b"), RDI)
	Load(Param("ldb"), R10)
	shl(log2(w8.bytes), R10)
	Load(Param("k8"), RCX)
	Load(Param("out"), RDX)
	// Row bases: A at SI, SI+R8, SI+2·R8, R9 (= SI+3·R8), R9+R8, R9+2·R8;
	// B at DI, DI+R10, DI+2·R10, R11 (= DI+3·R10), R11+R10, R11+2·R10.
	LEAQ(Mem{Base: RSI, Index: R8, Scale: 2}, R9)
	ADDQ(R8, R9)
	LEAQ(Mem{Base: RDI, Index: R10, Scale: 2}, R11)
	ADDQ(R10, R11)
	rowsOf := func(b0, b3, ld GPPhysical, n int) []Mem {
		all := []Mem{{Base: b0}, {Base: b0, Index: ld, Scale: 1}, {Base: b0, Index: ld, Scale: 2},
			{Base: b3}, {Base: b3, Index: ld, Scale: 1}, {Base: b3, Index: ld, Scale: 2}}
		return all[:n]
	}
	arows, brows := rowsOf(RSI, R9, R8, ra), rowsOf(RDI, R11, R10, rb)
	acc := Y[rb : rb+ra*rb]
	zeroVecs(true, acc...)
	TESTQ(RCX, RCX)
	JLE(LabelRef("store"))
	loop("loop", RCX, func() {
		for j, m := range brows {
			w8.load(m, Y[j])
		}
		for r, m := range arows {
			VMOVUPS(m, Y15)
			for j := range brows {
				VFMADD231PS(Y[j], Y15, acc[rb*r+j])
			}
		}
		ADDQ(U8(8*w8.bytes), RDI)
		ADDQ(U8(8*w8.bytes), R11)
		ADDQ(U8(32), RSI)
		ADDQ(U8(32), R9)
	})
	Label("store")
	for i, r := range acc {
		VMOVUPS(r, Mem{Base: RDX, Disp: 32 * i})
	}
	VZEROUPPER()
	RET()
}

// axpyRows writes o[i] += Σ_j p[j]·v[j·ldv + i] for i < 64·n64, j < rows:
// the weighted sum of attention over cached value rows. Each block of 64
// outputs stays in Y0…Y7 while the rows stream past.
func axpyRows() {
	TEXT("axpyRowsAVX2", NOSPLIT, "func(o *float32, p *float32, v *float32, ldv int, rows int, n64 int)")
	Pragma("noescape")
	Doc("axpyRowsAVX2 adds Σ_j p[j]·v[j·ldv : +64·n64] to o[: 64·n64].")
	Load(Param("o"), RDI)
	Load(Param("p"), RSI)
	Load(Param("v"), RDX)
	Load(Param("ldv"), R8)
	SHLQ(U8(2), R8)
	Load(Param("rows"), R9)
	Load(Param("n64"), RCX)
	TESTQ(RCX, RCX)
	JLE(LabelRef("done"))
	TESTQ(R9, R9)
	JLE(LabelRef("done"))
	loop("block", RCX, func() {
		for i := 0; i < 8; i++ {
			VMOVUPS(Mem{Base: RDI, Disp: 32 * i}, Y[i])
		}
		MOVQ(RSI, R10)
		MOVQ(RDX, R11)
		MOVQ(R9, R12)
		loop("row", R12, func() {
			VBROADCASTSS(Mem{Base: R10}, Y8)
			for i := 0; i < 8; i++ {
				VFMADD231PS(Mem{Base: R11, Disp: 32 * i}, Y8, Y[i])
			}
			ADDQ(U8(4), R10)
			ADDQ(R8, R11)
		})
		for i := 0; i < 8; i++ {
			VMOVUPS(Y[i], Mem{Base: RDI, Disp: 32 * i})
		}
		ADDQ(U32(256), RDI)
		ADDQ(U32(256), RDX)
	})
	Label("done")
	VZEROUPPER()
	RET()
}

// dotRows writes s[j] = Σ_i q[i]·k[j·ldk + i] for i < 32·n32, j < rows: the
// attention scores of one query against cached key rows.
func dotRows() {
	TEXT("dotRowsAVX2", NOSPLIT, "func(s *float32, q *float32, k *float32, ldk int, rows int, n32 int)")
	Pragma("noescape")
	Doc("dotRowsAVX2 sets s[j] = q[: 32·n32]·k[j·ldk : +32·n32] for j < rows.")
	Load(Param("s"), RDI)
	Load(Param("q"), RSI)
	Load(Param("k"), RDX)
	Load(Param("ldk"), R8)
	SHLQ(U8(2), R8)
	Load(Param("rows"), R9)
	Load(Param("n32"), RCX)
	TESTQ(RCX, RCX)
	JLE(LabelRef("done"))
	TESTQ(R9, R9)
	JLE(LabelRef("done"))
	loop("row", R9, func() {
		zeroVecs(true, Y0, Y1, Y2, Y3)
		MOVQ(RSI, R10)
		MOVQ(RDX, R11)
		MOVQ(RCX, R12)
		loop("block", R12, func() {
			for i := 0; i < 4; i++ {
				VMOVUPS(Mem{Base: R11, Disp: 32 * i}, Y[4+i])
			}
			for i := 0; i < 4; i++ {
				VFMADD231PS(Mem{Base: R10, Disp: 32 * i}, Y[4+i], Y[i])
			}
			ADDQ(U32(128), R10)
			ADDQ(U32(128), R11)
		})
		VADDPS(Y1, Y0, Y0)
		VADDPS(Y3, Y2, Y2)
		VADDPS(Y2, Y0, Y0)
		VEXTRACTF128(U8(1), Y0, X1)
		VADDPS(X1, X0, X0)
		VHADDPS(X0, X0, X0)
		VHADDPS(X0, X0, X0)
		VMOVSS(X0, Mem{Base: RDI})
		ADDQ(U8(4), RDI)
		ADDQ(R8, RDX)
	})
	Label("done")
	VZEROUPPER()
	RET()
}

// dotRows8 writes s[j] = Σ_i q[i]·k[j·ldk + i] for i < 8·n8, j < 8·rows8,
// eight rows at a time: row r's partial sums in Y(r), then one horizontal
// reduction of all eight into a vector of eight scores.
func dotRows8() {
	TEXT("dotRows8AVX2", NOSPLIT, "func(s *float32, q *float32, k *float32, ldk int, rows8 int, n8 int)")
	Pragma("noescape")
	Doc("dotRows8AVX2 sets s[j] = q[: 8·n8]·k[j·ldk : +8·n8] for j < 8·rows8.")
	Load(Param("s"), RDI)
	Load(Param("q"), RSI)
	Load(Param("k"), RDX)
	Load(Param("ldk"), R8)
	SHLQ(U8(2), R8)
	Load(Param("rows8"), R9)
	Load(Param("n8"), RCX)
	TESTQ(RCX, RCX)
	JLE(LabelRef("done"))
	TESTQ(R9, R9)
	JLE(LabelRef("done"))
	// RAX = 8·ldk bytes: the step from one group of 8 rows to the next
	MOVQ(R8, RAX)
	SHLQ(U8(3), RAX)
	loop("group", R9, func() {
		zeroVecs(true, Y[:8]...)
		MOVQ(RSI, R13)
		MOVQ(RDX, R10) // rows 0–2 from R10
		LEAQ(Mem{Base: RDX, Index: R8, Scale: 2}, R11)
		ADDQ(R8, R11) // rows 3–5 from R11
		LEAQ(Mem{Base: R11, Index: R8, Scale: 2}, R12)
		ADDQ(R8, R12) // rows 6–7 from R12
		MOVQ(RCX, RBX)
		rows := []Mem{{Base: R10}, {Base: R10, Index: R8, Scale: 1}, {Base: R10, Index: R8, Scale: 2},
			{Base: R11}, {Base: R11, Index: R8, Scale: 1}, {Base: R11, Index: R8, Scale: 2},
			{Base: R12}, {Base: R12, Index: R8, Scale: 1}}
		loop("col", RBX, func() {
			VMOVUPS(Mem{Base: R13}, Y8)
			for r, m := range rows {
				VFMADD231PS(m, Y8, Y[r])
			}
			ADDQ(U8(32), R13)
			ADDQ(U8(32), R10)
			ADDQ(U8(32), R11)
			ADDQ(U8(32), R12)
		})
		// Intel VHADDPS d, a, b = [a0+a1, a2+a3, b0+b1, b2+b3 | same above].
		VHADDPS(Y1, Y0, Y0)
		VHADDPS(Y3, Y2, Y2)
		VHADDPS(Y5, Y4, Y4)
		VHADDPS(Y7, Y6, Y6)
		VHADDPS(Y2, Y0, Y0) // rows 0–3, low and high halves of the columns
		VHADDPS(Y6, Y4, Y4) // rows 4–7
		VPERM2F128(U8(0x20), Y4, Y0, Y1)
		VPERM2F128(U8(0x31), Y4, Y0, Y2)
		VADDPS(Y2, Y1, Y1)
		VMOVUPS(Y1, Mem{Base: RDI})
		ADDQ(U8(32), RDI)
		ADDQ(RAX, RDX)
	})
	Label("done")
	VZEROUPPER()
	RET()
}
