//go:build amd64 && !purego

#include "textflag.h"

// func kern6x8AVX2(kc int, a, b, c *float64, ldc int, alpha float64)
//
// C[6, 8] += alpha · Σ_p a[p]ᵀ·b[p] for kc ≥ 1 steps of a packed A micro-panel
// (6 float64 a step) and a packed B micro-panel (8 float64 a step); C has row
// stride ldc elements.
//
// Registers: Y0,Y1 one step of B, Y2,Y3 broadcast elements of A, Y4..Y15 the
// accumulators (row i in Y(4+2i), Y(5+2i)).

#define STEP(ao, bo) \
	VMOVUPD bo(DI), Y0; \
	VMOVUPD bo+32(DI), Y1; \
	VBROADCASTSD ao(SI), Y2; \
	VFMADD231PD Y0, Y2, Y4; \
	VFMADD231PD Y1, Y2, Y5; \
	VBROADCASTSD ao+8(SI), Y3; \
	VFMADD231PD Y0, Y3, Y6; \
	VFMADD231PD Y1, Y3, Y7; \
	VBROADCASTSD ao+16(SI), Y2; \
	VFMADD231PD Y0, Y2, Y8; \
	VFMADD231PD Y1, Y2, Y9; \
	VBROADCASTSD ao+24(SI), Y3; \
	VFMADD231PD Y0, Y3, Y10; \
	VFMADD231PD Y1, Y3, Y11; \
	VBROADCASTSD ao+32(SI), Y2; \
	VFMADD231PD Y0, Y2, Y12; \
	VFMADD231PD Y1, Y2, Y13; \
	VBROADCASTSD ao+40(SI), Y3; \
	VFMADD231PD Y0, Y3, Y14; \
	VFMADD231PD Y1, Y3, Y15

// C row += alpha·acc, with Y2 = alpha broadcast; Y0, Y1 scratch.
#define ROW(r0, r1) \
	VMOVUPD (DX), Y0; \
	VMOVUPD 32(DX), Y1; \
	VFMADD231PD Y2, r0, Y0; \
	VFMADD231PD Y2, r1, Y1; \
	VMOVUPD Y0, (DX); \
	VMOVUPD Y1, 32(DX); \
	ADDQ R8, DX

TEXT ·kern6x8AVX2(SB), NOSPLIT, $0-48
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $3, R8
	VXORPD Y4, Y4, Y4
	VXORPD Y5, Y5, Y5
	VXORPD Y6, Y6, Y6
	VXORPD Y7, Y7, Y7
	VXORPD Y8, Y8, Y8
	VXORPD Y9, Y9, Y9
	VXORPD Y10, Y10, Y10
	VXORPD Y11, Y11, Y11
	VXORPD Y12, Y12, Y12
	VXORPD Y13, Y13, Y13
	VXORPD Y14, Y14, Y14
	VXORPD Y15, Y15, Y15
	CMPQ CX, $4
	JLT  tail

loop4:
	STEP(0, 0)
	STEP(48, 64)
	STEP(96, 128)
	STEP(144, 192)
	ADDQ $192, SI
	ADDQ $256, DI
	SUBQ $4, CX
	CMPQ CX, $4
	JGE  loop4

tail:
	TESTQ CX, CX
	JZ    store

loop1:
	STEP(0, 0)
	ADDQ $48, SI
	ADDQ $64, DI
	DECQ CX
	JNZ  loop1

store:
	VBROADCASTSD alpha+40(FP), Y2
	ROW(Y4, Y5)
	ROW(Y6, Y7)
	ROW(Y8, Y9)
	ROW(Y10, Y11)
	ROW(Y12, Y13)
	ROW(Y14, Y15)
	VZEROUPPER
	RET

// func transpose4AVX2(dst *float64, w int, src *float64, offs *[4]int, blocks int)
//
// Packing transpose: for b < blocks and p < 4, stores the 4 float64
// src[offs[0]+4b+p], …, src[offs[3]+4b+p] at dst[(4b+p)·w], in increasing
// order of p (with w < 4 a store spills into the next step, overwritten later).
TEXT ·transpose4AVX2(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ w+8(FP), DX
	SHLQ $3, DX
	MOVQ src+16(FP), SI
	MOVQ offs+24(FP), AX
	MOVQ blocks+32(FP), CX
	MOVQ 0(AX), R8
	MOVQ 8(AX), R9
	MOVQ 16(AX), R10
	MOVQ 24(AX), R11
	TESTQ CX, CX
	JLE   trdone

trloop:
	VMOVUPD (SI)(R8*8), Y0
	VMOVUPD (SI)(R9*8), Y1
	VMOVUPD (SI)(R10*8), Y2
	VMOVUPD (SI)(R11*8), Y3
	VUNPCKLPD Y1, Y0, Y4
	VUNPCKHPD Y1, Y0, Y5
	VUNPCKLPD Y3, Y2, Y6
	VUNPCKHPD Y3, Y2, Y7
	VPERM2F128 $0x20, Y6, Y4, Y0
	VPERM2F128 $0x20, Y7, Y5, Y1
	VPERM2F128 $0x31, Y6, Y4, Y2
	VPERM2F128 $0x31, Y7, Y5, Y3
	VMOVUPD Y0, (DI)
	ADDQ    DX, DI
	VMOVUPD Y1, (DI)
	ADDQ    DX, DI
	VMOVUPD Y2, (DI)
	ADDQ    DX, DI
	VMOVUPD Y3, (DI)
	ADDQ    DX, DI
	ADDQ    $32, SI
	DECQ    CX
	JNZ     trloop

trdone:
	VZEROUPPER
	RET
