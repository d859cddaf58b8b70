package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/formats/safetensors"
)

// sampleKVs holds one entry of every value type, scalar and array.
var sampleKVs = []KV{
	{"general.architecture", "qwen2moe"},
	{"u8", uint8(200)}, {"i8", int8(-100)}, {"u16", uint16(60000)}, {"i16", int16(-30000)},
	{"u32", uint32(4000000000)}, {"i32", int32(-2000000000)}, {"f32", float32(1.5e-7)},
	{"bool.true", true}, {"bool.false", false}, {"u64", uint64(1) << 60}, {"i64", int64(-1) << 60},
	{"f64", math.Pi}, {"str.empty", ""}, {"str.utf8", "Ġhello wörld\n"},
	{"arr.u8", []uint8{1, 2, 3}}, {"arr.i8", []int8{-1, 2}}, {"arr.u16", []uint16{7}}, {"arr.i16", []int16{-7, 7}},
	{"arr.u32", []uint32{1, 1 << 31}}, {"arr.i32", []int32{1, -2, 3}}, {"arr.f32", []float32{0.5, -2}},
	{"arr.bool", []bool{true, false, true}}, {"arr.str", []string{"a b", "", "Ċ"}}, {"arr.u64", []uint64{1 << 63}},
	{"arr.i64", []int64{-5}}, {"arr.f64", []float64{1e300}}, {"arr.empty", []string{}},
}

type sampleTensor struct {
	name string
	typ  Type
	dims []int
}

var sampleTensors = []sampleTensor{
	{"token_embd.weight", F32, []int{64, 3}},
	{"blk.0.attn_q.weight", Q4_0, []int{64, 2}},
	{"blk.0.ffn_up_exps.weight", Q8_0, []int{32, 2, 2}},
	{"blk.0.attn_norm.weight", F16, []int{5}},
	{"output.weight", BF16, []int{3, 1}},
	{"empty", F32, []int{0}},
}

// writeSample writes a file with sampleKVs and sampleTensors whose values
// are i/7 for element i, returning the bytes and the float values encoded.
func writeSample(t testing.TB, extra ...KV) ([]byte, map[string][]float32) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, kv := range append(append([]KV(nil), extra...), sampleKVs...) {
		if err := w.AddKV(kv.Key, kv.Value); err != nil {
			t.Fatal(err)
		}
	}
	vals := map[string][]float32{}
	for _, st := range sampleTensors {
		if err := w.AddTensor(st.name, st.typ, st.dims); err != nil {
			t.Fatal(err)
		}
	}
	size := w.Size()
	if err := w.WriteHeader(); err != nil {
		t.Fatal(err)
	}
	for _, st := range sampleTensors {
		n := 1
		for _, d := range st.dims {
			n *= d
		}
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(i%11-5) / 7
		}
		enc := make([]byte, mustSize(t, st.typ, n))
		if err := Encode(st.typ, enc, x); err != nil {
			t.Fatal(err)
		}
		dec := make([]float32, n)
		Decode(st.typ, dec, enc)
		vals[st.name] = dec
		if err := w.WriteTensor(enc); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if int64(buf.Len()) != size {
		t.Fatalf("Size() said %d, wrote %d", size, buf.Len())
	}
	return buf.Bytes(), vals
}

