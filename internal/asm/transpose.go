package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// offsRegs hold offs[0…7] of the packing transposes.
var offsRegs = []GPPhysical{R8, R9, R10, R11, R12, R13, RBX, RAX}

// packTranspose writes the packing transpose of nb×nb blocks used by
// packRows: for b < blocks and p < nb it stores the nb elements
// src[offs[0]+nb·b+p], …, src[offs[nb-1]+nb·b+p] at dst[(nb·b+p)·w]. Stores
// are one vector wide and made in increasing order of p, so with w < nb each
// spills into the next step, which a later store overwrites.
//
// load fills V0…V(nb−1) with the rows of one block from SI at the given
// element offsets; transpose turns them into columns and stores column p at
// DI, advancing DI by DX (w elements of dst) after each.
func packTranspose(name, sig string, dstBytes, srcBytes, nb int, load func(offs []GPPhysical), transpose func()) {
	TEXT(name, NOSPLIT, sig)
	Pragma("noescape")
	Doc(fmt.Sprintf("%s is the %d×%d packing transpose of packRows, reading %d-byte elements.", name, nb, nb, srcBytes))
	Load(Param("dst"), RDI)
	Load(Param("w"), RDX)
	shl(log2(dstBytes), RDX)
	Load(Param("src"), RSI)
	// offs is passed by value (a pointer would make the callers' arrays
	// escape, as they call through function values); only nb are used.
	offs := offsRegs[:nb]
	for i, r := range offs {
		Load(Param("offs").Index(i), r)
	}
	Load(Param("blocks"), RCX)
	TESTQ(RCX, RCX)
	JLE(LabelRef("done"))
	loop("loop", RCX, func() {
		load(offs)
		transpose()
		ADDQ(U8(nb*srcBytes), RSI)
	})
	Label("done")
	VZEROUPPER()
	RET()
}

// storeCols stores the registers at DI, DI+DX, … (DI advances).
func storeCols(store func(...Op), cols ...VecPhysical) {
	for _, c := range cols {
		store(c, Mem{Base: RDI})
		ADDQ(RDX, RDI)
	}
}

// transpose8PS transposes float32 rows Y0…Y7 into columns Y8…Y15 and stores them.
func transpose8PS() {
	for i := 0; i < 8; i += 2 {
		VUNPCKLPS(Y[i+1], Y[i], Y[8+i])
		VUNPCKHPS(Y[i+1], Y[i], Y[9+i])
	}
	for i := 0; i < 8; i += 4 {
		VSHUFPS(U8(0x44), Y[10+i], Y[8+i], Y[i])
		VSHUFPS(U8(0xEE), Y[10+i], Y[8+i], Y[i+1])
		VSHUFPS(U8(0x44), Y[11+i], Y[9+i], Y[i+2])
		VSHUFPS(U8(0xEE), Y[11+i], Y[9+i], Y[i+3])
	}
	for i := 0; i < 4; i++ {
		VPERM2F128(U8(0x20), Y[4+i], Y[i], Y[8+i])
	}
	for i := 0; i < 4; i++ {
		VPERM2F128(U8(0x31), Y[4+i], Y[i], Y[12+i])
	}
	storeCols(VMOVUPS, Y[8:16]...)
}

// transpose4PD transposes float64 rows Y0…Y3 into columns Y0…Y3 (via Y4…Y7) and stores them.
func transpose4PD() {
	VUNPCKLPD(Y1, Y0, Y4)
	VUNPCKHPD(Y1, Y0, Y5)
	VUNPCKLPD(Y3, Y2, Y6)
	VUNPCKHPD(Y3, Y2, Y7)
	VPERM2F128(U8(0x20), Y6, Y4, Y0)
	VPERM2F128(U8(0x20), Y7, Y5, Y1)
	VPERM2F128(U8(0x31), Y6, Y4, Y2)
	VPERM2F128(U8(0x31), Y7, Y5, Y3)
	storeCols(VMOVUPD, Y0, Y1, Y2, Y3)
}

// transpose8 is the float32 packing transpose reading w8's source type.
func transpose8(w8 widen8) {
	name := "transpose8" + w8.name + "AVX2"
	src := "uint16"
	if w8.bytes == 4 {
		name, src = "transpose8AVX2", "float32"
	}
	packTranspose(name, fmt.Sprintf("func(dst *float32, w int, src *%s, offs [8]int, blocks int)", src), 4, w8.bytes, 8,
		func(offs []GPPhysical) {
			for i, r := range offs {
				w8.load(Mem{Base: RSI, Index: r, Scale: uint8(w8.bytes)}, Y[i])
			}
		}, transpose8PS)
}

// transpose4F64 is the float64 packing transpose.
func transpose4F64() {
	packTranspose("transpose4AVX2", "func(dst *float64, w int, src *float64, offs [8]int, blocks int)", 8, 8, 4,
		func(offs []GPPhysical) {
			for i, r := range offs {
				VMOVUPD(Mem{Base: RSI, Index: r, Scale: 8}, Y[i])
			}
		}, transpose4PD)
}
