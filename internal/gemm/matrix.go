// Package gemm holds the matrix products of the forward pass and of GPTQ.
//
// The central operation is C = A·Bᵀ where A [m, k] holds activations (one row
// per token) and B [n, k] is a weight in the checkpoint layout [out, in]. B may
// be stored as float32, bfloat16, float16, GPTQ int4 (Int4, the SIMD path)
// or GPTQ 2/3/8-bit (GPTQ, dequantized in Go); it is widened to
// float32 panel by panel inside the product, never as a whole.
//
// Products are cache-blocked in the usual way: a worker owns a tile of C,
// packs a block of B (kc deep, widened or dequantized on the way) so that each
// register-tile's slice of it stays in L1, packs blocks of A into L2, and runs
// a micro-kernel that keeps an mr×nr tile of C in registers. Tiles of C are
// spread over Threads() goroutines. A single row (m = 1) takes matrix-vector
// paths that read B once (dequantizing int4 on the fly).
//
// Implementations, chosen at start-up from the CPU (golang.org/x/sys/cpu):
//
//	avx512  14×32 micro-kernel on zmm registers (AVX-512F), AVX2 packing
//	avx2    6×16 micro-kernel (AVX2+FMA), SIMD packing, widening, int4 dequant
//	go      portable Go (2×4), also the only one with -tags purego or off amd64
//
// SetImpl (or MOEFORGE_GEMM=avx2, …) forces one; the tests run every
// available implementation. Accumulation is in float32; results differ from
// a float64 sum by a few units of float32 rounding relative to Σ|a||b|.
package gemm

import "fmt"

// Matrix is a read-only weight matrix of Rows() × Cols() elements ([out, in]).
type Matrix interface {
	Rows() int
	Cols() int
	// Widen writes the float32 value of rows [r0, r1) × columns [c0, c1) into
	// dst, row-major with row stride ld (ld ≥ c1−c0).
	Widen(dst []float32, ld, r0, r1, c0, c1 int)
}

// F32 is a row-major float32 matrix.
type F32 struct {
	Data []float32
	N, K int
}

// Rows returns N.
func (m F32) Rows() int { return m.N }

// Cols returns K.
func (m F32) Cols() int { return m.K }

// Widen copies a block.
func (m F32) Widen(dst []float32, ld, r0, r1, c0, c1 int) {
	for r := r0; r < r1; r++ {
		copy(dst[(r-r0)*ld:(r-r0)*ld+c1-c0], m.Data[r*m.K+c0:r*m.K+c1])
	}
}

// BF16 is a row-major bfloat16 matrix (raw bit patterns).
type BF16 struct {
	Data []uint16
	N, K int
}

// Rows returns N.
func (m BF16) Rows() int { return m.N }

// Cols returns K.
func (m BF16) Cols() int { return m.K }

// Widen converts a block to float32.
func (m BF16) Widen(dst []float32, ld, r0, r1, c0, c1 int) {
	for r := r0; r < r1; r++ {
		active.Load().widenBF16(dst[(r-r0)*ld:(r-r0)*ld+c1-c0], m.Data[r*m.K+c0:r*m.K+c1])
	}
}

// F16 is a row-major IEEE binary16 matrix (raw bit patterns).
type F16 struct {
	Data []uint16
	N, K int
}

// Rows returns N.
func (m F16) Rows() int { return m.N }

// Cols returns K.
func (m F16) Cols() int { return m.K }

// Widen converts a block to float32.
func (m F16) Widen(dst []float32, ld, r0, r1, c0, c1 int) {
	for r := r0; r < r1; r++ {
		active.Load().widenF16(dst[(r-r0)*ld:(r-r0)*ld+c1-c0], m.Data[r*m.K+c0:r*m.K+c1])
	}
}

// Int4 is a GPTQ 4-bit matrix in the AutoGPTQ "gptq" (v1) layout for a linear
// layer with weight [N=out, K=in]:
//
//	QWeight [K/8, N]          nibble j of word [r, c] = code of input 8r+j, output c
//	QZeros  [groups, N/8]     nibble j of word [g, c] = zero−1 of group g, output 8c+j
//	Scales  [groups, N]       float16 bit patterns
//	GIdx    [K]               group of each input
//
// W[c, i] = scale[g, c] · (q[i, c] − (zero_nibble[g, c] + 1)), g = GIdx[i];
// with V2 (GPTQModel's gptq_v2 layout) the nibble is the zero itself.
type Int4 struct {
	QWeight []int32
	QZeros  []int32
	Scales  []uint16
	GIdx    []int32
	N, K    int
	V2      bool
}

