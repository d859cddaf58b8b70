// Package gptq is the one home of the GPTQ checkpoint layout (AutoGPTQ's
// "gptq" v1 layout, read by transformers/optimum and vLLM, and GPTQModel's
// "gptq_v2"; 2, 3, 4 and 8 bits; docs/gptq.md): the tensor names and suffixes, dtypes and shapes (Layout), the
// packing of codes, zero points and group indices for each bit width
// (Layout.PackCodes, PackZeros and their inverses), the one validator and
// reader of a linear's stored tensors (Layout.CheckTensors, Layout.Read →
// Packed), the unpacked form the quantizer produces (Layer), and the one
// settings type that quantize_config.json, config.json's
// quantization_config and the quantizer share (Config). It imports no
// compute package: model and quantize build their matrices from Packed.
//
// A quantized linear layer with weight [out, in] is stored as
//
//	qweight [in/8, out]    I32  nibble k of word [r, c] = code of input 8r+k, output c
//	qzeros  [groups, out/8] I32 nibble k of word [g, c] = zero−1 of group g, output 8c+k
//	scales  [groups, out]  F16
//	g_idx   [in]           I32  group of each input
//
// (4 bits; in general qweight [in·bits/32, out] and qzeros
// [groups, out·bits/32], codes packed as a bit stream, see Layout) and
// dequantizes to W[c, i] = scales[g, c] · (q[i, c] − zero[g, c]) with
// g = g_idx[i]. Config.Dynamic carries GPTQModel's per-module overrides
// (Config.Module resolves one module's settings and layout).
package gptq

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/moeforge/moeforge/internal/half"
)

// Bits is the default code width.
const Bits = 4

// MaxQ is the largest code of the default width.
const MaxQ = 1<<Bits - 1

// Layer is one quantized linear layer [Out, In] in unpacked form.
type Layer struct {
	// Layout is the packing the layer is checked against and packed in;
	// the zero value means V1Int4.
	Layout  Layout
	Out, In int
	Groups  int
	// Codes[i*Out+c] is the code (0..2^Bits−1) of input i, output c: the
	// transposed order of the weight, as qweight stores it.
	Codes []uint8
	// Zeros[g*Out+c] is the true zero point of group g, output c, in the
	// layout's ZeroRange (v1 stores zero−1, so 4-bit zeros lie in [1, 16]).
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

// NewLayer allocates an all-zero layer with the given number of groups in
// the V1Int4 layout (set Layout for another).
func NewLayer(out, in, groups int) *Layer {
	return &Layer{
		Layout: V1Int4, Out: out, In: in, Groups: groups,
		Codes:  make([]uint8, in*out),
		Zeros:  make([]uint8, groups*out),
		Scales: make([]uint16, groups*out),
		GIdx:   make([]int32, in),
	}
}

// layout returns l.Layout, V1Int4 when unset.
func (l *Layer) layout() Layout {
	if l.Layout.Bits == 0 {
		return V1Int4
	}
	return l.Layout
}

// Check validates the layer's dimensions and values against what its
// layout can hold.
func (l *Layer) Check() error {
	lay := l.layout()
	if _, err := LayoutOf(lay.Bits, lay.Format); err != nil {
		return err
	}
	if err := lay.CheckDims(l.Out, l.In); err != nil {
		return err
	}
	if l.Groups < 1 || l.Groups > l.In {
		return fmt.Errorf("gptq layer [%d, %d]: %d groups outside [1, %d]", l.Out, l.In, l.Groups, l.In)
	}
	if len(l.Codes) != l.In*l.Out || len(l.Zeros) != l.Groups*l.Out || len(l.Scales) != l.Groups*l.Out || len(l.GIdx) != l.In {
		return fmt.Errorf("gptq layer [%d, %d] with %d groups: %d codes, %d zeros, %d scales, %d g_idx entries",
			l.Out, l.In, l.Groups, len(l.Codes), len(l.Zeros), len(l.Scales), len(l.GIdx))
	}
	maxq := uint8(lay.MaxQ())
	for i, q := range l.Codes {
		if q > maxq {
			return fmt.Errorf("gptq layer: code %d of input %d, output %d exceeds %d", q, i/l.Out, i%l.Out, maxq)
		}
	}
	if err := lay.CheckZeros(l.Zeros, l.Out); err != nil {
		return fmt.Errorf("gptq layer: %w", err)
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

// Pack returns qweight [In·Bits/32, Out] and qzeros [Groups, Out·Bits/32]
// in the layer's layout.
func (l *Layer) Pack() (qweight, qzeros []int32, err error) {
	p, err := l.Packed()
	if err != nil {
		return nil, nil, err
	}
	return p.QWeight, p.QZeros, nil
}

// Packed checks the layer and packs it in its layout; Scales and GIdx are
// copies.
func (l *Layer) Packed() (*Packed, error) {
	if err := l.Check(); err != nil {
		return nil, err
	}
	lay := l.layout()
	return &Packed{
		Layout: lay, Out: l.Out, In: l.In, Groups: l.Groups,
		QWeight: lay.PackCodes(l.Codes, l.Out, l.In),
		QZeros:  lay.PackZeros(l.Zeros, l.Out, l.Groups),
		Scales:  append([]uint16(nil), l.Scales...),
		GIdx:    append([]int32(nil), l.GIdx...),
	}, nil
}

// Unpack reads a layer [out, in] from its packed V1Int4 tensors.
func Unpack(out, in int, qweight, qzeros []int32, scales []uint16, gidx []int32) (*Layer, error) {
	p, err := NewPacked(V1Int4, out, in, qweight, qzeros, scales, gidx)
	if err != nil {
		return nil, err
	}
	return p.Unpack()
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
