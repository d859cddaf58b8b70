// Package gptq holds the on-disk form of GPTQ int4 checkpoints in the
// AutoGPTQ "gptq" (v1) layout read by transformers/optimum and vLLM: packing
// and unpacking of 4-bit codes, zero points and group indices (FORMATS.md,
// GPTQ section), and the quantize_config.json document.
//
// A quantized linear layer with weight [out, in] is stored as
//
//	qweight [in/8, out]    I32  nibble k of word [r, c] = code of input 8r+k, output c
//	qzeros  [groups, out/8] I32 nibble k of word [g, c] = zero−1 of group g, output 8c+k
//	scales  [groups, out]  F16
//	g_idx   [in]           I32  group of each input
//
// and dequantizes to W[c, i] = scales[g, c] · (q[i, c] − zero[g, c]) with
// g = g_idx[i].
package gptq

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/moeforge/moeforge/internal/gemm"
	"github.com/moeforge/moeforge/internal/half"
)

// Bits is the only code width moeforge writes and reads.
const Bits = 4

// MaxQ is the largest 4-bit code.
const MaxQ = 1<<Bits - 1

// Layer is one quantized linear layer [Out, In] in unpacked form.
type Layer struct {
	Out, In int
	Groups  int
	// Codes[i*Out+c] is the 4-bit code (0..15) of input i, output c: the
	// transposed order of the weight, as qweight stores it.
	Codes []uint8
	// Zeros[g*Out+c] is the true zero point of group g, output c. The v1
	// layout stores zero−1 in four bits, so zeros must lie in [1, 16].
	Zeros []uint8
	// Scales[g*Out+c] is the float16 bit pattern of the scale.
	Scales []uint16
	// GIdx[i] is the group of input i.
	GIdx []int32
}

// NumGroups returns the number of groups of a layer with in inputs:
// ceil(in/groupSize), or 1 when groupSize is -1 (one group spanning all
// inputs).
func NumGroups(in, groupSize int) int {
	if groupSize <= 0 || groupSize >= in {
		return 1
	}
	return (in + groupSize - 1) / groupSize
}

// GroupIndex returns g_idx for in inputs. Without act-order (perm nil) input
// i is in group i/groupSize. With act-order, perm lists the inputs in the
// order they were quantized and input perm[j] is in group j/groupSize.
// groupSize -1 (or ≥ in) puts every input in group 0.
func GroupIndex(in, groupSize int, perm []int) []int32 {
	g := make([]int32, in)
	if groupSize <= 0 || groupSize >= in {
		return g
	}
	for j := 0; j < in; j++ {
		i := j
		if perm != nil {
			i = perm[j]
		}
		g[i] = int32(j / groupSize)
	}
	return g
}

// NewLayer allocates an all-zero layer with the given number of groups.
func NewLayer(out, in, groups int) *Layer {
	return &Layer{
		Out: out, In: in, Groups: groups,
		Codes:  make([]uint8, in*out),
		Zeros:  make([]uint8, groups*out),
		Scales: make([]uint16, groups*out),
		GIdx:   make([]int32, in),
	}
}

// Check validates the layer's dimensions and values against what the v1
// layout can hold.
func (l *Layer) Check() error {
	if l.Out <= 0 || l.In <= 0 || l.Out%8 != 0 || l.In%8 != 0 {
		return fmt.Errorf("gptq layer [%d, %d]: both dimensions must be positive multiples of 8", l.Out, l.In)
	}
	if l.Groups < 1 || l.Groups > l.In {
		return fmt.Errorf("gptq layer [%d, %d]: %d groups outside [1, %d]", l.Out, l.In, l.Groups, l.In)
	}
	if len(l.Codes) != l.In*l.Out || len(l.Zeros) != l.Groups*l.Out || len(l.Scales) != l.Groups*l.Out || len(l.GIdx) != l.In {
		return fmt.Errorf("gptq layer [%d, %d] with %d groups: %d codes, %d zeros, %d scales, %d g_idx entries",
			l.Out, l.In, l.Groups, len(l.Codes), len(l.Zeros), len(l.Scales), len(l.GIdx))
	}
	for i, q := range l.Codes {
		if q > MaxQ {
			return fmt.Errorf("gptq layer: code %d of input %d, output %d exceeds %d", q, i/l.Out, i%l.Out, MaxQ)
		}
	}
	for i, z := range l.Zeros {
		if z < 1 || z > MaxQ+1 {
			return fmt.Errorf("gptq layer: zero point %d of group %d, output %d outside [1, %d] (the v1 layout stores zero−1 in %d bits)", z, i/l.Out, i%l.Out, MaxQ+1, Bits)
		}
	}
	for i, s := range l.Scales {
		if f := half.F16ToF32(s); math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			return fmt.Errorf("gptq layer: scale of group %d, output %d is %v", i/l.Out, i%l.Out, f)
		}
	}
	for i, g := range l.GIdx {
		if g < 0 || int(g) >= l.Groups {
			return fmt.Errorf("gptq layer: g_idx[%d] = %d outside [0, %d)", i, g, l.Groups)
		}
	}
	return nil
}