// Rows returns N (output features).
func (m Int4) Rows() int { return m.N }

// Cols returns K (input features).
func (m Int4) Cols() int { return m.K }

// Widen dequantizes a block: 16 outputs × up to 256 inputs at a time into a
// panel (with the SIMD dequantization of the products), then transposed into
// the rows of dst.
func (m Int4) Widen(dst []float32, ld, r0, r1, c0, c1 int) {
	if r0 >= r1 || c0 >= c1 {
		return
	}
	const w, depth = 16, 256
	k := active.Load()
	ws, _ := workspaces.Get().(*workspace)
	if ws == nil {
		ws = new(workspace)
	}
	defer workspaces.Put(ws)
	// The SIMD dequantization indexes the group tables by g_idx unchecked.
	groups := len(m.Scales) / max(m.N, 1)
	for i, g := range m.GIdx[c0:c1] {
		if g < 0 || int(g) >= groups {
			panic(fmt.Sprintf("gemm: int4 matrix: g_idx[%d] = %d outside [0, %d)", c0+i, g, groups))
		}
	}
	sc, zs := ws.int4Tables(&m, r0, r1)
	ws.tmp = grow(ws.tmp, w*depth)
	tmp := ws.tmp
	for cb := r0; cb < r1; cb += w {
		rows := min(w, r1-cb)
		for p0 := c0; p0 < c1; p0 += depth {
			p1 := min(p0+depth, c1)
			k.int4Panel(tmp, w, &m, cb, rows, sc, zs, r1-r0, cb-r0, p0, p1)
			k.transpose(dst[(cb-r0)*ld+p0-c0:], ld, tmp, w, p1-p0, rows)
		}
	}
}

// check guards the products against a malformed Int4 matrix (the SIMD
// paths index its tables by g_idx without bounds checks). Validating a
// checkpoint's GPTQ tensors is formats/gptq's job (Layout.Read).
func (m Int4) check() error {
	if m.K%8 != 0 || m.N%8 != 0 {
		return fmt.Errorf("int4 matrix [%d, %d]: both dimensions must be multiples of 8", m.N, m.K)
	}
	if len(m.QWeight) != m.K/8*m.N || len(m.GIdx) != m.K {
		return fmt.Errorf("int4 matrix [%d, %d]: qweight has %d words, g_idx %d entries", m.N, m.K, len(m.QWeight), len(m.GIdx))
	}
	groups := len(m.Scales) / max(m.N, 1)
	if groups*m.N != len(m.Scales) || len(m.QZeros) != groups*m.N/8 {
		return fmt.Errorf("int4 matrix [%d, %d]: %d scales and %d zero words do not form whole groups", m.N, m.K, len(m.Scales), len(m.QZeros))
	}
	for i, g := range m.GIdx {
		if g < 0 || int(g) >= groups {
			return fmt.Errorf("int4 matrix: g_idx[%d] = %d outside [0, %d)", i, g, groups)
		}
	}
	return nil
}

// GPTQ is a GPTQ matrix of any code width (2, 3, 4 or 8 bits) for a linear
// layer with weight [N=out, K=in], in the AutoGPTQ layout (formats/gptq):
//
//	QWeight [K·Bits/32, N]      codes of column c as a bit stream along inputs:
//	                            code of input i at bits [i·Bits, (i+1)·Bits)
//	QZeros  [groups, N·Bits/32] stored zeros of group g, the same along outputs
//	Scales  [groups, N]         float16 bit patterns
//	GIdx    [K]                 group of each input
//
// W[c, i] = scale[g, c] · (q[i, c] − (stored_zero[g, c] + ZeroOffset)),
// g = GIdx[i]; ZeroOffset is 1 in the v1 layout, 0 in gptq_v2. It is
// dequantized block by block in portable Go inside the products; Int4 is
// the faster path for 4 bits.
type GPTQ struct {
	Bits       int
	ZeroOffset int32
	QWeight    []int32
	QZeros     []int32
	Scales     []uint16
	GIdx       []int32
	N, K       int
}

// Rows returns N (output features).
func (m GPTQ) Rows() int { return m.N }

// Cols returns K (input features).
func (m GPTQ) Cols() int { return m.K }

