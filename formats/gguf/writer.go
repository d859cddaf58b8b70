package gguf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// Writer streams a GGUF file: declare the metadata and the tensors (AddKV,
// AddTensor), then WriteHeader, then each tensor's bytes in declaration
// order (WriteTensor), then Close. Only one tensor's bytes are ever held by
// the caller at a time.
type Writer struct {
	w         io.Writer
	alignment int
	kvs       []KV
	keys      map[string]bool
	tensors   []*Tensor
	names     map[string]bool
	dataSize  int64
	header    []byte
	next      int
	err       error
}

// NewWriter returns a writer to w with the default alignment (32 bytes).
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, alignment: DefaultAlignment, keys: map[string]bool{}, names: map[string]bool{}}
}

// AddKV declares a metadata entry. v must be one of the Go types listed at
// KV (a Go int has no GGUF type and is refused). general.alignment, a u32
// power of two, also sets the alignment of the data.
func (w *Writer) AddKV(key string, v any) error {
	if w.header != nil {
		return fmt.Errorf("gguf writer: metadata %s added after the header was written", key)
	}
	if w.keys[key] {
		return fmt.Errorf("gguf writer: duplicate metadata key %s", key)
	}
	if _, _, ok := typeOf(v); !ok {
		return fmt.Errorf("gguf writer: metadata %s: Go type %T has no GGUF encoding", key, v)
	}
	if key == "general.alignment" {
		a, ok := v.(uint32)
		if !ok || a == 0 || a&(a-1) != 0 {
			return fmt.Errorf("gguf writer: general.alignment must be a u32 power of two, got %v (%T)", v, v)
		}
		if len(w.tensors) > 0 {
			return fmt.Errorf("gguf writer: general.alignment set after tensors were declared")
		}
		w.alignment = int(a)
	}
	w.keys[key] = true
	w.kvs = append(w.kvs, KV{key, v})
	return nil
}

// AddTensor declares the next tensor: its name, type and dimensions in ne
// order (PyTorch shape reversed).
func (w *Writer) AddTensor(name string, t Type, dims []int) error {
	if w.header != nil {
		return fmt.Errorf("gguf writer: tensor %s added after the header was written", name)
	}
	if w.names[name] {
		return fmt.Errorf("gguf writer: duplicate tensor %s", name)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("gguf writer: tensor name %s is longer than %d bytes", name, MaxNameLen)
	}
	if len(dims) > MaxDims {
		return fmt.Errorf("gguf writer: tensor %s has %d dimensions, ggml allows %d", name, len(dims), MaxDims)
	}
	for _, d := range dims {
		if d < 0 {
			return fmt.Errorf("gguf writer: tensor %s has a negative dimension in %v", name, dims)
		}
	}
	tt := &Tensor{Name: name, Type: t, Dims: append([]int(nil), dims...), Offset: w.dataSize}
	size, err := EncodedSize(t, tt.NumElements())
	if err == nil && len(dims) > 0 && dims[0]%t.BlockSize() != 0 {
		err = fmt.Errorf("rows of %d elements are not whole %s blocks of %d", dims[0], t, t.BlockSize())
	}
	if err != nil {
		return fmt.Errorf("gguf writer: tensor %s: %v", name, err)
	}
	w.names[name] = true
	w.tensors = append(w.tensors, tt)
	w.dataSize += alignUp(int64(size), int64(w.alignment))
	return nil
}

// Size returns the size of the whole file as declared so far.
func (w *Writer) Size() int64 {
	h := w.header
	if h == nil {
		h = w.encodeHeader()
	}
	return int64(len(h)) + w.dataSize
}

