//go:build amd64 && !purego

#include "textflag.h"

// 8×8 transpose of Y0..Y7 (rows) into Y8..Y15 (columns), stored at DI, DI+DX,
// …, DI+7·DX (DI advances by 8·DX).
#define TRANSPOSE8_STORE \
	VUNPCKLPS Y1, Y0, Y8; \
	VUNPCKHPS Y1, Y0, Y9; \
	VUNPCKLPS Y3, Y2, Y10; \
	VUNPCKHPS Y3, Y2, Y11; \
	VUNPCKLPS Y5, Y4, Y12; \
	VUNPCKHPS Y5, Y4, Y13; \
	VUNPCKLPS Y7, Y6, Y14; \
	VUNPCKHPS Y7, Y6, Y15; \
	VSHUFPS $0x44, Y10, Y8, Y0; \
	VSHUFPS $0xEE, Y10, Y8, Y1; \
	VSHUFPS $0x44, Y11, Y9, Y2; \
	VSHUFPS $0xEE, Y11, Y9, Y3; \
	VSHUFPS $0x44, Y14, Y12, Y4; \
	VSHUFPS $0xEE, Y14, Y12, Y5; \
	VSHUFPS $0x44, Y15, Y13, Y6; \
	VSHUFPS $0xEE, Y15, Y13, Y7; \
	VPERM2F128 $0x20, Y4, Y0, Y8; \
	VPERM2F128 $0x20, Y5, Y1, Y9; \
	VPERM2F128 $0x20, Y6, Y2, Y10; \
	VPERM2F128 $0x20, Y7, Y3, Y11; \
	VPERM2F128 $0x31, Y4, Y0, Y12; \
	VPERM2F128 $0x31, Y5, Y1, Y13; \
	VPERM2F128 $0x31, Y6, Y2, Y14; \
	VPERM2F128 $0x31, Y7, Y3, Y15; \
	VMOVUPS Y8, (DI); \
	ADDQ    DX, DI; \
	VMOVUPS Y9, (DI); \
	ADDQ    DX, DI; \
	VMOVUPS Y10, (DI); \
	ADDQ    DX, DI; \
	VMOVUPS Y11, (DI); \
	ADDQ    DX, DI; \
	VMOVUPS Y12, (DI); \
	ADDQ    DX, DI; \
	VMOVUPS Y13, (DI); \
	ADDQ    DX, DI; \
	VMOVUPS Y14, (DI); \
	ADDQ    DX, DI; \
	VMOVUPS Y15, (DI); \
	ADDQ    DX, DI

#define LOADBF16(off, r) \
	VPMOVZXWD (SI)(off*2), r; \
	VPSLLD    $16, r, r


// ---------------------------------------------------------------------------
// AVX2+FMA micro-kernel, 6 rows × 16 columns.
//
// func kern6x16AVX2(kc int, a, b, c *float32, ldc int, acc bool)
//
// a: packed A micro-panel, kc steps of 6 floats; b: packed B micro-panel, kc
// steps of 16 floats. C[6,16] (row stride ldc floats) is overwritten with
// Σ_p a[p]ᵀ·b[p], or has it added when acc is set. kc ≥ 1.
//
// Registers: Y0,Y1 hold one step of B, Y2,Y3 broadcast elements of A,
// Y4..Y15 the 12 accumulators (row i in Y(4+2i), Y(5+2i)).

#define STEP6x16(ao, bo) \
	VMOVUPS bo(DI), Y0; \
	VMOVUPS bo+32(DI), Y1; \
	VBROADCASTSS ao(SI), Y2; \
	VFMADD231PS Y0, Y2, Y4; \
	VFMADD231PS Y1, Y2, Y5; \
	VBROADCASTSS ao+4(SI), Y3; \
	VFMADD231PS Y0, Y3, Y6; \
	VFMADD231PS Y1, Y3, Y7; \
	VBROADCASTSS ao+8(SI), Y2; \
	VFMADD231PS Y0, Y2, Y8; \
	VFMADD231PS Y1, Y2, Y9; \
	VBROADCASTSS ao+12(SI), Y3; \
	VFMADD231PS Y0, Y3, Y10; \
	VFMADD231PS Y1, Y3, Y11; \
	VBROADCASTSS ao+16(SI), Y2; \
	VFMADD231PS Y0, Y2, Y12; \
	VFMADD231PS Y1, Y2, Y13; \
	VBROADCASTSS ao+20(SI), Y3; \
	VFMADD231PS Y0, Y3, Y14; \
	VFMADD231PS Y1, Y3, Y15

#define ROWACC16(r0, r1) \
	VADDPS (DX), r0, r0; \
	VADDPS 32(DX), r1, r1; \
	VMOVUPS r0, (DX); \
	VMOVUPS r1, 32(DX); \
	ADDQ R8, DX

#define ROWST16(r0, r1) \
	VMOVUPS r0, (DX); \
	VMOVUPS r1, 32(DX); \
	ADDQ R8, DX