// Check validates the lengths and g_idx of the matrix (what Widen relies on).
func (m GPTQ) Check() error {
	switch m.Bits {
	case 2, 3, 4, 8:
	default:
		return fmt.Errorf("gptq matrix: %d-bit codes are not supported", m.Bits)
	}
	if m.K*m.Bits%32 != 0 || m.N*m.Bits%32 != 0 {
		return fmt.Errorf("gptq %d-bit matrix [%d, %d]: dimensions are not whole words", m.Bits, m.N, m.K)
	}
	groups := len(m.Scales) / max(m.N, 1)
	if len(m.QWeight) != m.K*m.Bits/32*m.N || len(m.GIdx) != m.K || groups*m.N != len(m.Scales) || len(m.QZeros) != groups*m.N*m.Bits/32 {
		return fmt.Errorf("gptq %d-bit matrix [%d, %d]: %d qweight words, %d qzeros words, %d scales, %d g_idx entries",
			m.Bits, m.N, m.K, len(m.QWeight), len(m.QZeros), len(m.Scales), len(m.GIdx))
	}
	for i, g := range m.GIdx {
		if g < 0 || int(g) >= groups {
			return fmt.Errorf("gptq matrix: g_idx[%d] = %d outside [0, %d)", i, g, groups)
		}
	}
	return nil
}

// field extracts code k of a bit stream whose word w is row[w·stride].
func field(row []int32, stride, k, bits int) int32 {
	b := k * bits
	w, sh := b>>5, uint(b&31)
	v := uint32(row[w*stride]) >> sh
	if int(sh)+bits > 32 {
		v |= uint32(row[(w+1)*stride]) << (32 - sh)
	}
	return int32(v & (1<<uint(bits) - 1))
}

// Widen dequantizes outputs [r0, r1) × inputs [c0, c1) into dst.
func (m GPTQ) Widen(dst []float32, ld, r0, r1, c0, c1 int) {
	if r0 >= r1 || c0 >= c1 {
		return
	}
	groups := len(m.Scales) / max(m.N, 1)
	for i, g := range m.GIdx[c0:c1] {
		if g < 0 || int(g) >= groups {
			panic(fmt.Sprintf("gemm: gptq matrix: g_idx[%d] = %d outside [0, %d)", c0+i, g, groups))
		}
	}
	cols := r1 - r0
	sc := make([]float32, groups*cols)
	zs := make([]int32, groups*cols)
	zw := m.N * m.Bits / 32
	widen := active.Load().widenF16
	for g := 0; g < groups; g++ {
		widen(sc[g*cols:(g+1)*cols], m.Scales[g*m.N+r0:g*m.N+r1])
		zrow := m.QZeros[g*zw : (g+1)*zw]
		for c := 0; c < cols; c++ {
			zs[g*cols+c] = field(zrow, 1, r0+c, m.Bits) + m.ZeroOffset
		}
	}
	bits, mask := m.Bits, uint32(1)<<uint(m.Bits)-1
	// Panels of 16 outputs × up to 256 inputs, written input-major (the
	// order qweight is read in) and transposed into dst.
	const w, depth = 16, 256
	k := active.Load()
	var tmp [w * depth]float32
	for cb := r0; cb < r1; cb += w {
		rows := min(w, r1-cb)
		for p0 := c0; p0 < c1; p0 += depth {
			p1 := min(p0+depth, c1)
			for i := p0; i < p1; i++ {
				g := int(m.GIdx[i])
				s, z := sc[g*cols+cb-r0:g*cols+cb-r0+rows], zs[g*cols+cb-r0:g*cols+cb-r0+rows]
				d := tmp[(i-p0)*w : (i-p0)*w+rows]
				b := i * bits
				wr, sh := b>>5, uint(b&31)
				row := m.QWeight[wr*m.N+cb : wr*m.N+cb+rows]
				if int(sh)+bits <= 32 {
					for c, x := range row {
						d[c] = s[c] * float32(int32(uint32(x)>>sh&mask)-z[c])
					}
					continue
				}
				next := m.QWeight[(wr+1)*m.N+cb : (wr+1)*m.N+cb+rows]
				for c, x := range row {
					d[c] = s[c] * float32(int32((uint32(x)>>sh|uint32(next[c])<<(32-sh))&mask)-z[c])
				}
			}
			k.transpose(dst[(cb-r0)*ld+p0-c0:], ld, tmp[:], w, p1-p0, rows)
		}
	}
}
