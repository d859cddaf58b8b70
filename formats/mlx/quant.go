// Package mlx is the layout of MLX checkpoint directories as mlx-lm writes
// and loads them (docs/mlx.md cites the code each rule comes from): tensor
// names with routed experts stacked per layer under switch_mlp, affine
// quantization (mlx.core.quantize, mode "affine") with its config keys and
// per-module overrides, and the reader that maps an MLX directory back to
// the Hugging Face names moeforge's forward pass asks for. The conversion
// from Hugging Face float or GPTQ checkpoints is export.MLX.
package mlx

import (
	"fmt"
	"math"
	"slices"
)

// Params are the settings of one affine-quantized module.
type Params struct {
	GroupSize int `json:"group_size"`
	Bits      int `json:"bits"`
}

// GroupSizes are the group sizes mlx.core.quantize accepts.
var GroupSizes = []int{32, 64, 128}

// BitWidths are the code widths moeforge reads and writes (MLX also has 3, 5
// and 6 bits, whose codes straddle words; not supported here).
var BitWidths = []int{2, 4, 8}

// Validate checks bits and group size.
func (p Params) Validate() error {
	if !slices.Contains(BitWidths, p.Bits) {
		return fmt.Errorf("bits=%d is not supported (want 2, 4 or 8)", p.Bits)
	}
	if !slices.Contains(GroupSizes, p.GroupSize) {
		return fmt.Errorf("group_size=%d is not supported (MLX accepts 32, 64, 128)", p.GroupSize)
	}
	return nil
}

// Fits reports whether a layer with in inputs can be quantized with p
// (mlx-lm leaves a layer whose input width is not a multiple of the group
// size in float).
func (p Params) Fits(in int) bool { return in > 0 && in%p.GroupSize == 0 }

// PerWord is the number of codes in one uint32 word.
func (p Params) PerWord() int { return 32 / p.Bits }

// MaxQ is the largest code, 2^bits − 1.
func (p Params) MaxQ() int { return 1<<p.Bits - 1 }

// Quantize quantizes w [out, in] (row-major float32) by MLX's affine
// definition, as its Metal kernel (affine_quantize in
// mlx/backend/metal/kernels/quantized.h) computes it in float32 per group
// of GroupSize consecutive inputs of a row:
//
//	w_min = min(w), w_max = max(0, max(w))      (the kernel starts w_max at 0)
//	scale = max((w_max − w_min) / (2^bits − 1), 1e-7)
//	side  = |w_min| > |w_max|;  scale = side ? scale : −scale
//	edge  = side ? w_min : w_max
//	q0    = round(edge / scale)                  (half away from zero)
//	scale = q0 ≠ 0 ? edge / q0 : scale;  bias = q0 ≠ 0 ? edge : 0
//	q     = min(round((w − bias) / scale), 2^bits − 1), at least 0
//
// so that the group's edge value of larger magnitude is represented exactly.
// The codes come from the float32 scale and bias; the stored scales and
// biases are those values rounded to the model dtype (the caller's job).
// It returns codes [out, in] and scales, biases [out, in/GroupSize].
func Quantize(w []float32, out, in int, p Params) (codes []uint8, scales, biases []float32) {
	g := p.GroupSize
	groups := in / g
	codes = make([]uint8, out*in)
	scales = make([]float32, out*groups)
	biases = make([]float32, out*groups)
	nBins := float32(p.MaxQ())
	const eps = float32(1e-7)
	for r := 0; r < out; r++ {
		for j := 0; j < groups; j++ {
			vals := w[r*in+j*g : r*in+(j+1)*g]
			wMin, wMax := float32(math.MaxFloat32), float32(0)
			for _, v := range vals {
				wMin = min(wMin, v)
				wMax = max(wMax, v)
			}
			scale := max((wMax-wMin)/nBins, eps)
			side := abs32(wMin) > abs32(wMax)
			if !side {
				scale = -scale
			}
			edge := wMax
			if side {
				edge = wMin
			}
			q0 := round32(edge / scale)
			bias := float32(0)
			if q0 != 0 {
				scale = edge / q0
				bias = edge
			}
			scales[r*groups+j], biases[r*groups+j] = scale, bias
			dst := codes[r*in+j*g : r*in+(j+1)*g]
			for i, v := range vals {
				q := min(round32((v-bias)/scale), nBins)
				if !(q > 0) { // also NaN
					q = 0
				}
				dst[i] = uint8(q)
			}
		}
	}
	return codes, scales, biases
}

func abs32(x float32) float32 { return float32(math.Abs(float64(x))) }

// round32 rounds half away from zero (Metal's round).
func round32(x float32) float32 { return float32(math.Round(float64(x))) }

// Pack packs codes [out, in] into words [out, in·bits/32], least significant
// bits first along the input dimension (code of input i in bits
// (i mod 32/bits)·bits of word i/(32/bits) of its row).
func Pack(codes []uint8, out, in int, p Params) []uint32 {
	per := p.PerWord()
	words := make([]uint32, out*in/per)
	for i, q := range codes[:out*in] {
		words[i/per] |= uint32(q) << (uint(i%per) * uint(p.Bits))
	}
	return words
}

// Unpack is the inverse of Pack.
func Unpack(words []uint32, out, in int, p Params) []uint8 {
	per, mask := p.PerWord(), uint32(p.MaxQ())
	codes := make([]uint8, out*in)
	for i := range codes {
		codes[i] = uint8(words[i/per] >> (uint(i%per) * uint(p.Bits)) & mask)
	}
	return codes
}