TEXT ·kern6x16AVX2(SB), NOSPLIT, $0-41
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	VXORPS Y12, Y12, Y12
	VXORPS Y13, Y13, Y13
	VXORPS Y14, Y14, Y14
	VXORPS Y15, Y15, Y15
	CMPQ CX, $4
	JLT  tail

loop4:
	STEP6x16(0, 0)
	STEP6x16(24, 64)
	STEP6x16(48, 128)
	STEP6x16(72, 192)
	ADDQ $96, SI
	ADDQ $256, DI
	SUBQ $4, CX
	CMPQ CX, $4
	JGE  loop4

tail:
	TESTQ CX, CX
	JZ    store

loop1:
	STEP6x16(0, 0)
	ADDQ $24, SI
	ADDQ $64, DI
	DECQ CX
	JNZ  loop1

store:
	MOVBLZX acc+40(FP), AX
	TESTQ   AX, AX
	JZ      overwrite
	ROWACC16(Y4, Y5)
	ROWACC16(Y6, Y7)
	ROWACC16(Y8, Y9)
	ROWACC16(Y10, Y11)
	ROWACC16(Y12, Y13)
	ROWACC16(Y14, Y15)
	VZEROUPPER
	RET

overwrite:
	ROWST16(Y4, Y5)
	ROWST16(Y6, Y7)
	ROWST16(Y8, Y9)
	ROWST16(Y10, Y11)
	ROWST16(Y12, Y13)
	ROWST16(Y14, Y15)
	VZEROUPPER
	RET

// ---------------------------------------------------------------------------
// AVX-512 micro-kernel, 14 rows × 32 columns. Same contract as kern6x16AVX2
// with steps of 14 floats of A and 32 floats of B.
//
// Registers: Z0,Z1 one step of B, Z2,Z3 broadcast elements of A, Z4..Z31 the
// 28 accumulators (row i in Z(4+2i), Z(5+2i)).

#define FMA2(ao, bc, r0, r1) \
	VBROADCASTSS ao(SI), bc; \
	VFMADD231PS Z0, bc, r0; \
	VFMADD231PS Z1, bc, r1

#define STEP14x32(ao, bo) \
	VMOVUPS bo(DI), Z0; \
	VMOVUPS bo+64(DI), Z1; \
	FMA2(ao, Z2, Z4, Z5); \
	FMA2(ao+4, Z3, Z6, Z7); \
	FMA2(ao+8, Z2, Z8, Z9); \
	FMA2(ao+12, Z3, Z10, Z11); \
	FMA2(ao+16, Z2, Z12, Z13); \
	FMA2(ao+20, Z3, Z14, Z15); \
	FMA2(ao+24, Z2, Z16, Z17); \
	FMA2(ao+28, Z3, Z18, Z19); \
	FMA2(ao+32, Z2, Z20, Z21); \
	FMA2(ao+36, Z3, Z22, Z23); \
	FMA2(ao+40, Z2, Z24, Z25); \
	FMA2(ao+44, Z3, Z26, Z27); \
	FMA2(ao+48, Z2, Z28, Z29); \
	FMA2(ao+52, Z3, Z30, Z31)

#define ROWACC32(r0, r1) \
	VADDPS (DX), r0, r0; \
	VADDPS 64(DX), r1, r1; \
	VMOVUPS r0, (DX); \
	VMOVUPS r1, 64(DX); \
	ADDQ R8, DX

#define ROWST32(r0, r1) \
	VMOVUPS r0, (DX); \
	VMOVUPS r1, 64(DX); \
	ADDQ R8, DX

TEXT ·kern14x32AVX512(SB), NOSPLIT, $0-41
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	VPXORD Z16, Z16, Z16
	VPXORD Z17, Z17, Z17
	VPXORD Z18, Z18, Z18
	VPXORD Z19, Z19, Z19
	VPXORD Z20, Z20, Z20
	VPXORD Z21, Z21, Z21
	VPXORD Z22, Z22, Z22
	VPXORD Z23, Z23, Z23
	VPXORD Z24, Z24, Z24
	VPXORD Z25, Z25, Z25
	VPXORD Z26, Z26, Z26
	VPXORD Z27, Z27, Z27
	VPXORD Z28, Z28, Z28
	VPXORD Z29, Z29, Z29
	VPXORD Z30, Z30, Z30
	VPXORD Z31, Z31, Z31
	CMPQ CX, $2
	JLT  tail512

loop512x2:
	STEP14x32(0, 0)
	STEP14x32(56, 128)
	ADDQ $112, SI
	ADDQ $256, DI
	SUBQ $2, CX
	CMPQ CX, $2
	JGE  loop512x2

tail512:
	TESTQ CX, CX
	JZ    store512
	STEP14x32(0, 0)

