package gptq

import (
	"fmt"

	"github.com/moeforge/moeforge/formats/safetensors"
)

// Tensor name suffixes of a GPTQ linear layer, appended to the module path
// (e.g. model.layers.0.self_attn.q_proj). A bias, when the layer has one,
// stays module.bias.
const (
	SuffixQWeight = ".qweight"
	SuffixQZeros  = ".qzeros"
	SuffixScales  = ".scales"
	SuffixGIdx    = ".g_idx"
)

// Suffixes lists the tensor suffixes of a GPTQ linear in writing order.
var Suffixes = []string{SuffixQWeight, SuffixQZeros, SuffixScales, SuffixGIdx}

// Checkpoint formats (quantize_config.json checkpoint_format). Only the v1
// layout is read and written today; "gptq_v2" (zero points stored without
// the −1 offset) slots in as a Layout whose zeroOffset is 0.
const (
	FormatV1 = "gptq"
)

// Layout is the on-disk packing of one code width and zero convention:
// qweight packs the codes of consecutive inputs of one output into int32
// words, qzeros the stored zero points of consecutive outputs of one group.
//
// Only Bits 4 with FormatV1 is supported; 2 and 8 bits pack 32/Bits codes per
// word the same way, and 3 bits (AutoGPTQ packs 32 codes into three words)
// needs its own pack/unpack — both slot in behind LayoutOf and the methods
// below without changing their callers.
type Layout struct {
	Bits   int
	Format string
}

// V1Int4 is the layout moeforge writes: 4-bit codes, the v1 zero convention.
var V1Int4 = Layout{Bits: 4, Format: FormatV1}

// LayoutOf returns the layout of bits and checkpoint_format (empty means
// FormatV1), or an error naming the unsupported setting.
func LayoutOf(bits int, format string) (Layout, error) {
	if format == "" {
		format = FormatV1
	}
	if format != FormatV1 {
		return Layout{}, fmt.Errorf("checkpoint_format=%q is not supported (only the gptq v1 layout)", format)
	}
	if bits != Bits {
		return Layout{}, fmt.Errorf("bits=%d is not supported (only %d)", bits, Bits)
	}
	return Layout{Bits: bits, Format: format}, nil
}

// MaxQ is the largest code.
func (l Layout) MaxQ() int { return 1<<l.Bits - 1 }

// perWord is the number of codes one int32 word holds.
func (l Layout) perWord() int { return 32 / l.Bits }

// zeroOffset is what the stored zero point lacks: the v1 layout stores
// zero−1.
func (l Layout) zeroOffset() int { return 1 }

// Align is the multiple both dimensions of a layer must be (a whole number
// of words along inputs and along outputs).
func (l Layout) Align() int { return l.perWord() }

// CheckDims reports whether a layer [out, in] fits the layout.
func (l Layout) CheckDims(out, in int) error {
	if a := l.Align(); out <= 0 || in <= 0 || out%a != 0 || in%a != 0 {
		return fmt.Errorf("gptq layer [%d, %d]: both dimensions must be positive multiples of %d", out, in, a)
	}
	return nil
}

// Tensors returns the tensors of a GPTQ linear named name with weight
// [out, in] and groups groups, in writing order:
//
//	name.qweight [in·Bits/32, out]     I32
//	name.qzeros  [groups, out·Bits/32] I32
//	name.scales  [groups, out]         F16
//	name.g_idx   [in]                  I32
func (l Layout) Tensors(name string, out, in, groups int) []safetensors.Info {
	return []safetensors.Info{
		{Name: name + SuffixQWeight, DType: safetensors.I32, Shape: []int{in / l.perWord(), out}},
		{Name: name + SuffixQZeros, DType: safetensors.I32, Shape: []int{groups, out / l.perWord()}},
		{Name: name + SuffixScales, DType: safetensors.F16, Shape: []int{groups, out}},
		{Name: name + SuffixGIdx, DType: safetensors.I32, Shape: []int{in}},
	}
}

// PackCodes packs codes [in, out] (code of input i, output c at i·out+c)
// into qweight [in·Bits/32, out].
func (l Layout) PackCodes(codes []uint8, out, in int) []int32 {
	pw := l.perWord()
	qw := make([]int32, in/pw*out)
	for r := 0; r < in/pw; r++ {
		row := qw[r*out : (r+1)*out]
		for k := 0; k < pw; k++ {
			src := codes[(pw*r+k)*out : (pw*r+k+1)*out]
			shift := uint(l.Bits * k)
			for c, q := range src {
				row[c] = int32(uint32(row[c]) | uint32(q)<<shift)
			}
		}
	}
	return qw
}

// UnpackCodes is the inverse of PackCodes: it fills codes [in, out].
func (l Layout) UnpackCodes(codes []uint8, qweight []int32, out, in int) {
	pw, mask := l.perWord(), uint32(l.MaxQ())
	for i := 0; i < in; i++ {
		row := qweight[(i/pw)*out : (i/pw+1)*out]
		shift := uint(l.Bits * (i % pw))
		dst := codes[i*out : (i+1)*out]
		for c, w := range row {
			dst[c] = uint8(uint32(w) >> shift & mask)
		}
	}
}

// PackZeros packs true zero points [groups, out] into qzeros
// [groups, out·Bits/32] with the layout's zero convention. Zero points must
// lie in [zeroOffset, MaxQ+zeroOffset] (ZeroRange).
func (l Layout) PackZeros(zeros []uint8, out, groups int) []int32 {
	pw, off := l.perWord(), uint32(l.zeroOffset())
	qz := make([]int32, groups*out/pw)
	for g := 0; g < groups; g++ {
		for c, z := range zeros[g*out : (g+1)*out] {
			w := &qz[g*out/pw+c/pw]
			*w = int32(uint32(*w) | (uint32(z)-off)<<(uint(c%pw)*uint(l.Bits)))
		}
	}
	return qz
}

// UnpackZeros is the inverse of PackZeros: it fills zeros [groups, out].
func (l Layout) UnpackZeros(zeros []uint8, qzeros []int32, out, groups int) {
	pw, mask, off := l.perWord(), uint32(l.MaxQ()), uint8(l.zeroOffset())
	for g := 0; g < groups; g++ {
		for c := 0; c < out; c++ {
			w := qzeros[g*out/pw+c/pw]
			zeros[g*out+c] = uint8(uint32(w)>>(uint(c%pw)*uint(l.Bits))&mask) + off
		}
	}
}

// ZeroRange is the range of true zero points the layout can store.
func (l Layout) ZeroRange() (lo, hi int) {
	return l.zeroOffset(), l.MaxQ() + l.zeroOffset()
}
