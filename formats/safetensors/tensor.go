package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"

	"github.com/moeforge/moeforge/internal/half"
)

// Tensor is a lazy view of one tensor: its name, type and shape are known;
// its bytes are read from the file's memory map only when used.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	// File is the path of the file holding the tensor (for error messages).
	File string

	data []byte
}

// NewTensor wraps bytes already in memory as a tensor (for tests and for
// tensors computed by moeforge itself). len(data) must match dtype and shape.
func NewTensor(name string, dtype DType, shape []int, data []byte) (*Tensor, error) {
	t := &Tensor{Name: name, DType: dtype, Shape: append([]int(nil), shape...), data: data}
	if dtype.Size() == 0 {
		return nil, fmt.Errorf("tensor %q: unsupported dtype %q", name, dtype)
	}
	if int64(len(data)) != t.ByteSize() {
		return nil, fmt.Errorf("tensor %q: %s %v needs %d bytes, got %d", name, dtype, shape, t.ByteSize(), len(data))
	}
	return t, nil
}

// NumElements is the product of the shape.
func (t *Tensor) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// ByteSize is the size of the tensor's data in bytes.
func (t *Tensor) ByteSize() int64 { return int64(t.NumElements()) * int64(t.DType.Size()) }

// Bytes returns the raw little-endian data (a view: do not modify it).
func (t *Tensor) Bytes() []byte { return t.data }

// String describes the tensor for messages: name dtype [shape].
func (t *Tensor) String() string { return fmt.Sprintf("%s %s %v", t.Name, t.DType, t.Shape) }

// Rows returns a view of rows [r0, r1) of the tensor's first dimension.
func (t *Tensor) Rows(r0, r1 int) (*Tensor, error) {
	if len(t.Shape) == 0 || r0 < 0 || r1 < r0 || r1 > t.Shape[0] {
		return nil, fmt.Errorf("tensor %q %v: rows [%d, %d) out of range", t.Name, t.Shape, r0, r1)
	}
	row := int(t.ByteSize()) / max(t.Shape[0], 1)
	shape := append([]int{r1 - r0}, t.Shape[1:]...)
	return &Tensor{Name: t.Name, DType: t.DType, Shape: shape, File: t.File, data: t.data[r0*row : r1*row : r1*row]}, nil
}

// Float32 converts the tensor to a new float32 slice. F32, F16 and BF16 are
// widened exactly; F64 is rounded to nearest; integer types are converted.
func (t *Tensor) Float32() ([]float32, error) {
	out := make([]float32, t.NumElements())
	return out, t.Float32Into(out)
}

// Float32Into converts the tensor into dst, which must hold NumElements values.
func (t *Tensor) Float32Into(dst []float32) error {
	n := t.NumElements()
	if len(dst) != n {
		return fmt.Errorf("tensor %q: destination holds %d values, tensor has %d", t.Name, len(dst), n)
	}
	b := t.data
	switch t.DType {
	case F32:
		if v, ok := t.F32View(); ok {
			copy(dst, v)
			return nil
		}
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	case BF16, F16:
		v, ok := t.U16View()
		if !ok {
			v = make([]uint16, n)
			for i := range v {
				v[i] = binary.LittleEndian.Uint16(b[2*i:])
			}
		}
		if n == 0 {
			return nil
		}
		if t.DType == BF16 {
			half.WidenBF16(dst, v)
		} else {
			half.WidenF16(dst, v)
		}
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:])))
		}
	case F8E4M3:
		for i := range dst {
			dst[i] = f8e4m3(b[i])
		}
	case F8E5M2:
		for i := range dst {
			dst[i] = half.F16ToF32(uint16(b[i]) << 8)
		}
	case I64, I32, I16, I8, U8, U16, U32, U64, BOOL:
		ints, err := t.Int64s()
		if err != nil {
			return err
		}
		for i, v := range ints {
			dst[i] = float32(v)
		}
	default:
		return fmt.Errorf("tensor %q: cannot convert %s to float32", t.Name, t.DType)
	}
	return nil
}

// f8e4m3 widens an OCP FP8 E4M3FN value (no infinities, 0x7f/0xff are NaN).
func f8e4m3(v byte) float32 {
	sign := float32(1)
	if v&0x80 != 0 {
		sign = -1
	}
	exp := int(v>>3) & 0xf
	mant := float32(v & 7)
	switch {
	case exp == 0xf && v&7 == 7:
		return float32(math.NaN())
	case exp == 0:
		return sign * mant / 8 * float32(math.Ldexp(1, -6))
	}
	return sign * (1 + mant/8) * float32(math.Ldexp(1, exp-7))
}