store512:
	MOVBLZX acc+40(FP), AX
	TESTQ   AX, AX
	JZ      overwrite512
	ROWACC32(Z4, Z5)
	ROWACC32(Z6, Z7)
	ROWACC32(Z8, Z9)
	ROWACC32(Z10, Z11)
	ROWACC32(Z12, Z13)
	ROWACC32(Z14, Z15)
	ROWACC32(Z16, Z17)
	ROWACC32(Z18, Z19)
	ROWACC32(Z20, Z21)
	ROWACC32(Z22, Z23)
	ROWACC32(Z24, Z25)
	ROWACC32(Z26, Z27)
	ROWACC32(Z28, Z29)
	ROWACC32(Z30, Z31)
	VZEROUPPER
	RET

overwrite512:
	ROWST32(Z4, Z5)
	ROWST32(Z6, Z7)
	ROWST32(Z8, Z9)
	ROWST32(Z10, Z11)
	ROWST32(Z12, Z13)
	ROWST32(Z14, Z15)
	ROWST32(Z16, Z17)
	ROWST32(Z18, Z19)
	ROWST32(Z20, Z21)
	ROWST32(Z22, Z23)
	ROWST32(Z24, Z25)
	ROWST32(Z26, Z27)
	ROWST32(Z28, Z29)
	ROWST32(Z30, Z31)
	VZEROUPPER
	RET

// ---------------------------------------------------------------------------
// Peak-throughput loops: n iterations of independent, register-resident FMA
// chains (operands are zero, so no special values arise).

