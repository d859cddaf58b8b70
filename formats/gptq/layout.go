package gptq

import (
	"errors"
	"fmt"
	"slices"

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

// Checkpoint formats (quantize_config.json checkpoint_format): the v1
// layout (AutoGPTQ; what transformers/optimum and vLLM read) stores each
// zero point as zero−1, GPTQModel's v2 stores the true zero point. The
// codes, scales and g_idx are stored the same way in both.
const (
	FormatV1 = "gptq"
	FormatV2 = "gptq_v2"
)

// Widths lists the code widths the layout defines (AutoGPTQ's 2, 3, 4 and 8).
var Widths = []int{2, 3, 4, 8}

// Layout is the on-disk packing of one code width and zero convention.
//
// Codes are packed as a little-endian bit stream along inputs: the code of
// input i of output c occupies bits [i·Bits, (i+1)·Bits) of column c of
// qweight, bit b being bit b%32 of word row b/32. For 2, 4 and 8 bits a word
// holds 32/Bits whole codes; for 3 bits 32 codes fill three words and codes
// 10 and 21 straddle a word boundary, exactly as AutoGPTQ's pack loop
// writes them. Zero points are packed the same way along outputs within a
// group's row of qzeros.
type Layout struct {
	Bits   int
	Format string
}

// V1Int4 is the layout moeforge writes by default: 4-bit codes, the v1 zero
// convention.
var V1Int4 = Layout{Bits: 4, Format: FormatV1}

// LayoutOf returns the layout of bits and checkpoint_format (empty means
// FormatV1), or an error naming the unsupported setting.
func LayoutOf(bits int, format string) (Layout, error) {
	if format == "" {
		format = FormatV1
	}
	if format != FormatV1 && format != FormatV2 {
		return Layout{}, fmt.Errorf("checkpoint_format=%q is not supported (want %q or %q)", format, FormatV1, FormatV2)
	}
	if !slices.Contains(Widths, bits) {
		return Layout{}, fmt.Errorf("bits=%d is not supported (want 2, 3, 4 or 8)", bits)
	}
	return Layout{Bits: bits, Format: format}, nil
}

// String names the layout, e.g. "4-bit gptq".
func (l Layout) String() string { return fmt.Sprintf("%d-bit %s", l.Bits, l.Format) }

// MaxQ is the largest code.
func (l Layout) MaxQ() int { return 1<<l.Bits - 1 }

// zeroOffset is what the stored zero point lacks: the v1 layout stores
// zero−1, v2 the zero itself.
func (l Layout) zeroOffset() int {
	if l.Format == FormatV2 {
		return 0
	}
	return 1
}

// ZeroOffset is the value added to a stored zero point to get the true
// zero point: 1 in the v1 layout, 0 in v2.
func (l Layout) ZeroOffset() int { return l.zeroOffset() }

// words returns the number of int32 words n codes fill (n·Bits/32).
func (l Layout) words(n int) int { return n * l.Bits / 32 }

// Align is the multiple both dimensions of a layer must be (a whole number
// of words along inputs and along outputs): 32/Bits, and 32 for 3 bits.
func (l Layout) Align() int {
	a := 32
	for a%2 == 0 && (a/2)*l.Bits%32 == 0 {
		a /= 2
	}
	return a
}

// CheckDims reports whether a layer [out, in] fits the layout.
func (l Layout) CheckDims(out, in int) error {
	if a := l.Align(); out <= 0 || in <= 0 || out%a != 0 || in%a != 0 {
		return fmt.Errorf("gptq %d-bit layer [%d, %d]: both dimensions must be positive multiples of %d", l.Bits, out, in, a)
	}
	return nil
}

// Code returns the code at position k of a packed stream whose word k'
// (k' = bit/32) is word(k'), for the layout's width.
func (l Layout) code(k int, word func(int) uint32) uint32 {
	b := k * l.Bits
	w, sh := b>>5, uint(b&31)
	v := word(w) >> sh
	if int(sh)+l.Bits > 32 {
		v |= word(w+1) << (32 - sh)
	}
	return v & uint32(l.MaxQ())
}

// put ORs code q into position k of a packed stream (see code).
func (l Layout) put(k int, q uint32, word func(int) *int32) {
	b := k * l.Bits
	w, sh := b>>5, uint(b&31)
	p := word(w)
	*p = int32(uint32(*p) | q<<sh)
	if int(sh)+l.Bits > 32 {
		p = word(w + 1)
		*p = int32(uint32(*p) | q>>(32-sh))
	}
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
		{Name: name + SuffixQWeight, DType: safetensors.I32, Shape: []int{l.words(in), out}},
		{Name: name + SuffixQZeros, DType: safetensors.I32, Shape: []int{groups, l.words(out)}},
		{Name: name + SuffixScales, DType: safetensors.F16, Shape: []int{groups, out}},
		{Name: name + SuffixGIdx, DType: safetensors.I32, Shape: []int{in}},
	}
}