// Int64s converts an integer or boolean tensor to int64 values.
func (t *Tensor) Int64s() ([]int64, error) {
	n := t.NumElements()
	out := make([]int64, n)
	b := t.data
	switch t.DType {
	case I64:
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
		}
	case U64:
		for i := range out {
			v := binary.LittleEndian.Uint64(b[8*i:])
			if v > math.MaxInt64 {
				return nil, fmt.Errorf("tensor %q: value %d at %d does not fit int64", t.Name, v, i)
			}
			out[i] = int64(v)
		}
	case I32:
		for i := range out {
			out[i] = int64(int32(binary.LittleEndian.Uint32(b[4*i:])))
		}
	case U32:
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint32(b[4*i:]))
		}
	case I16:
		for i := range out {
			out[i] = int64(int16(binary.LittleEndian.Uint16(b[2*i:])))
		}
	case U16:
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint16(b[2*i:]))
		}
	case I8:
		for i := range out {
			out[i] = int64(int8(b[i]))
		}
	case U8, BOOL:
		for i := range out {
			out[i] = int64(b[i])
		}
	default:
		return nil, fmt.Errorf("tensor %q: %s is not an integer type", t.Name, t.DType)
	}
	return out, nil
}

// Int32s returns the values of an I32 tensor.
func (t *Tensor) Int32s() ([]int32, error) {
	if t.DType != I32 {
		return nil, fmt.Errorf("tensor %q: dtype %s, want I32", t.Name, t.DType)
	}
	if v, ok := viewAs[int32](t.data); ok {
		return v, nil
	}
	out := make([]int32, t.NumElements())
	for i := range out {
		out[i] = int32(binary.LittleEndian.Uint32(t.data[4*i:]))
	}
	return out, nil
}

// Uint32s returns the values of a U32 tensor (a view of the file's memory
// where alignment allows), e.g. MLX's packed quantized weights.
func (t *Tensor) Uint32s() ([]uint32, error) {
	if t.DType != U32 {
		return nil, fmt.Errorf("tensor %q: dtype %s, want U32", t.Name, t.DType)
	}
	if v, ok := viewAs[uint32](t.data); ok {
		return v, nil
	}
	out := make([]uint32, t.NumElements())
	for i := range out {
		out[i] = binary.LittleEndian.Uint32(t.data[4*i:])
	}
	return out, nil
}

// F32View returns the data of an F32 tensor as a []float32 sharing memory
// with the file, when the host is little-endian and the data is aligned.
func (t *Tensor) F32View() ([]float32, bool) {
	if t.DType != F32 {
		return nil, false
	}
	return viewAs[float32](t.data)
}

// U16View returns the raw bit patterns of an F16 or BF16 tensor without
// copying, when the host is little-endian and the data is aligned.
func (t *Tensor) U16View() ([]uint16, bool) {
	if t.DType != F16 && t.DType != BF16 {
		return nil, false
	}
	return viewAs[uint16](t.data)
}

var littleEndian = func() bool { x := uint16(1); return *(*byte)(unsafe.Pointer(&x)) == 1 }()

// viewAs reinterprets b as a slice of T without copying when that is safe.
func viewAs[T any](b []byte) ([]T, bool) {
	var zero T
	size := int(unsafe.Sizeof(zero))
	if !littleEndian || len(b)%size != 0 {
		return nil, false
	}
	if len(b) == 0 {
		return []T{}, true
	}
	if uintptr(unsafe.Pointer(&b[0]))%uintptr(unsafe.Alignof(zero)) != 0 {
		return nil, false
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&b[0])), len(b)/size), true
}

// Sub returns a view of count·∏shape elements starting at element offset,
// with the given shape (a reshape of a contiguous range of the tensor).
func (t *Tensor) Sub(offset int, shape []int) (*Tensor, error) {
	n := 1
	for _, d := range shape {
		n *= d
	}
	size := t.DType.Size()
	if offset < 0 || offset+n > t.NumElements() {
		return nil, fmt.Errorf("tensor %q %v: elements [%d, %d) out of range", t.Name, t.Shape, offset, offset+n)
	}
	b, e := offset*size, (offset+n)*size
	return &Tensor{Name: t.Name, DType: t.DType, Shape: append([]int(nil), shape...), File: t.File, data: t.data[b:e:e]}, nil
}

// TokenIDs returns the rows of an I64 or I32 token-id tensor: [N, T] gives N
// sequences of T ids, [T] one sequence. Empty tensors and other dtypes or
// ranks are errors naming the tensor.
func (t *Tensor) TokenIDs() ([][]int, error) {
	if t.DType != I64 && t.DType != I32 {
		return nil, fmt.Errorf("tensor %s has dtype %s, want I64 or I32 token ids", t.Name, t.DType)
	}
	var n, T int
	switch len(t.Shape) {
	case 1:
		n, T = 1, t.Shape[0]
	case 2:
		n, T = t.Shape[0], t.Shape[1]
	default:
		return nil, fmt.Errorf("tensor %s has shape %v, want [N, T] token ids", t.Name, t.Shape)
	}
	if n == 0 || T == 0 {
		return nil, fmt.Errorf("tensor %s has shape %v: no tokens", t.Name, t.Shape)
	}
	vals, err := t.Int64s()
	if err != nil {
		return nil, err
	}
	seqs := make([][]int, n)
	for i := range seqs {
		seqs[i] = make([]int, T)
		for j := range seqs[i] {
			seqs[i][j] = int(vals[i*T+j])
		}
	}
	return seqs, nil
}
