package safetensors

import (
	"testing"

	ref "github.com/nlpodyssey/safetensors"
)

// FuzzParse feeds arbitrary bytes to the header parser. It must never panic,
// and whatever it accepts must be accepted by the reference Go
// implementation too (for the dtypes that one knows): moeforge is at least as
// strict. Every accepted tensor's view must lie inside the file.
func FuzzParse(f *testing.F) {
	f.Add(build(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)))
	f.Add(build(`{"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[1,2],"data_offsets":[0,4]},"b":{"dtype":"I64","shape":[],"data_offsets":[4,12]}}`, make([]byte, 12)))
	f.Add(build(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}`, nil))
	f.Add(build(`{}`, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("fuzz", data)
		if err != nil {
			return
		}
		known := true
		for _, tt := range file.Tensors() {
			if int64(len(tt.Bytes())) != tt.ByteSize() {
				t.Fatalf("%s: view of %d bytes, want %d", tt.Name, len(tt.Bytes()), tt.ByteSize())
			}
			switch tt.DType {
			case F8E4M3, F8E5M2, F8E8M0:
				known = false
			}
		}
		if known {
			if _, err := ref.Deserialize(data); err != nil {
				t.Fatalf("moeforge accepted a file the reference rejects: %v", err)
			}
		}
	})
}
