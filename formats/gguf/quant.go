package gguf

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/moeforge/moeforge/internal/half"
)

// QK is the block size of Q4_0 and Q8_0: 32 consecutive elements of a row.
const QK = 32

// Bytes per block: an f16 scale d, then 16 bytes of nibbles (Q4_0) or 32
// int8 codes (Q8_0).
const (
	BlockBytesQ4_0 = 2 + QK/2
	BlockBytesQ8_0 = 2 + QK
)

// QuantizeQ4_0 writes len(src)/32 Q4_0 blocks of src into dst exactly as
// llama.cpp's reference quantize_row_q4_0_ref does: d = (the element of
// largest magnitude, signed) / −8 in float32, id = 1/d (0 when d is 0), code
// q = min(15, int8(x·id + 8.5)) truncated toward zero, d stored as f16. Byte
// j of a block holds element j in its low nibble and element j+16 in its
// high nibble. len(src) must be a multiple of 32.
func QuantizeQ4_0(dst []byte, src []float32) {
	nb := len(src) / QK
	_ = dst[nb*BlockBytesQ4_0-1]
	for i := 0; i < nb; i++ {
		x := src[i*QK : (i+1)*QK : (i+1)*QK]
		var amax, max float32
		for _, v := range x {
			if a := float32(math.Abs(float64(v))); amax < a {
				amax, max = a, v
			}
		}
		d := max / -8
		var id float32
		if d != 0 {
			id = 1 / d
		}
		b := dst[i*BlockBytesQ4_0 : (i+1)*BlockBytesQ4_0 : (i+1)*BlockBytesQ4_0]
		binary.LittleEndian.PutUint16(b, half.F32ToF16(d))
		for j := 0; j < QK/2; j++ {
			// The explicit float32 conversions forbid fusing into an FMA,
			// which would round differently from the reference C.
			q0 := min(15, uint8(int8(float32(x[j]*id)+8.5)))
			q1 := min(15, uint8(int8(float32(x[j+QK/2]*id)+8.5)))
			b[2+j] = q0 | q1<<4
		}
	}
}

// DequantizeQ4_0 expands Q4_0 blocks: x = (q − 8)·d, as ggml does.
func DequantizeQ4_0(dst []float32, src []byte) {
	nb := len(src) / BlockBytesQ4_0
	_ = dst[nb*QK-1]
	for i := 0; i < nb; i++ {
		b := src[i*BlockBytesQ4_0 : (i+1)*BlockBytesQ4_0 : (i+1)*BlockBytesQ4_0]
		d := half.F16ToF32(binary.LittleEndian.Uint16(b))
		y := dst[i*QK : (i+1)*QK : (i+1)*QK]
		for j := 0; j < QK/2; j++ {
			y[j] = float32(int32(b[2+j]&15)-8) * d
			y[j+QK/2] = float32(int32(b[2+j]>>4)-8) * d
		}
	}
}

// QuantizeQ8_0 writes len(src)/32 Q8_0 blocks exactly as llama.cpp's
// reference quantize_row_q8_0_ref does: d = amax/127 in float32, id = 1/d
// (0 when d is 0), q = roundf(x·id) (ties away from zero), d stored as f16.
func QuantizeQ8_0(dst []byte, src []float32) {
	nb := len(src) / QK
	_ = dst[nb*BlockBytesQ8_0-1]
	for i := 0; i < nb; i++ {
		x := src[i*QK : (i+1)*QK : (i+1)*QK]
		var amax float32
		for _, v := range x {
			amax = max(amax, float32(math.Abs(float64(v))))
		}
		d := amax / 127
		var id float32
		if d != 0 {
			id = 1 / d
		}
		b := dst[i*BlockBytesQ8_0 : (i+1)*BlockBytesQ8_0 : (i+1)*BlockBytesQ8_0]
		binary.LittleEndian.PutUint16(b, half.F32ToF16(d))
		for j, v := range x {
			b[2+j] = byte(int8(roundf(float32(v * id))))
		}
	}
}

// roundf rounds half away from zero in float32, as C's roundf.
func roundf(x float32) float32 { return float32(math.Round(float64(x))) }

// DequantizeQ8_0 expands Q8_0 blocks: x = q·d.
func DequantizeQ8_0(dst []float32, src []byte) {
	nb := len(src) / BlockBytesQ8_0
	_ = dst[nb*QK-1]
	for i := 0; i < nb; i++ {
		b := src[i*BlockBytesQ8_0 : (i+1)*BlockBytesQ8_0 : (i+1)*BlockBytesQ8_0]
		d := half.F16ToF32(binary.LittleEndian.Uint16(b))
		y := dst[i*QK : (i+1)*QK : (i+1)*QK]
		for j := range y {
			y[j] = float32(int8(b[2+j])) * d
		}
	}
}

// EncodedSize returns the bytes n elements of type t take.
func EncodedSize(t Type, n int) (int, error) {
	if !t.Known() {
		return 0, fmt.Errorf("unknown ggml type %d", uint32(t))
	}
	if n%t.BlockSize() != 0 {
		return 0, fmt.Errorf("%d elements are not whole %s blocks of %d", n, t, t.BlockSize())
	}
	return n / t.BlockSize() * t.BlockBytes(), nil
}

// Encode converts float32 values to type t (F32, F16 and BF16 rounding to
// nearest even; Q8_0 and Q4_0 with llama.cpp's reference quantizers) into
// dst, which must have EncodedSize(t, len(src)) bytes.
func Encode(t Type, dst []byte, src []float32) error {
	n, err := EncodedSize(t, len(src))
	if err != nil {
		return err
	}
	if len(dst) != n {
		return fmt.Errorf("encode %d values as %s: %d bytes of room, want %d", len(src), t, len(dst), n)
	}
	le := binary.LittleEndian
	switch t {
	case F32:
		for i, v := range src {
			le.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case F16:
		for i, v := range src {
			le.PutUint16(dst[2*i:], half.F32ToF16(v))
		}
	case BF16:
		for i, v := range src {
			le.PutUint16(dst[2*i:], half.F32ToBF16(v))
		}
	case Q8_0:
		QuantizeQ8_0(dst, src)
	case Q4_0:
		QuantizeQ4_0(dst, src)
	default:
		return fmt.Errorf("encoding %s is not supported (F32, F16, BF16, Q8_0, Q4_0 are)", t)
	}
	return nil
}

// Decode converts src of type t to float32 values in dst, whose length must
// be the number of elements src holds.
func Decode(t Type, dst []float32, src []byte) error {
	n, err := EncodedSize(t, len(dst))
	if err != nil {
		return err
	}
	if len(src) != n {
		return fmt.Errorf("decode %d values of %s: %d bytes, want %d", len(dst), t, len(src), n)
	}
	le := binary.LittleEndian
	switch t {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(le.Uint32(src[4*i:]))
		}
	case F16:
		for i := range dst {
			dst[i] = half.F16ToF32(le.Uint16(src[2*i:]))
		}
	case BF16:
		for i := range dst {
			dst[i] = half.BF16ToF32(le.Uint16(src[2*i:]))
		}
	case Q8_0:
		DequantizeQ8_0(dst, src)
	case Q4_0:
		DequantizeQ4_0(dst, src)
	default:
		return fmt.Errorf("decoding %s is not supported (F32, F16, BF16, Q8_0, Q4_0 are)", t)
	}
	return nil
}
