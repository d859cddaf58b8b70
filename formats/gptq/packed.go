package gptq

import (
	"fmt"
	"slices"

	"github.com/moeforge/moeforge/formats/safetensors"
)

// Packed is one GPTQ linear layer [Out, In] in its on-disk form: the words
// of qweight and qzeros, the float16 scales and g_idx, as a checkpoint stores
// them. Read returns views of a memory-mapped checkpoint where alignment
// allows; the forward pass multiplies with them directly.
type Packed struct {
	Layout          Layout
	Out, In, Groups int
	QWeight         []int32  // [In·Bits/32, Out]
	QZeros          []int32  // [Groups, Out·Bits/32]
	Scales          []uint16 // [Groups, Out], float16 bit patterns
	GIdx            []int32  // [In], group of each input
}

// NewPacked wraps packed tensors of a layer [out, in] and validates them
// (Check); the number of groups is taken from scales.
func NewPacked(lay Layout, out, in int, qweight, qzeros []int32, scales []uint16, gidx []int32) (*Packed, error) {
	if err := lay.CheckDims(out, in); err != nil {
		return nil, err
	}
	p := &Packed{Layout: lay, Out: out, In: in, Groups: len(scales) / out,
		QWeight: qweight, QZeros: qzeros, Scales: scales, GIdx: gidx}
	if err := p.Check(); err != nil {
		return nil, err
	}
	return p, nil
}

// Check validates the lengths of the packed tensors against the layer's
// dimensions and layout, and that every g_idx entry names a group: what a
// product with the packed words relies on.
func (p *Packed) Check() error {
	if err := p.Layout.CheckDims(p.Out, p.In); err != nil {
		return err
	}
	lay := p.Layout
	g := p.Groups
	if g < 1 || g > p.In || len(p.Scales) != g*p.Out || len(p.QZeros) != g*lay.words(p.Out) || len(p.QWeight) != lay.words(p.In)*p.Out || len(p.GIdx) != p.In {
		return corrupt("gptq layer [%d, %d]: qweight has %d words, qzeros %d, scales %d, g_idx %d: not the %d-bit %s layout",
			p.Out, p.In, len(p.QWeight), len(p.QZeros), len(p.Scales), len(p.GIdx), p.Layout.Bits, p.Layout.Format)
	}
	for i, x := range p.GIdx {
		if x < 0 || int(x) >= g {
			return corrupt("gptq layer: g_idx[%d] = %d outside [0, %d)", i, x, g)
		}
	}
	return nil
}

// Unpack returns the layer in unpacked form, checked (Layer.Check).
func (p *Packed) Unpack() (*Layer, error) {
	if p.Layout.MaxQ()+p.Layout.zeroOffset() > 255 {
		// 8-bit v1: a stored 255 is a true zero of 256, beyond a Layer's uint8.
		for g := 0; g < p.Groups; g++ {
			for c := 0; c < p.Out; c++ {
				if p.Layout.code(c, func(w int) uint32 { return uint32(p.QZeros[g*p.Layout.words(p.Out)+w]) }) == 255 {
					return nil, corrupt("gptq layer: stored zero point 255 of group %d, output %d is a zero of 256, outside the 8-bit grid", g, c)
				}
			}
		}
	}
	l := NewLayer(p.Out, p.In, p.Groups)
	l.Layout = p.Layout
	copy(l.Scales, p.Scales)
	copy(l.GIdx, p.GIdx)
	p.Layout.UnpackCodes(l.Codes, p.QWeight, p.Out, p.In)
	p.Layout.UnpackZeros(l.Zeros, p.QZeros, p.Out, p.Groups)
	if err := l.Check(); err != nil {
		return nil, err
	}
	return l, nil
}

// Tensors are the stored tensors of one GPTQ linear.
type Tensors struct {
	QWeight, QZeros, Scales, GIdx *safetensors.Tensor
}

