// Package gguf reads and writes GGUF files, the single-file model format of
// llama.cpp (FORMATS.md, GGUF section): a header of typed key/value metadata
// and tensor descriptions, then an aligned data section.
//
// The reader memory-maps the file, validates every header field against the
// file's size before allocating anything, and hands out zero-copy views of
// tensor data. The writer streams: the header is written from the declared
// tensors, then each tensor's bytes as they are produced. Dimensions are in
// ggml's ne order (fastest-varying first: a PyTorch shape reversed).
//
// The tensor types moeforge produces and dequantizes are F32, F16, BF16, Q8_0
// and Q4_0, the last two with llama.cpp's reference round-to-nearest
// quantizers; the sizes of the other common ggml types are known so that
// files holding them can be read and inspected.
package gguf

import "fmt"

// Magic is the four bytes a GGUF file starts with.
const Magic = "GGUF"

// Version is the format version written; versions 2 and 3 are read.
const Version = 3

// DefaultAlignment is the data alignment when general.alignment is absent.
const DefaultAlignment = 32

// MaxDims is the largest number of dimensions ggml tensors have.
const MaxDims = 4

// MaxNameLen is the longest tensor name ggml accepts (GGML_MAX_NAME − 1).
const MaxNameLen = 63

// Type is a ggml tensor type.
type Type uint32

// The ggml tensor types whose layout this package knows.
const (
	F32  Type = 0
	F16  Type = 1
	Q4_0 Type = 2
	Q4_1 Type = 3
	Q5_0 Type = 6
	Q5_1 Type = 7
	Q8_0 Type = 8
	Q8_1 Type = 9
	Q2_K Type = 10
	Q3_K Type = 11
	Q4_K Type = 12
	Q5_K Type = 13
	Q6_K Type = 14
	Q8_K Type = 15
	I8   Type = 24
	I16  Type = 25
	I32  Type = 26
	I64  Type = 27
	F64  Type = 28
	BF16 Type = 30
)

type typeInfo struct {
	name  string
	block int // elements per block
	bytes int // bytes per block
}

var types = map[Type]typeInfo{
	F32: {"F32", 1, 4}, F16: {"F16", 1, 2}, BF16: {"BF16", 1, 2}, F64: {"F64", 1, 8},
	I8: {"I8", 1, 1}, I16: {"I16", 1, 2}, I32: {"I32", 1, 4}, I64: {"I64", 1, 8},
	Q4_0: {"Q4_0", 32, 18}, Q4_1: {"Q4_1", 32, 20}, Q5_0: {"Q5_0", 32, 22}, Q5_1: {"Q5_1", 32, 24},
	Q8_0: {"Q8_0", 32, 34}, Q8_1: {"Q8_1", 32, 36},
	Q2_K: {"Q2_K", 256, 84}, Q3_K: {"Q3_K", 256, 110}, Q4_K: {"Q4_K", 256, 144},
	Q5_K: {"Q5_K", 256, 176}, Q6_K: {"Q6_K", 256, 210}, Q8_K: {"Q8_K", 256, 292},
}

// Known reports whether the type's block layout is known to this package.
func (t Type) Known() bool { _, ok := types[t]; return ok }

// String returns ggml's name of the type ("Q4_0"), or "type(N)".
func (t Type) String() string {
	if ti, ok := types[t]; ok {
		return ti.name
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// BlockSize returns the number of elements per block (1 for plain types).
func (t Type) BlockSize() int { return types[t].block }

// BlockBytes returns the number of bytes per block.
func (t Type) BlockBytes() int { return types[t].bytes }

// ParseType returns the type named s (case-insensitive: "q4_0", "F16").
func ParseType(s string) (Type, bool) {
	for t, ti := range types {
		if equalFold(ti.name, s) {
			return t, true
		}
	}
	return 0, false
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		if 'a' <= y && y <= 'z' {
			y -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// FileType values of general.file_type ("mostly" the given type).
const (
	FileTypeF32  uint32 = 0
	FileTypeF16  uint32 = 1
	FileTypeQ4_0 uint32 = 2
	FileTypeQ8_0 uint32 = 7
	FileTypeBF16 uint32 = 32
)

// FileTypeOf returns the general.file_type of a file whose large matrices
// have type t.
func FileTypeOf(t Type) (uint32, bool) {
	switch t {
	case F32:
		return FileTypeF32, true
	case F16:
		return FileTypeF16, true
	case Q4_0:
		return FileTypeQ4_0, true
	case Q8_0:
		return FileTypeQ8_0, true
	case BF16:
		return FileTypeBF16, true
	}
	return 0, false
}

// ValueType is the type of a metadata value.
type ValueType uint32

// The metadata value types of GGUF.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

var valueTypeNames = [...]string{"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64"}

// String returns a short name of the type ("u32", "str").
func (v ValueType) String() string {
	if int(v) < len(valueTypeNames) {
		return valueTypeNames[v]
	}
	return fmt.Sprintf("valuetype(%d)", uint32(v))
}

// size returns the encoded size of a scalar value type, 0 for string and
// array.
func (v ValueType) size() int {
	switch v {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	}
	return 0
}

// KV is one metadata entry. Value holds the Go type of its GGUF type: uint8,
// int8, uint16, int16, uint32, int32, float32, bool, string, uint64, int64,
// float64, or a slice of one of those for an array.
type KV struct {
	Key   string
	Value any
}

// typeOf returns the GGUF type of a Go value (and the element type of a
// slice), or false when the value has no GGUF encoding.
func typeOf(v any) (t, elem ValueType, ok bool) {
	switch v.(type) {
	case uint8:
		return TypeUint8, 0, true
	case int8:
		return TypeInt8, 0, true
	case uint16:
		return TypeUint16, 0, true
	case int16:
		return TypeInt16, 0, true
	case uint32:
		return TypeUint32, 0, true
	case int32:
		return TypeInt32, 0, true
	case float32:
		return TypeFloat32, 0, true
	case bool:
		return TypeBool, 0, true
	case string:
		return TypeString, 0, true
	case uint64:
		return TypeUint64, 0, true
	case int64:
		return TypeInt64, 0, true
	case float64:
		return TypeFloat64, 0, true
	case []uint8:
		return TypeArray, TypeUint8, true
	case []int8:
		return TypeArray, TypeInt8, true
	case []uint16:
		return TypeArray, TypeUint16, true
	case []int16:
		return TypeArray, TypeInt16, true
	case []uint32:
		return TypeArray, TypeUint32, true
	case []int32:
		return TypeArray, TypeInt32, true
	case []float32:
		return TypeArray, TypeFloat32, true
	case []bool:
		return TypeArray, TypeBool, true
	case []string:
		return TypeArray, TypeString, true
	case []uint64:
		return TypeArray, TypeUint64, true
	case []int64:
		return TypeArray, TypeInt64, true
	case []float64:
		return TypeArray, TypeFloat64, true
	}
	return 0, 0, false
}

// RowBytes returns the bytes of a row of ne0 elements of type t, or an error
// when ne0 is not a whole number of blocks.
func (t Type) RowBytes(ne0 int) (int, error) {
	ti, ok := types[t]
	if !ok {
		return 0, fmt.Errorf("unknown ggml type %d", uint32(t))
	}
	if ne0%ti.block != 0 {
		return 0, fmt.Errorf("%s rows hold whole blocks of %d elements; %d is not a multiple", ti.name, ti.block, ne0)
	}
	return ne0 / ti.block * ti.bytes, nil
}