// Value returns the dequantized weight W[c, i], computed in float32 exactly
// as the forward pass does.
func (l *Layer) Value(c, i int) float32 {
	g := int(l.GIdx[i])
	q := int32(l.Codes[i*l.Out+c])
	z := int32(l.Zeros[g*l.Out+c])
	return half.F16ToF32(l.Scales[g*l.Out+c]) * float32(q-z)
}

// Dequantize returns the weight [Out, In] the layer stands for.
func (l *Layer) Dequantize() []float32 {
	w := make([]float32, l.Out*l.In)
	for i := 0; i < l.In; i++ {
		g := int(l.GIdx[i])
		codes := l.Codes[i*l.Out : (i+1)*l.Out]
		zs := l.Zeros[g*l.Out : (g+1)*l.Out]
		sc := l.Scales[g*l.Out : (g+1)*l.Out]
		for c, q := range codes {
			w[c*l.In+i] = half.F16ToF32(sc[c]) * float32(int32(q)-int32(zs[c]))
		}
	}
	return w
}

// Pack returns qweight [In/8, Out] and qzeros [Groups, Out/8] in the v1
// layout (stored zero = zero − 1).
func (l *Layer) Pack() (qweight, qzeros []int32, err error) {
	if err := l.Check(); err != nil {
		return nil, nil, err
	}
	qweight = make([]int32, l.In/8*l.Out)
	for r := 0; r < l.In/8; r++ {
		row := qweight[r*l.Out : (r+1)*l.Out]
		for k := 0; k < 8; k++ {
			codes := l.Codes[(8*r+k)*l.Out : (8*r+k+1)*l.Out]
			shift := uint(4 * k)
			for c, q := range codes {
				row[c] = int32(uint32(row[c]) | uint32(q)<<shift)
			}
		}
	}
	qzeros = make([]int32, l.Groups*l.Out/8)
	for g := 0; g < l.Groups; g++ {
		zs := l.Zeros[g*l.Out : (g+1)*l.Out]
		for c, z := range zs {
			w := &qzeros[g*l.Out/8+c/8]
			*w = int32(uint32(*w) | uint32(z-1)<<(uint(c%8)*4))
		}
	}
	return qweight, qzeros, nil
}

// Unpack reads a layer [out, in] from its packed v1 tensors.
func Unpack(out, in int, qweight, qzeros []int32, scales []uint16, gidx []int32) (*Layer, error) {
	if out <= 0 || in <= 0 || out%8 != 0 || in%8 != 0 {
		return nil, fmt.Errorf("gptq layer [%d, %d]: both dimensions must be positive multiples of 8", out, in)
	}
	groups := len(scales) / out
	if groups*out != len(scales) || len(qzeros) != groups*out/8 || len(qweight) != in/8*out || len(gidx) != in {
		return nil, fmt.Errorf("gptq layer [%d, %d]: qweight has %d words, qzeros %d, scales %d, g_idx %d: not the v1 layout",
			out, in, len(qweight), len(qzeros), len(scales), len(gidx))
	}
	l := NewLayer(out, in, groups)
	copy(l.Scales, scales)
	copy(l.GIdx, gidx)
	for i := 0; i < in; i++ {
		row := qweight[(i/8)*out : (i/8+1)*out]
		shift := uint(4 * (i % 8))
		codes := l.Codes[i*out : (i+1)*out]
		for c, w := range row {
			codes[c] = uint8(uint32(w) >> shift & 15)
		}
	}
	for g := 0; g < groups; g++ {
		for c := 0; c < out; c++ {
			w := qzeros[g*out/8+c/8]
			l.Zeros[g*out+c] = uint8(uint32(w)>>(uint(c%8)*4)&15) + 1
		}
	}
	if err := l.Check(); err != nil {
		return nil, err
	}
	return l, nil
}

// Matrix packs the layer into the int4 matrix the forward pass multiplies
// with (dequantizing inside the product).
func (l *Layer) Matrix() (gemm.Int4, error) {
	qw, qz, err := l.Pack()
	if err != nil {
		return gemm.Int4{}, err
	}
	return gemm.Int4{QWeight: qw, QZeros: qz, Scales: append([]uint16(nil), l.Scales...), GIdx: append([]int32(nil), l.GIdx...), N: l.Out, K: l.In}, nil
}

// Int32Bytes encodes int32 values little-endian, as safetensors stores I32.
func Int32Bytes(v []int32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(x))
	}
	return b
}

// Uint16Bytes encodes 16-bit patterns (F16, BF16) little-endian.
func Uint16Bytes(v []uint16) []byte {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], x)
	}
	return b
}
