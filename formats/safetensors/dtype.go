// Package safetensors reads and writes the safetensors format: single files
// (memory-mapped, never read into the Go heap), sharded checkpoints with a
// model.safetensors.index.json, and a streaming writer that shards its output.
//
// Reading is at least as strict as the reference implementation
// (huggingface/safetensors): every malformed header is rejected with an error
// naming the file and, where it applies, the tensor.
package safetensors

// DType is a safetensors element type as written in headers ("F32", "BF16", …).
type DType string

// The element types moeforge knows. Size reports their width.
const (
	BOOL   DType = "BOOL"
	U8     DType = "U8"
	I8     DType = "I8"
	I16    DType = "I16"
	U16    DType = "U16"
	F16    DType = "F16"
	BF16   DType = "BF16"
	I32    DType = "I32"
	U32    DType = "U32"
	F32    DType = "F32"
	F64    DType = "F64"
	I64    DType = "I64"
	U64    DType = "U64"
	F8E4M3 DType = "F8_E4M3"
	F8E5M2 DType = "F8_E5M2"
	F8E8M0 DType = "F8_E8M0"
)

// Size returns the number of bytes per element, or 0 for an unknown type.
func (d DType) Size() int {
	switch d {
	case BOOL, U8, I8, F8E4M3, F8E5M2, F8E8M0:
		return 1
	case I16, U16, F16, BF16:
		return 2
	case I32, U32, F32:
		return 4
	case F64, I64, U64:
		return 8
	}
	return 0
}

// IsFloat reports whether d is a floating-point type moeforge can widen to float32.
func (d DType) IsFloat() bool {
	switch d {
	case F16, BF16, F32, F64, F8E4M3, F8E5M2:
		return true
	}
	return false
}