func (w *Writer) encodeHeader() []byte {
	var b bytes.Buffer
	le := binary.LittleEndian
	u32 := func(v uint32) { binary.Write(&b, le, v) }
	u64 := func(v uint64) { binary.Write(&b, le, v) }
	str := func(s string) { u64(uint64(len(s))); b.WriteString(s) }
	b.WriteString(Magic)
	u32(Version)
	u64(uint64(len(w.tensors)))
	u64(uint64(len(w.kvs)))
	for _, kv := range w.kvs {
		str(kv.Key)
		t, et, _ := typeOf(kv.Value)
		u32(uint32(t))
		if t == TypeArray {
			u32(uint32(et))
		}
		switch v := kv.Value.(type) {
		case string:
			str(v)
		case []string:
			u64(uint64(len(v)))
			for _, s := range v {
				str(s)
			}
		case bool:
			b.WriteByte(boolByte(v))
		case []bool:
			u64(uint64(len(v)))
			for _, x := range v {
				b.WriteByte(boolByte(x))
			}
		case uint8, int8, uint16, int16, uint32, int32, float32, uint64, int64, float64:
			binary.Write(&b, le, v)
		default: // numeric slices
			u64(uint64(sliceLen(v)))
			binary.Write(&b, le, v)
		}
	}
	for _, t := range w.tensors {
		str(t.Name)
		u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			u64(uint64(d))
		}
		u32(uint32(t.Type))
		u64(uint64(t.Offset))
	}
	if pad := alignUp(int64(b.Len()), int64(w.alignment)) - int64(b.Len()); pad > 0 {
		b.Write(make([]byte, pad))
	}
	return b.Bytes()
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

func sliceLen(v any) int {
	switch s := v.(type) {
	case []uint8:
		return len(s)
	case []int8:
		return len(s)
	case []uint16:
		return len(s)
	case []int16:
		return len(s)
	case []uint32:
		return len(s)
	case []int32:
		return len(s)
	case []float32:
		return len(s)
	case []uint64:
		return len(s)
	case []int64:
		return len(s)
	case []float64:
		return len(s)
	}
	panic(fmt.Sprintf("gguf: no length for %T", v))
}

// WriteHeader writes the magic, metadata, tensor infos and the padding up to
// the data section.
func (w *Writer) WriteHeader() error {
	if w.header != nil {
		return fmt.Errorf("gguf writer: header written twice")
	}
	w.header = w.encodeHeader()
	_, err := w.w.Write(w.header)
	w.err = err
	return err
}

// Next returns the tensor whose bytes WriteTensor expects next, or nil when
// all were written.
func (w *Writer) Next() *Tensor {
	if w.next < len(w.tensors) {
		return w.tensors[w.next]
	}
	return nil
}

// WriteTensor writes the bytes of the next declared tensor, which must have
// exactly its encoded size, and pads to the alignment.
func (w *Writer) WriteTensor(data []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.header == nil {
		return fmt.Errorf("gguf writer: tensor data before the header")
	}
	t := w.Next()
	if t == nil {
		return fmt.Errorf("gguf writer: more tensors written than declared")
	}
	want, _ := EncodedSize(t.Type, t.NumElements())
	if len(data) != want {
		return fmt.Errorf("gguf writer: tensor %s: %d bytes, want %d (%s %v)", t.Name, len(data), want, t.Type, t.Dims)
	}
	if _, err := w.w.Write(data); err != nil {
		w.err = err
		return err
	}
	if pad := alignUp(int64(want), int64(w.alignment)) - int64(want); pad > 0 {
		if _, err := w.w.Write(make([]byte, pad)); err != nil {
			w.err = err
			return err
		}
	}
	w.next++
	return nil
}

// Close checks that every declared tensor was written. It does not close the
// underlying writer.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.header == nil {
		return fmt.Errorf("gguf writer: closed before the header was written")
	}
	if t := w.Next(); t != nil {
		return fmt.Errorf("gguf writer: closed with %d of %d tensors written (next: %s)", w.next, len(w.tensors), t.Name)
	}
	return nil
}

// float32Bytes encodes values little-endian (used by tests and callers that
// write F32 tensors directly).
func float32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}