// func peakAVX2(n int)  — 12 ymm chains: 192 flops per iteration.
TEXT ·peakAVX2(SB), NOSPLIT, $0-8
	MOVQ   n+0(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	VXORPS Y14, Y14, Y14
	VXORPS Y15, Y15, Y15
	TESTQ  CX, CX
	JLE    peak2done

peak2loop:
	VFMADD231PS Y14, Y15, Y0
	VFMADD231PS Y14, Y15, Y1
	VFMADD231PS Y14, Y15, Y2
	VFMADD231PS Y14, Y15, Y3
	VFMADD231PS Y14, Y15, Y4
	VFMADD231PS Y14, Y15, Y5
	VFMADD231PS Y14, Y15, Y6
	VFMADD231PS Y14, Y15, Y7
	VFMADD231PS Y14, Y15, Y8
	VFMADD231PS Y14, Y15, Y9
	VFMADD231PS Y14, Y15, Y10
	VFMADD231PS Y14, Y15, Y11
	DECQ        CX
	JNZ         peak2loop

peak2done:
	VZEROUPPER
	RET

// func peakAVX512(n int)  — 24 zmm chains: 768 flops per iteration.
TEXT ·peakAVX512(SB), NOSPLIT, $0-8
	MOVQ   n+0(FP), CX
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	VPXORD Z16, Z16, Z16
	VPXORD Z17, Z17, Z17
	VPXORD Z18, Z18, Z18
	VPXORD Z19, Z19, Z19
	VPXORD Z20, Z20, Z20
	VPXORD Z21, Z21, Z21
	VPXORD Z22, Z22, Z22
	VPXORD Z23, Z23, Z23
	VPXORD Z30, Z30, Z30
	VPXORD Z31, Z31, Z31
	TESTQ  CX, CX
	JLE    peak5done

peak5loop:
	VFMADD231PS Z30, Z31, Z0
	VFMADD231PS Z30, Z31, Z1
	VFMADD231PS Z30, Z31, Z2
	VFMADD231PS Z30, Z31, Z3
	VFMADD231PS Z30, Z31, Z4
	VFMADD231PS Z30, Z31, Z5
	VFMADD231PS Z30, Z31, Z6
	VFMADD231PS Z30, Z31, Z7
	VFMADD231PS Z30, Z31, Z8
	VFMADD231PS Z30, Z31, Z9
	VFMADD231PS Z30, Z31, Z10
	VFMADD231PS Z30, Z31, Z11
	VFMADD231PS Z30, Z31, Z12
	VFMADD231PS Z30, Z31, Z13
	VFMADD231PS Z30, Z31, Z14
	VFMADD231PS Z30, Z31, Z15
	VFMADD231PS Z30, Z31, Z16
	VFMADD231PS Z30, Z31, Z17
	VFMADD231PS Z30, Z31, Z18
	VFMADD231PS Z30, Z31, Z19
	VFMADD231PS Z30, Z31, Z20
	VFMADD231PS Z30, Z31, Z21
	VFMADD231PS Z30, Z31, Z22
	VFMADD231PS Z30, Z31, Z23
	DECQ        CX
	JNZ         peak5loop

peak5done:
	VZEROUPPER
	RET

// ---------------------------------------------------------------------------
// Widening conversions (AVX2, F16C). n must be a multiple of 8.

// func widenBF16AVX2(dst *float32, src *uint16, n int)
TEXT ·widenBF16AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $3, CX
	JZ   wbdone

wbloop:
	VPMOVZXWD (SI), Y0
	VPSLLD    $16, Y0, Y0
	VMOVUPS   Y0, (DI)
	ADDQ      $16, SI
	ADDQ      $32, DI
	DECQ      CX
	JNZ       wbloop

wbdone:
	VZEROUPPER
	RET

// func widenF16F16C(dst *float32, src *uint16, n int)
TEXT ·widenF16F16C(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $3, CX
	JZ   wfdone

wfloop:
	VCVTPH2PS (SI), Y0
	VMOVUPS   Y0, (DI)
	ADDQ      $16, SI
	ADDQ      $32, DI
	DECQ      CX
	JNZ       wfloop

wfdone:
	VZEROUPPER
	RET

// ---------------------------------------------------------------------------
// func transpose8AVX2(dst *float32, w int, src *float32, offs *[8]int, blocks int)
//
// Packing transpose: for b < blocks and p < 8, stores the 8 floats
// src[offs[0]+8b+p], …, src[offs[7]+8b+p] at dst[(8b+p)·w]. Stores are 8 wide
// and made in increasing order of p, so with w < 8 each one spills into the
// next step, which a later store overwrites.
TEXT ·transpose8AVX2(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ w+8(FP), DX
	SHLQ $2, DX
	MOVQ src+16(FP), SI
	MOVQ offs+24(FP), AX
	MOVQ blocks+32(FP), CX
	MOVQ 0(AX), R8
	MOVQ 8(AX), R9
	MOVQ 16(AX), R10
	MOVQ 24(AX), R11
	MOVQ 32(AX), R12
	MOVQ 40(AX), R13
	MOVQ 48(AX), BX
	MOVQ 56(AX), AX
	TESTQ CX, CX
	JLE   trdone

trloop:
	VMOVUPS (SI)(R8*4), Y0
	VMOVUPS (SI)(R9*4), Y1
	VMOVUPS (SI)(R10*4), Y2
	VMOVUPS (SI)(R11*4), Y3
	VMOVUPS (SI)(R12*4), Y4
	VMOVUPS (SI)(R13*4), Y5
	VMOVUPS (SI)(BX*4), Y6
	VMOVUPS (SI)(AX*4), Y7
	TRANSPOSE8_STORE
	ADDQ    $32, SI
	DECQ    CX
	JNZ     trloop

trdone:
	VZEROUPPER
	RET

// func transpose8BF16AVX2(dst *float32, w int, src *uint16, offs *[8]int, blocks int)
//
// transpose8AVX2 reading bfloat16 (widened by a shift).
TEXT ·transpose8BF16AVX2(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ w+8(FP), DX
	SHLQ $2, DX
	MOVQ src+16(FP), SI
	MOVQ offs+24(FP), AX
	MOVQ blocks+32(FP), CX
	MOVQ 0(AX), R8
	MOVQ 8(AX), R9
	MOVQ 16(AX), R10
	MOVQ 24(AX), R11
	MOVQ 32(AX), R12
	MOVQ 40(AX), R13
	MOVQ 48(AX), BX
	MOVQ 56(AX), AX
	TESTQ CX, CX
	JLE   trbdone

trbloop:
	LOADBF16(R8, Y0)
	LOADBF16(R9, Y1)
	LOADBF16(R10, Y2)
	LOADBF16(R11, Y3)
	LOADBF16(R12, Y4)
	LOADBF16(R13, Y5)
	LOADBF16(BX, Y6)
	LOADBF16(AX, Y7)
	TRANSPOSE8_STORE
	ADDQ $16, SI
	DECQ CX
	JNZ  trbloop

trbdone:
	VZEROUPPER
	RET

// func transpose8F16AVX2(dst *float32, w int, src *uint16, offs *[8]int, blocks int)
//
// transpose8AVX2 reading IEEE binary16 (widened with F16C).
TEXT ·transpose8F16AVX2(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ w+8(FP), DX
	SHLQ $2, DX
	MOVQ src+16(FP), SI
	MOVQ offs+24(FP), AX
	MOVQ blocks+32(FP), CX
	MOVQ 0(AX), R8
	MOVQ 8(AX), R9
	MOVQ 16(AX), R10
	MOVQ 24(AX), R11
	MOVQ 32(AX), R12
	MOVQ 40(AX), R13
	MOVQ 48(AX), BX
	MOVQ 56(AX), AX
	TESTQ CX, CX
	JLE   trfdone

trfloop:
	VCVTPH2PS (SI)(R8*2), Y0
	VCVTPH2PS (SI)(R9*2), Y1
	VCVTPH2PS (SI)(R10*2), Y2
	VCVTPH2PS (SI)(R11*2), Y3
	VCVTPH2PS (SI)(R12*2), Y4
	VCVTPH2PS (SI)(R13*2), Y5
	VCVTPH2PS (SI)(BX*2), Y6
	VCVTPH2PS (SI)(AX*2), Y7
	TRANSPOSE8_STORE
	ADDQ $16, SI
	DECQ CX
	JNZ  trfloop

trfdone:
	VZEROUPPER
	RET

// ---------------------------------------------------------------------------
// Matrix-vector helpers (AVX2).

// func dotAVX2(a, b *float32, n int) float32  — n a multiple of 32.
TEXT ·dotAVX2(SB), NOSPLIT, $0-28
	MOVQ   a+0(FP), SI
	MOVQ   b+8(FP), DI
	MOVQ   n+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	SHRQ   $5, CX
	JZ     dotsum

dotloop:
	VMOVUPS     (SI), Y4
	VMOVUPS     32(SI), Y5
	VMOVUPS     64(SI), Y6
	VMOVUPS     96(SI), Y7
	VFMADD231PS (DI), Y4, Y0
	VFMADD231PS 32(DI), Y5, Y1
	VFMADD231PS 64(DI), Y6, Y2
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ        $128, SI
	ADDQ        $128, DI
	DECQ        CX
	JNZ         dotloop

dotsum:
	VADDPS       Y1, Y0, Y0
	VADDPS       Y3, Y2, Y2
	VADDPS       Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	VZEROUPPER
	MOVSS        X0, ret+24(FP)
	RET

// func dotBF16AVX2(a *float32, b *uint16, n int) float32  — n a multiple of 32.
TEXT ·dotBF16AVX2(SB), NOSPLIT, $0-28
	MOVQ   a+0(FP), SI
	MOVQ   b+8(FP), DI
	MOVQ   n+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	SHRQ   $5, CX
	JZ     dbsum

dbloop:
	VPMOVZXWD   (DI), Y4
	VPMOVZXWD   16(DI), Y5
	VPMOVZXWD   32(DI), Y6
	VPMOVZXWD   48(DI), Y7
	VPSLLD      $16, Y4, Y4
	VPSLLD      $16, Y5, Y5
	VPSLLD      $16, Y6, Y6
	VPSLLD      $16, Y7, Y7
	VFMADD231PS (SI), Y4, Y0
	VFMADD231PS 32(SI), Y5, Y1
	VFMADD231PS 64(SI), Y6, Y2
	VFMADD231PS 96(SI), Y7, Y3
	ADDQ        $128, SI
	ADDQ        $64, DI
	DECQ        CX
	JNZ         dbloop

dbsum:
	VADDPS       Y1, Y0, Y0
	VADDPS       Y3, Y2, Y2
	VADDPS       Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	VZEROUPPER
	MOVSS        X0, ret+24(FP)
	RET

// func int4PanelAVX2(dst *float32, w int, qw *int32, n int, gidx *int32, sc *float32, zs *int32, ldt int, p0, p1 int)
//
// Dequantizes 16 consecutive outputs (qw, sc and zs point at the first) for
// inputs p in [p0, p1): dst[(p−p0)·w + c] = sc[g·ldt+c]·float(nibble(qw[(p/8)·n+c], p%8) − zs[g·ldt+c])
// with g = gidx[p].
TEXT ·int4PanelAVX2(SB), NOSPLIT, $0-80
	MOVQ dst+0(FP), DI
	MOVQ w+8(FP), R13
	SHLQ $2, R13
	MOVQ qw+16(FP), SI
	MOVQ n+24(FP), R8
	SHLQ $2, R8
	MOVQ gidx+32(FP), R9
	MOVQ sc+40(FP), R10
	MOVQ zs+48(FP), R11
	MOVQ ldt+56(FP), R12
	SHLQ $2, R12
	MOVQ p0+64(FP), CX
	MOVQ p1+72(FP), BX
	SUBQ CX, BX
	JLE  i4pdone
	MOVL         $15, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15

i4ploop:
	MOVQ      CX, AX
	ANDQ      $7, AX
	SHLQ      $2, AX
	VMOVQ     AX, X14
	MOVLQSX   (R9)(CX*4), AX
	IMULQ     R12, AX
	MOVQ      CX, DX
	SHRQ      $3, DX
	IMULQ     R8, DX
	VMOVDQU   (SI)(DX*1), Y0
	VMOVDQU   32(SI)(DX*1), Y1
	VPSRLD    X14, Y0, Y0
	VPSRLD    X14, Y1, Y1
	VPAND     Y15, Y0, Y0
	VPAND     Y15, Y1, Y1
	VPSUBD    (R11)(AX*1), Y0, Y0
	VPSUBD    32(R11)(AX*1), Y1, Y1
	VCVTDQ2PS Y0, Y0
	VCVTDQ2PS Y1, Y1
	VMULPS    (R10)(AX*1), Y0, Y0
	VMULPS    32(R10)(AX*1), Y1, Y1
	VMOVUPS   Y0, (DI)
	VMOVUPS   Y1, 32(DI)
	ADDQ      R13, DI
	INCQ      CX
	DECQ      BX
	JNZ       i4ploop

i4pdone:
	VZEROUPPER
	RET

// One input of the int4 matrix-vector product: j is the input's index within
// its word (0…7), acc0/acc1 the accumulators it adds to.
#define I4STEP(j, acc0, acc1) \
	MOVLQSX      (j*4)(R9), AX; \
	IMULQ        R12, AX; \
	VBROADCASTSS (j*4)(DX), Y4; \
	VPSRLD       $(4*j), Y2, Y5; \
	VPSRLD       $(4*j), Y3, Y6; \
	VPAND        Y15, Y5, Y5; \
	VPAND        Y15, Y6, Y6; \
	VPSUBD       (R11)(AX*1), Y5, Y5; \
	VPSUBD       32(R11)(AX*1), Y6, Y6; \
	VCVTDQ2PS    Y5, Y5; \
	VCVTDQ2PS    Y6, Y6; \
	VMULPS       (R10)(AX*1), Y5, Y5; \
	VMULPS       32(R10)(AX*1), Y6, Y6; \
	VFMADD231PS  Y5, Y4, acc0; \
	VFMADD231PS  Y6, Y4, acc1

// func int4DotAVX2(y *float32, a *float32, qw *int32, n int, gidx *int32, sc *float32, zs *int32, ldt int, rows int)
//
// y[c] = Σ_{i<8·rows} a[i]·sc[g·ldt+c]·(nibble(qw[(i/8)·n+c], i%8) − zs[g·ldt+c]),
// g = gidx[i], for the 16 outputs c < 16 that qw, sc and zs point at.
TEXT ·int4DotAVX2(SB), NOSPLIT, $0-72
	MOVQ y+0(FP), DI
	MOVQ a+8(FP), DX
	MOVQ qw+16(FP), SI
	MOVQ n+24(FP), R8
	SHLQ $2, R8
	MOVQ gidx+32(FP), R9
	MOVQ sc+40(FP), R10
	MOVQ zs+48(FP), R11
	MOVQ ldt+56(FP), R12
	SHLQ $2, R12
	MOVQ rows+64(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	TESTQ CX, CX
	JLE   i4dstore
	MOVL         $15, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15

i4dloop:
	VMOVDQU (SI), Y2
	VMOVDQU 32(SI), Y3
	I4STEP(0, Y0, Y1)
	I4STEP(1, Y7, Y8)
	I4STEP(2, Y0, Y1)
	I4STEP(3, Y7, Y8)
	I4STEP(4, Y0, Y1)
	I4STEP(5, Y7, Y8)
	I4STEP(6, Y0, Y1)
	I4STEP(7, Y7, Y8)
	ADDQ R8, SI
	ADDQ $32, R9
	ADDQ $32, DX
	DECQ CX
	JNZ  i4dloop

i4dstore:
	VADDPS  Y7, Y0, Y0
	VADDPS  Y8, Y1, Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VZEROUPPER
	RET

// Lane masks: maskTable<>+4·(8−r) holds r lanes set, then clear ones.
DATA maskTable<>+0(SB)/4, $0xffffffff
DATA maskTable<>+4(SB)/4, $0xffffffff
DATA maskTable<>+8(SB)/4, $0xffffffff
DATA maskTable<>+12(SB)/4, $0xffffffff
DATA maskTable<>+16(SB)/4, $0xffffffff
DATA maskTable<>+20(SB)/4, $0xffffffff
DATA maskTable<>+24(SB)/4, $0xffffffff
DATA maskTable<>+28(SB)/4, $0xffffffff
DATA maskTable<>+32(SB)/4, $0
DATA maskTable<>+36(SB)/4, $0
DATA maskTable<>+40(SB)/4, $0
DATA maskTable<>+44(SB)/4, $0
DATA maskTable<>+48(SB)/4, $0
DATA maskTable<>+52(SB)/4, $0
DATA maskTable<>+56(SB)/4, $0
DATA maskTable<>+60(SB)/4, $0
GLOBL maskTable<>(SB), RODATA|NOPTR, $64

// func packColsAVX2(dst, src *float32, ld, w, kc, panels int)
//
// Packs panels of a column-major operand: for q < panels, p < kc, i < w,
// dst[(q·kc+p)·w+i] = src[p·ld+q·w+i]. Loads never pass the w floats of a
// step (the last partial vector is a masked load); stores are 8 wide and in
// increasing order, so with w%8 ≠ 0 each spills up to 7 zeros into the next
// step (overwritten by it) or past the last panel (the caller's slack).
TEXT ·packColsAVX2(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), R8
	SHLQ $2, R8
	MOVQ w+24(FP), R12
	MOVQ kc+32(FP), R10
	MOVQ panels+40(FP), BX
	MOVQ R12, R11
	SHRQ $3, R11          // full vectors per step
	MOVQ R12, AX
	ANDQ $7, AX           // floats in the last, partial vector
	MOVQ $8, CX
	SUBQ AX, CX
	LEAQ maskTable<>(SB), DX
	VMOVDQU (DX)(CX*4), Y15
	SHLQ $2, R12          // bytes per step
	TESTQ BX, BX
	JLE  pcdone
	TESTQ R10, R10
	JLE  pcdone

pcpanel:
	MOVQ SI, R13
	MOVQ R10, CX

pcstep:
	XORQ  DX, DX
	MOVQ  R11, R9
	TESTQ R9, R9
	JZ    pcrem

pcvec:
	VMOVUPS (R13)(DX*1), Y0
	VMOVUPS Y0, (DI)(DX*1)
	ADDQ    $32, DX
	DECQ    R9
	JNZ     pcvec

pcrem:
	TESTQ      AX, AX
	JZ         pcnext
	VMASKMOVPS (R13)(DX*1), Y15, Y0
	VMOVUPS    Y0, (DI)(DX*1)

pcnext:
	ADDQ R8, R13
	ADDQ R12, DI
	DECQ CX
	JNZ  pcstep
	ADDQ R12, SI
	DECQ BX
	JNZ  pcpanel

pcdone:
	VZEROUPPER
	RET

// One input of the sorted-groups int4 matrix-vector product: t0/t1 += a[j]·q_j.
#define I4SSTEP(j, t0, t1) \
	VBROADCASTSS (j*4)(DX), Y4; \
	VPSRLD       $(4*j), Y2, Y5; \
	VPSRLD       $(4*j), Y3, Y6; \
	VPAND        Y15, Y5, Y5; \
	VPAND        Y15, Y6, Y6; \
	VCVTDQ2PS    Y5, Y5; \
	VCVTDQ2PS    Y6, Y6; \
	VFMADD231PS  Y5, Y4, t0; \
	VFMADD231PS  Y6, Y4, t1

// func int4DotSortedAVX2(y *float32, a *float32, qw *int32, n int, rowGroup *int32, sc, zsc *float32, ldt int, rows int, asum *float32)
//
// int4DotAVX2 for matrices whose 8 inputs of a word share a group (rowGroup[r]
// for word row r): y[c] = Σ_r sc[g]·Σ_j a[8r+j]·q − zsc[g]·asum[r], with
// zsc = scale·zero and asum[r] = Σ_j a[8r+j], for the 16 outputs c < 16.
TEXT ·int4DotSortedAVX2(SB), NOSPLIT, $0-80
	MOVQ y+0(FP), DI
	MOVQ a+8(FP), DX
	MOVQ qw+16(FP), SI
	MOVQ n+24(FP), R8
	SHLQ $2, R8
	MOVQ rowGroup+32(FP), R9
	MOVQ sc+40(FP), R10
	MOVQ zsc+48(FP), R11
	MOVQ ldt+56(FP), R12
	SHLQ $2, R12
	MOVQ rows+64(FP), CX
	MOVQ asum+72(FP), BX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	TESTQ CX, CX
	JLE   i4sstore
	MOVL         $15, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15

i4sloop:
	VMOVDQU (SI), Y2
	VMOVDQU 32(SI), Y3
	VXORPS  Y8, Y8, Y8
	VXORPS  Y9, Y9, Y9
	VXORPS  Y10, Y10, Y10
	VXORPS  Y11, Y11, Y11
	I4SSTEP(0, Y8, Y9)
	I4SSTEP(1, Y10, Y11)
	I4SSTEP(2, Y8, Y9)
	I4SSTEP(3, Y10, Y11)
	I4SSTEP(4, Y8, Y9)
	I4SSTEP(5, Y10, Y11)
	I4SSTEP(6, Y8, Y9)
	I4SSTEP(7, Y10, Y11)
	VADDPS       Y10, Y8, Y8
	VADDPS       Y11, Y9, Y9
	MOVLQSX      (R9), AX
	IMULQ        R12, AX
	VFMADD231PS  (R10)(AX*1), Y8, Y0
	VFMADD231PS  32(R10)(AX*1), Y9, Y1
	VBROADCASTSS (BX), Y4
	VFNMADD231PS (R11)(AX*1), Y4, Y0
	VFNMADD231PS 32(R11)(AX*1), Y4, Y1
	ADDQ R8, SI
	ADDQ $4, R9
	ADDQ $4, BX
	ADDQ $32, DX
	DECQ CX
	JNZ  i4sloop

i4sstore:
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VZEROUPPER
	RET

// ---------------------------------------------------------------------------
// Dot-form tile for few rows of A: 6 rows of A × 2 rows of B, summed along k
// in vectors; no packing. A rows at SI, SI+R8, SI+2·R8, R9, R9+R8, R9+2·R8
// (R9 = SI+3·R8); B rows at DI and DI+R10. out receives the 12 vector
// accumulators (row r of A with row j of B in out[(2r+j)·8 : +8]), to be
// summed by the caller.

#define DOT6x2STEP \
	VMOVUPS     (SI), Y2; \
	VFMADD231PS Y0, Y2, Y4; \
	VFMADD231PS Y1, Y2, Y5; \
	VMOVUPS     (SI)(R8*1), Y3; \
	VFMADD231PS Y0, Y3, Y6; \
	VFMADD231PS Y1, Y3, Y7; \
	VMOVUPS     (SI)(R8*2), Y2; \
	VFMADD231PS Y0, Y2, Y8; \
	VFMADD231PS Y1, Y2, Y9; \
	VMOVUPS     (R9), Y3; \
	VFMADD231PS Y0, Y3, Y10; \
	VFMADD231PS Y1, Y3, Y11; \
	VMOVUPS     (R9)(R8*1), Y2; \
	VFMADD231PS Y0, Y2, Y12; \
	VFMADD231PS Y1, Y2, Y13; \
	VMOVUPS     (R9)(R8*2), Y3; \
	VFMADD231PS Y0, Y3, Y14; \
	VFMADD231PS Y1, Y3, Y15; \
	ADDQ        $32, SI; \
	ADDQ        $32, R9

#define DOT6x2STORE \
	VMOVUPS Y4, (DX); \
	VMOVUPS Y5, 32(DX); \
	VMOVUPS Y6, 64(DX); \
	VMOVUPS Y7, 96(DX); \
	VMOVUPS Y8, 128(DX); \
	VMOVUPS Y9, 160(DX); \
	VMOVUPS Y10, 192(DX); \
	VMOVUPS Y11, 224(DX); \
	VMOVUPS Y12, 256(DX); \
	VMOVUPS Y13, 288(DX); \
	VMOVUPS Y14, 320(DX); \
	VMOVUPS Y15, 352(DX)

#define DOT6x2ZERO \
	VXORPS Y4, Y4, Y4; \
	VXORPS Y5, Y5, Y5; \
	VXORPS Y6, Y6, Y6; \
	VXORPS Y7, Y7, Y7; \
	VXORPS Y8, Y8, Y8; \
	VXORPS Y9, Y9, Y9; \
	VXORPS Y10, Y10, Y10; \
	VXORPS Y11, Y11, Y11; \
	VXORPS Y12, Y12, Y12; \
	VXORPS Y13, Y13, Y13; \
	VXORPS Y14, Y14, Y14; \
	VXORPS Y15, Y15, Y15

// func dot6x2F32AVX2(a *float32, lda int, b *float32, ldb int, k8 int, out *[96]float32)
// k8: number of 8-float steps.
TEXT ·dot6x2F32AVX2(SB), NOSPLIT, $0-48
	MOVQ a+0(FP), SI
	MOVQ lda+8(FP), R8
	SHLQ $2, R8
	MOVQ b+16(FP), DI
	MOVQ ldb+24(FP), R10
	SHLQ $2, R10
	MOVQ k8+32(FP), CX
	MOVQ out+40(FP), DX
	LEAQ (SI)(R8*2), R9
	ADDQ R8, R9
	DOT6x2ZERO
	TESTQ CX, CX
	JLE   d6fstore

d6floop:
	VMOVUPS (DI), Y0
	VMOVUPS (DI)(R10*1), Y1
	ADDQ    $32, DI
	DOT6x2STEP
	DECQ    CX
	JNZ     d6floop

d6fstore:
	DOT6x2STORE
	VZEROUPPER
	RET

// func dot6x2BF16AVX2(a *float32, lda int, b *uint16, ldb int, k8 int, out *[96]float32)
TEXT ·dot6x2BF16AVX2(SB), NOSPLIT, $0-48
	MOVQ a+0(FP), SI
	MOVQ lda+8(FP), R8
	SHLQ $2, R8
	MOVQ b+16(FP), DI
	MOVQ ldb+24(FP), R10
	SHLQ $1, R10
	MOVQ k8+32(FP), CX
	MOVQ out+40(FP), DX
	LEAQ (SI)(R8*2), R9
	ADDQ R8, R9
	DOT6x2ZERO
	TESTQ CX, CX
	JLE   d6bstore

d6bloop:
	VPMOVZXWD (DI), Y0
	VPMOVZXWD (DI)(R10*1), Y1
	VPSLLD    $16, Y0, Y0
	VPSLLD    $16, Y1, Y1
	ADDQ      $16, DI
	DOT6x2STEP
	DECQ      CX
	JNZ       d6bloop

d6bstore:
	DOT6x2STORE
	VZEROUPPER
	RET

// func dot6x2F16AVX2(a *float32, lda int, b *uint16, ldb int, k8 int, out *[96]float32)
TEXT ·dot6x2F16AVX2(SB), NOSPLIT, $0-48
	MOVQ a+0(FP), SI
	MOVQ lda+8(FP), R8
	SHLQ $2, R8
	MOVQ b+16(FP), DI
	MOVQ ldb+24(FP), R10
	SHLQ $1, R10
	MOVQ k8+32(FP), CX
	MOVQ out+40(FP), DX
	LEAQ (SI)(R8*2), R9
	ADDQ R8, R9
	DOT6x2ZERO
	TESTQ CX, CX
	JLE   d6hstore

d6hloop:
	VCVTPH2PS (DI), Y0
	VCVTPH2PS (DI)(R10*1), Y1
	ADDQ      $16, DI
	DOT6x2STEP
	DECQ      CX
	JNZ       d6hloop

d6hstore:
	DOT6x2STORE
	VZEROUPPER
	RET