// CheckTensors checks the dtypes and shapes of the tensors of the GPTQ
// linear name [out, in] against the layout (see Layout.Tensors). Errors name
// the tensor.
func (lay Layout) CheckTensors(name string, out, in int, t Tensors) error {
	if a := lay.Align(); in%a != 0 || out%a != 0 {
		return corrupt("%s is GPTQ-quantized but [%d, %d] is not a multiple of %d", name, out, in, a)
	}
	groups := 0
	if len(t.Scales.Shape) == 2 {
		groups = t.Scales.Shape[0]
	}
	want := lay.Tensors(name, out, in, groups)
	for k, got := range []*safetensors.Tensor{t.QWeight, t.QZeros, t.Scales, t.GIdx} {
		w := want[k]
		if got.DType != w.DType || !slices.Equal(got.Shape, w.Shape) || groups < 1 || groups > in {
			return corrupt("tensor %s is %s %v, want %s %v (GPTQ layer [out=%d, in=%d])", got.Name, got.DType, got.Shape, w.DType, w.Shape, out, in)
		}
	}
	return nil
}

// Read checks the tensors of the GPTQ linear name [out, in] (CheckTensors)
// and returns them packed, as views of the tensors' memory where alignment
// allows (the scales must be viewable: F16 is 2-byte aligned in every
// safetensors file).
func (lay Layout) Read(name string, out, in int, t Tensors) (*Packed, error) {
	if err := lay.CheckTensors(name, out, in, t); err != nil {
		return nil, err
	}
	qw, err := t.QWeight.Int32s()
	if err != nil {
		return nil, err
	}
	qz, err := t.QZeros.Int32s()
	if err != nil {
		return nil, err
	}
	gi, err := t.GIdx.Int32s()
	if err != nil {
		return nil, err
	}
	sc, ok := t.Scales.U16View()
	if !ok {
		return nil, corrupt("tensor %s: scales must be F16", t.Scales.Name)
	}
	p, err := NewPacked(lay, out, in, qw, qz, sc, gi)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return p, nil
}

// corrupt returns a safetensors.CorruptInputError (matching
// safetensors.ErrFormat) for malformed GPTQ tensors; callers that know the
// file wrap it with the file's name.
func corrupt(format string, args ...any) error {
	return &safetensors.CorruptInputError{Msg: fmt.Sprintf(format, args...)}
}

// CheckSymZeros tells the v1 and v2 layouts apart on a symmetric layer:
// every stored zero point of a symmetric v1 layer is 2^(Bits−1) − 1, of a v2
// layer 2^(Bits−1). A layer whose stored zeros all hold the other
// convention's value was written in the other format (a v2 file read as v1
// loads but computes wrong weights) and is refused naming it. Other values
// are left alone (they are what the file says).
func (p *Packed) CheckSymZeros() error {
	return p.Layout.CheckSymZeros(p.QZeros, p.Out, p.Groups)
}

// CheckSymZeros is Packed.CheckSymZeros on the qzeros words alone (a layer
// [out, ·] with groups groups; the length is checked).
func (lay Layout) CheckSymZeros(qzeros []int32, out, groups int) error {
	row := lay.words(out)
	if len(qzeros) != groups*row {
		return corrupt("gptq layer: qzeros has %d words, want %d", len(qzeros), groups*row)
	}
	other := Layout{Bits: lay.Bits, Format: FormatV2}
	if lay.Format == FormatV2 {
		other.Format = FormatV1
	}
	otherSym := uint32(other.MaxQ()+1)/2 - uint32(other.zeroOffset())
	for g := 0; g < groups; g++ {
		for c := 0; c < out; c++ {
			if lay.code(c, func(w int) uint32 { return uint32(qzeros[g*row+w]) }) != otherSym {
				return nil
			}
		}
	}
	return corrupt("gptq layer: every stored zero point is %d, the symmetric zero of the %s layout, but checkpoint_format is %q: the weights were written as %s",
		otherSym, other, lay.Format, other.Format)
}
