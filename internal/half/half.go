// Package half converts between float32 and the 16-bit float formats found in
// checkpoints: IEEE 754 binary16 (F16) and bfloat16 (BF16). Widening is exact;
// narrowing rounds to nearest, ties to even, as PyTorch does.
package half

import "math"

// BF16ToF32 widens a bfloat16 bit pattern exactly (it is the high half of a float32).
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F32ToBF16 narrows f to bfloat16 with round-to-nearest-even. NaN stays NaN
// (quiet), infinities stay infinities, and overflow rounds to infinity.
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN: keep sign, force a quiet payload bit
		return uint16(b>>16) | 0x0040
	}
	rounding := uint32(0x7fff) + (b>>16)&1
	return uint16((b + rounding) >> 16)
}

// F16ToF32 widens an IEEE binary16 bit pattern exactly.
func F16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f: // Inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp != 0: // normal
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	case mant == 0: // signed zero
		return math.Float32frombits(sign)
	}
	// subnormal: value = mant · 2^-24, exactly representable in float32
	f := float32(mant) * (1.0 / (1 << 24))
	if sign != 0 {
		f = -f
	}
	return f
}

// F32ToF16 narrows f to IEEE binary16 with round-to-nearest-even, producing
// subnormals, infinities on overflow and a quiet NaN for NaN.
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	abs := b & 0x7fffffff
	switch {
	case abs > 0x7f800000: // NaN
		return sign | 0x7e00 | uint16((abs>>13)&0x3ff)
	case abs >= 0x477ff000: // rounds to ≥ 65520 → Inf (also Inf itself)
		return sign | 0x7c00
	case abs >= 0x38800000: // normal half (≥ 2^-14)
		// rebias exponent (127 → 15) and round the 13 dropped mantissa bits
		v := abs - (112 << 23)
		rounding := uint32(0xfff) + (v>>13)&1
		return sign | uint16((v+rounding)>>13)
	case abs < 0x33000000: // below half of the smallest subnormal (2^-25): ±0
		return sign
	}
	// subnormal half: value = m · 2^-24 with m rounded to nearest even
	exp := abs >> 23
	mant := abs&0x7fffff | 0x800000 // implicit bit
	shift := 126 - exp              // so that mant >> shift is in units of 2^-24
	m := mant >> shift
	rem := mant & (1<<shift - 1)
	halfway := uint32(1) << (shift - 1)
	if rem > halfway || (rem == halfway && m&1 == 1) {
		m++
	}
	return sign | uint16(m)
}

// WidenBF16 writes the float32 value of every element of src into dst.
func WidenBF16(dst []float32, src []uint16) {
	_ = dst[len(src)-1:]
	for i, h := range src {
		dst[i] = math.Float32frombits(uint32(h) << 16)
	}
}

// WidenF16 writes the float32 value of every element of src into dst.
func WidenF16(dst []float32, src []uint16) {
	_ = dst[len(src)-1:]
	for i, h := range src {
		dst[i] = F16ToF32(h)
	}
}

// NarrowBF16 rounds every element of src to bfloat16 into dst.
func NarrowBF16(dst []uint16, src []float32) {
	_ = dst[len(src)-1:]
	for i, f := range src {
		dst[i] = F32ToBF16(f)
	}
}

// NarrowF16 rounds every element of src to binary16 into dst.
func NarrowF16(dst []uint16, src []float32) {
	_ = dst[len(src)-1:]
	for i, f := range src {
		dst[i] = F32ToF16(f)
	}
}
