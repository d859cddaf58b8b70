package gguf

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// FuzzParse feeds arbitrary bytes to the parser. It must never panic; every
// tensor view of an accepted file must have the size its type and
// dimensions imply; and writing what was read back with Writer must parse to
// the same metadata and tensors.
func FuzzParse(f *testing.F) {
	good, _ := writeSample(f)
	f.Add(good)
	aligned, _ := writeSample(f, KV{"general.alignment", uint32(64)})
	f.Add(aligned)
	f.Add(new(hostile).head(3, 0, 1).str("tokenizer.ggml.tokens").u32(uint32(TypeArray)).u32(uint32(TypeString)).u64(2).str("a").str("b").Bytes())
	f.Add(new(hostile).head(3, 2, 0).info("a", F32, 0, 16).info("b", Q8_0, 64, 32).pad(128).Bytes())
	f.Add(new(hostile).head(2, 1, 1).str("general.alignment").u32(uint32(TypeUint32)).u32(16).info("a", Q4_0, 0, 32, 1).pad(64).Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("fuzz", data)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		w := NewWriter(&buf)
		for _, kv := range file.KVs {
			if err := w.AddKV(kv.Key, kv.Value); err != nil {
				t.Fatalf("read metadata the writer refuses: %v", err)
			}
		}
		for _, tt := range file.Tensors {
			size, err := EncodedSize(tt.Type, tt.NumElements())
			if err != nil || len(tt.Bytes()) != size {
				t.Fatalf("%s: view of %d bytes, want %d (%v)", tt.Name, len(tt.Bytes()), size, err)
			}
			if tt.Type == F32 || tt.Type == F16 || tt.Type == BF16 || tt.Type == Q8_0 || tt.Type == Q4_0 {
				if _, err := tt.Float32(); err != nil {
					t.Fatalf("%s: %v", tt.Name, err)
				}
			}
			if err := w.AddTensor(tt.Name, tt.Type, tt.Dims); err != nil {
				t.Fatalf("read a tensor the writer refuses: %v", err)
			}
		}
		if err := w.WriteHeader(); err != nil {
			t.Fatal(err)
		}
		for _, tt := range file.Tensors {
			if err := w.WriteTensor(tt.Bytes()); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		again, err := Parse("rewritten", buf.Bytes())
		if err != nil {
			t.Fatalf("rewritten file refused: %v", err)
		}
		if diff := cmp.Diff(file.KVs, again.KVs, cmpopts.EquateNaNs(), cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("metadata changed on rewrite:\n%s", diff)
		}
		if len(again.Tensors) != len(file.Tensors) {
			t.Fatalf("%d tensors after rewrite, want %d", len(again.Tensors), len(file.Tensors))
		}
		for i, tt := range file.Tensors {
			u := again.Tensors[i]
			if u.Name != tt.Name || u.Type != tt.Type || !cmp.Equal(u.Dims, tt.Dims, cmpopts.EquateEmpty()) || !bytes.Equal(u.Bytes(), tt.Bytes()) {
				t.Fatalf("tensor %d changed on rewrite: %s %s %v → %s %s %v", i, tt.Name, tt.Type, tt.Dims, u.Name, u.Type, u.Dims)
			}
		}
	})
}