func mustSize(t testing.TB, ty Type, n int) int {
	s, err := EncodedSize(ty, n)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRoundTrip(t *testing.T) {
	for _, align := range []uint32{0, 32, 64, 4096} {
		var extra []KV
		if align != 0 {
			extra = []KV{{"general.alignment", align}}
		}
		data, vals := writeSample(t, extra...)
		path := filepath.Join(t.TempDir(), "m.gguf")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		want := append(append([]KV(nil), extra...), sampleKVs...)
		if diff := cmp.Diff(want, f.KVs); diff != "" {
			t.Errorf("alignment %d: metadata differs (-want +got):\n%s", align, diff)
		}
		a := int(align)
		if a == 0 {
			a = DefaultAlignment
		}
		if f.Alignment != a || f.DataOffset%int64(a) != 0 {
			t.Errorf("alignment %d, data offset %d, want alignment %d", f.Alignment, f.DataOffset, a)
		}
		if len(f.Tensors) != len(sampleTensors) {
			t.Fatalf("%d tensors, want %d", len(f.Tensors), len(sampleTensors))
		}
		for i, st := range sampleTensors {
			got := f.Tensors[i]
			if got.Name != st.name || got.Type != st.typ || !cmp.Equal(got.Dims, st.dims) || got.Offset%int64(a) != 0 {
				t.Errorf("tensor %d: %s %s %v @%d, want %s %s %v", i, got.Name, got.Type, got.Dims, got.Offset, st.name, st.typ, st.dims)
			}
			x, err := got.Float32()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(vals[st.name], x); diff != "" {
				t.Errorf("tensor %s values differ:\n%s", st.name, diff)
			}
		}
		if s, ok := f.String("general.architecture"); !ok || s != "qwen2moe" {
			t.Errorf("String(general.architecture) = %q, %v", s, ok)
		}
		if v, ok := f.Uint("u32"); !ok || v != 4000000000 {
			t.Errorf("Uint(u32) = %d, %v", v, ok)
		}
		if _, ok := f.Uint("i32"); ok {
			t.Error("Uint accepted a negative i32")
		}
		if v, ok := f.Float("f32"); !ok || v != float64(float32(1.5e-7)) {
			t.Errorf("Float(f32) = %g, %v", v, ok)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWriterRefuses(t *testing.T) {
	w := NewWriter(&bytes.Buffer{})
	for _, c := range []struct {
		name string
		err  error
	}{
		{"int has no GGUF type", w.AddKV("x", 3)},
		{"bad alignment", w.AddKV("general.alignment", uint32(48))},
		{"Q4_0 row of 48", w.AddTensor("a", Q4_0, []int{48, 2})},
		{"5 dims", w.AddTensor("b", F32, []int{1, 1, 1, 1, 1})},
		{"long name", w.AddTensor(strings.Repeat("n", 64), F32, []int{1})},
		{"negative dim", w.AddTensor("c", F32, []int{-1})},
	} {
		if c.err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
	if err := w.AddTensor("ok", F32, []int{2}); err != nil {
		t.Fatal(err)
	}
	if err := w.AddTensor("ok", F32, []int{2}); err == nil {
		t.Error("duplicate tensor accepted")
	}
	if err := w.WriteHeader(); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteTensor(make([]byte, 7)); err == nil {
		t.Error("7 bytes accepted for an F32 tensor of 2")
	}
	if err := w.Close(); err == nil {
		t.Error("Close with an unwritten tensor succeeded")
	}
}

// hostile builds a file from parts written with a little-endian helper.
type hostile struct{ bytes.Buffer }

func (h *hostile) u32(v uint32) *hostile { binary.Write(h, binary.LittleEndian, v); return h }
func (h *hostile) u64(v uint64) *hostile { binary.Write(h, binary.LittleEndian, v); return h }
func (h *hostile) byte(v byte) *hostile  { h.WriteByte(v); return h }
func (h *hostile) str(s string) *hostile { h.u64(uint64(len(s))); h.WriteString(s); return h }
func (h *hostile) head(version uint32, tensors, kvs uint64) *hostile {
	h.WriteString(Magic)
	return h.u32(version).u64(tensors).u64(kvs)
}
func (h *hostile) info(name string, typ Type, off uint64, dims ...uint64) *hostile {
	h.str(name).u32(uint32(len(dims)))
	for _, d := range dims {
		h.u64(d)
	}
	return h.u32(uint32(typ)).u64(off)
}
func (h *hostile) pad(n int) *hostile {
	for h.Len()%32 != 0 {
		h.WriteByte(0)
	}
	h.Write(make([]byte, n))
	return h
}

func TestHostileFiles(t *testing.T) {
	good, _ := writeSample(t)
	cases := []struct {
		name, data, want string
	}{
		{"empty", "", "bad magic"},
		{"bad magic", "GGML" + string(good[4:]), "bad magic"},
		{"version 1", string(append([]byte("GGUF\x01\x00\x00\x00"), good[8:]...)), "unsupported version 1"},
		{"version 4", string(append([]byte("GGUF\x04\x00\x00\x00"), good[8:]...)), "unsupported version 4"},
		{"truncated header", string(good[:20]), "truncated"},
		{"truncated data", string(good[:len(good)-40]), "past the end"},
		{"2^60 strings", new(hostile).head(3, 0, 1).str("tokenizer.ggml.tokens").u32(uint32(TypeArray)).u32(uint32(TypeString)).u64(1 << 60).String(), "array of 1152921504606846976 strings cannot fit"},
		{"2^62 u32", new(hostile).head(3, 0, 1).str("a").u32(uint32(TypeArray)).u32(uint32(TypeUint32)).u64(1 << 62).String(), "cannot fit"},
		{"huge key length", new(hostile).head(3, 0, 1).u64(1 << 62).pad(64).String(), "truncated"},
		{"kv count", new(hostile).head(3, 0, 1<<40).String(), "metadata count"},
		{"tensor count", new(hostile).head(3, 1<<40, 0).String(), "tensor count"},
		{"unknown value type", new(hostile).head(3, 0, 1).str("a").u32(13).String(), "unknown value type 13"},
		{"nested array", new(hostile).head(3, 0, 1).str("a").u32(uint32(TypeArray)).u32(uint32(TypeArray)).u64(1).String(), "nested arrays"},
		{"bad bool", new(hostile).head(3, 0, 1).str("a").u32(uint32(TypeBool)).u32(2).String(), "bool value 2"},
		{"duplicate key", new(hostile).head(3, 0, 2).str("a").u32(uint32(TypeUint8)).byte(1).str("a").u32(uint32(TypeUint8)).byte(1).String(), "duplicate key"},
		{"alignment type", new(hostile).head(3, 0, 1).str("general.alignment").u32(uint32(TypeUint64)).u64(32).String(), "want u32"},
		{"alignment 0", new(hostile).head(3, 0, 1).str("general.alignment").u32(uint32(TypeUint32)).u32(0).String(), "power of two"},
		{"unknown type", new(hostile).head(3, 1, 0).info("w", Type(5), 0, 32).pad(128).String(), "unknown or unsupported ggml type 5"},
		{"5 dims", new(hostile).head(3, 1, 0).info("w", F32, 0, 1, 1, 1, 1, 1).pad(128).String(), "5 dimensions"},
		{"dimension overflow", new(hostile).head(3, 1, 0).info("w", F32, 0, 1<<32, 1<<32).pad(128).String(), "overflow"},
		{"negative dimension", new(hostile).head(3, 1, 0).info("w", F32, 0, 1<<63).pad(128).String(), "negative"},
		{"byte size overflow", new(hostile).head(3, 1, 0).info("w", F64, 0, 1<<31, 1<<31).pad(128).String(), "overflows"},
		{"partial block", new(hostile).head(3, 1, 0).info("w", Q4_0, 0, 48).pad(128).String(), "whole 32-element blocks"},
		{"past the end", new(hostile).head(3, 1, 0).info("w", F32, 0, 64).pad(128).String(), "past the end"},
		{"offset past the end", new(hostile).head(3, 1, 0).info("w", F32, 1<<40, 1).pad(128).String(), "past the end"},
		{"misaligned", new(hostile).head(3, 1, 0).info("w", F32, 4, 1).pad(128).String(), "not a multiple of the alignment"},
		{"overlap", new(hostile).head(3, 2, 0).info("a", F32, 0, 16).info("b", F32, 32, 16).pad(128).String(), "overlaps tensor a"},
		{"duplicate tensor", new(hostile).head(3, 2, 0).info("a", F32, 0, 1).info("a", F32, 32, 1).pad(128).String(), "duplicate tensor"},
		{"long name", new(hostile).head(3, 1, 0).info(strings.Repeat("x", 64), F32, 0, 1).pad(128).String(), "name of 64 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("bad.gguf", []byte(c.data))
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrCorrupt) || !errors.Is(err, safetensors.ErrFormat) {
				t.Errorf("error %q does not match ErrCorrupt and safetensors.ErrFormat", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, c.want) || !strings.HasPrefix(msg, "bad.gguf: ") || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line starting with the file name and containing %q", msg, c.want)
			}
		})
	}
	// Every proper prefix of a good file is refused, never a panic.
	for n := 0; n < len(good); n++ {
		if _, err := Parse("p", good[:n]); err == nil {
			t.Fatalf("prefix of %d of %d bytes accepted", n, len(good))
		}
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing.gguf")); err == nil {
		t.Error("missing file opened")
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("directory: %v", err)
	}
	empty := filepath.Join(dir, "empty.gguf")
	os.WriteFile(empty, nil, 0o644)
	if _, err := Open(empty); !errors.Is(err, ErrCorrupt) {
		t.Errorf("empty file: %v", err)
	}
}

func TestParseType(t *testing.T) {
	for _, ty := range []Type{F32, F16, BF16, Q8_0, Q4_0, Q4_K} {
		if got, ok := ParseType(strings.ToLower(ty.String())); !ok || got != ty {
			t.Errorf("ParseType(%s) = %v, %v", ty, got, ok)
		}
	}
	if _, ok := ParseType("q4_2"); ok {
		t.Error("q4_2 parsed")
	}
}