// PackCodes packs codes [in, out] (code of input i, output c at i·out+c)
// into qweight [in·Bits/32, out].
func (l Layout) PackCodes(codes []uint8, out, in int) []int32 {
	qw := make([]int32, l.words(in)*out)
	mask := uint32(l.MaxQ())
	for i := 0; i < in; i++ {
		src := codes[i*out : (i+1)*out]
		for c, q := range src {
			l.put(i, uint32(q)&mask, func(w int) *int32 { return &qw[w*out+c] })
		}
	}
	return qw
}

// UnpackCodes is the inverse of PackCodes: it fills codes [in, out].
func (l Layout) UnpackCodes(codes []uint8, qweight []int32, out, in int) {
	for i := 0; i < in; i++ {
		dst := codes[i*out : (i+1)*out]
		for c := range dst {
			dst[c] = uint8(l.code(i, func(w int) uint32 { return uint32(qweight[w*out+c]) }))
		}
	}
}

// PackZeros packs true zero points [groups, out] into qzeros
// [groups, out·Bits/32] with the layout's zero convention. Zero points must
// lie in ZeroRange (CheckZeros); others are stored masked to Bits.
func (l Layout) PackZeros(zeros []uint8, out, groups int) []int32 {
	row := l.words(out)
	off, mask := uint32(l.zeroOffset()), uint32(l.MaxQ())
	qz := make([]int32, groups*row)
	for g := 0; g < groups; g++ {
		for c, z := range zeros[g*out : (g+1)*out] {
			l.put(c, (uint32(z)-off)&mask, func(w int) *int32 { return &qz[g*row+w] })
		}
	}
	return qz
}

// UnpackZeros is the inverse of PackZeros: it fills zeros [groups, out].
// A stored v1 8-bit zero of 255 (true zero 256) does not fit a uint8:
// StoredZerosFit reports it.
func (l Layout) UnpackZeros(zeros []uint8, qzeros []int32, out, groups int) {
	row, off := l.words(out), uint32(l.zeroOffset())
	for g := 0; g < groups; g++ {
		for c := 0; c < out; c++ {
			zeros[g*out+c] = uint8(l.code(c, func(w int) uint32 { return uint32(qzeros[g*row+w]) }) + off)
		}
	}
}

// ZeroRange is the range of true zero points the layout can store: v1
// [1, 2^Bits] (stored zero−1), v2 [0, 2^Bits − 1]. A uint8 holds at most
// 255, so 8-bit v1 zeros are limited to [1, 255] in a Layer.
func (l Layout) ZeroRange() (lo, hi int) {
	return l.zeroOffset(), min(l.MaxQ()+l.zeroOffset(), 255)
}

// CheckZeros reports the first zero point the layout cannot store, with a
// hint to the v2 layout for an asymmetric zero of 0 in v1.
func (l Layout) CheckZeros(zeros []uint8, out int) error {
	lo, hi := l.ZeroRange()
	for i, z := range zeros {
		if int(z) < lo || int(z) > hi {
			msg := fmt.Sprintf("zero point %d of group %d, output %d outside [%d, %d], what the %s layout stores", z, i/out, i%out, lo, hi, l)
			if z == 0 && l.Format == FormatV1 {
				msg += fmt.Sprintf(" (v1 stores zero−1: a zero of 0 needs checkpoint_format %q, --format %s)", FormatV2, FormatV2)
			}
			return errors.New(msg)
		}
	}
	return nil
}
