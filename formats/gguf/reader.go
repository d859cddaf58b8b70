package gguf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"

	"github.com/moeforge/moeforge/formats/safetensors"
)

// ErrCorrupt is what every FormatError matches with errors.Is: the file is
// not a well-formed GGUF file. FormatErrors also match safetensors.ErrFormat,
// the one sentinel of malformed input across moeforge's format packages.
var ErrCorrupt = errors.New("malformed GGUF file")

// FormatError describes why a file is not well-formed GGUF: which file, where
// (a header field, a metadata key or a tensor) and what is wrong, on one line.
type FormatError struct {
	File  string
	Where string
	Msg   string
}

func (e *FormatError) Error() string {
	if e.Where == "" {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", e.File, e.Where, e.Msg)
}

// Is makes errors.Is true for ErrCorrupt and safetensors.ErrFormat.
func (e *FormatError) Is(target error) bool {
	return target == ErrCorrupt || target == safetensors.ErrFormat
}

// Tensor is a tensor described by the header, with a zero-copy view of its
// bytes in the file.
type Tensor struct {
	Name string
	Type Type
	// Dims are in ggml's ne order: Dims[0] varies fastest (a PyTorch shape
	// reversed).
	Dims []int
	// Offset is the start of the data relative to the data section.
	Offset int64
	data   []byte
}

// NumElements returns the product of the dimensions.
func (t *Tensor) NumElements() int {
	n := 1
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

// Shape returns the dimensions in PyTorch order (Dims reversed).
func (t *Tensor) Shape() []int {
	s := slices.Clone(t.Dims)
	slices.Reverse(s)
	return s
}

// Bytes returns the tensor's data, a view into the file.
func (t *Tensor) Bytes() []byte { return t.data }

// Float32 dequantizes the tensor (F32, F16, BF16, Q8_0, Q4_0) to float32 in
// ne order.
func (t *Tensor) Float32() ([]float32, error) {
	dst := make([]float32, t.NumElements())
	if err := Decode(t.Type, dst, t.data); err != nil {
		return nil, fmt.Errorf("tensor %s: %w", t.Name, err)
	}
	return dst, nil
}

// File is a parsed GGUF file.
type File struct {
	Path    string
	Version uint32
	KVs     []KV
	Tensors []*Tensor
	// Alignment of the data section and of every tensor in it.
	Alignment int
	// DataOffset is the file offset of the data section.
	DataOffset int64
	// Size is the file's size in bytes.
	Size int64

	kv      map[string]int
	tensors map[string]*Tensor
	unmap   func() error
}

// Open memory-maps and parses the GGUF file at path. Close releases the map;
// tensor views are invalid afterwards.
func Open(path string) (*File, error) {
	data, unmap, err := safetensors.MapFile(path, "GGUF")
	if err != nil {
		return nil, err
	}
	if len(data) == 0 {
		unmap()
		return nil, &FormatError{File: path, Msg: "empty file"}
	}
	f, err := Parse(path, data)
	if err != nil {
		unmap()
		return nil, err
	}
	f.unmap = unmap
	return f, nil
}

// Close releases the memory map of a file from Open.
func (f *File) Close() error {
	if f.unmap == nil {
		return nil
	}
	err := f.unmap()
	f.unmap = nil
	return err
}

// Get returns the value of a metadata key.
func (f *File) Get(key string) (any, bool) {
	i, ok := f.kv[key]
	if !ok {
		return nil, false
	}
	return f.KVs[i].Value, true
}

// String returns a string-valued key ("" and false when absent or not a string).
func (f *File) String(key string) (string, bool) {
	v, ok := f.Get(key)
	s, ok2 := v.(string)
	return s, ok && ok2
}

// Uint returns an unsigned or non-negative integer key as uint64.
func (f *File) Uint(key string) (uint64, bool) {
	v, ok := f.Get(key)
	if !ok {
		return 0, false
	}
	switch x := v.(type) {
	case uint8:
		return uint64(x), true
	case uint16:
		return uint64(x), true
	case uint32:
		return uint64(x), true
	case uint64:
		return x, true
	case int8:
		return uint64(x), x >= 0
	case int16:
		return uint64(x), x >= 0
	case int32:
		return uint64(x), x >= 0
	case int64:
		return uint64(x), x >= 0
	}
	return 0, false
}

// Float returns a float-valued key as float64.
func (f *File) Float(key string) (float64, bool) {
	v, ok := f.Get(key)
	switch x := v.(type) {
	case float32:
		return float64(x), ok
	case float64:
		return x, ok
	}
	return 0, false
}

// Tensor returns a tensor by name.
func (f *File) Tensor(name string) (*Tensor, bool) {
	t, ok := f.tensors[name]
	return t, ok
}

// parser reads the header from data, bounds-checking every read.
type parser struct {
	file  string
	data  []byte
	off   int
	where string
}

func (p *parser) fail(format string, args ...any) error {
	return &FormatError{File: p.file, Where: p.where, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) need(n uint64, what string) error {
	if n > uint64(len(p.data)-p.off) {
		return p.fail("truncated: %s needs %d bytes at offset %d, the file has %d left", what, n, p.off, len(p.data)-p.off)
	}
	return nil
}

func (p *parser) u32(what string) (uint32, error) {
	if err := p.need(4, what); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint32(p.data[p.off:])
	p.off += 4
	return v, nil
}

func (p *parser) u64(what string) (uint64, error) {
	if err := p.need(8, what); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint64(p.data[p.off:])
	p.off += 8
	return v, nil
}

func (p *parser) str(what string) (string, error) {
	n, err := p.u64(what + " length")
	if err != nil {
		return "", err
	}
	if err := p.need(n, what); err != nil {
		return "", err
	}
	s := string(p.data[p.off : p.off+int(n)])
	p.off += int(n)
	return s, nil
}

// Parse parses a whole GGUF file held in data; name is used in errors.
// Tensor views point into data.
func Parse(name string, data []byte) (*File, error) {
	p := &parser{file: name, data: data, where: "header"}
	if len(data) < 4 || string(data[:4]) != Magic {
		n := min(len(data), 4)
		return nil, p.fail("bad magic %q, want %q: not a GGUF file", data[:n], Magic)
	}
	p.off = 4
	version, err := p.u32("version")
	if err != nil {
		return nil, err
	}
	if version != 2 && version != 3 {
		return nil, p.fail("unsupported version %d (versions 2 and 3 are read)", version)
	}
	nTensors, err := p.u64("tensor count")
	if err != nil {
		return nil, err
	}
	nKV, err := p.u64("metadata count")
	if err != nil {
		return nil, err
	}
	// Each entry takes at least 12 bytes (key length + type), each tensor
	// info at least 24 (name length, n_dims, type, offset): bound the counts
	// by the file before allocating for them.
	rest := uint64(len(data) - p.off)
	if nKV > rest/12 {
		return nil, p.fail("metadata count %d cannot fit in the %d bytes left", nKV, rest)
	}
	if nTensors > rest/24 {
		return nil, p.fail("tensor count %d cannot fit in the %d bytes left", nTensors, rest)
	}
	// Preallocate for plausible counts only: a header may claim millions of
	// entries that the reads below then refuse.
	f := &File{Path: name, Version: version, Size: int64(len(data)), Alignment: DefaultAlignment,
		kv: make(map[string]int, min(nKV, 1024)), tensors: make(map[string]*Tensor, min(nTensors, 1<<16))}
	f.KVs = make([]KV, 0, min(nKV, 1024))
	for i := uint64(0); i < nKV; i++ {
		p.where = fmt.Sprintf("metadata entry %d", i)
		key, err := p.str("key")
		if err != nil {
			return nil, err
		}
		p.where = "metadata " + quoteKey(key)
		if _, dup := f.kv[key]; dup {
			return nil, p.fail("duplicate key")
		}
		vt, err := p.u32("value type")
		if err != nil {
			return nil, err
		}
		v, err := p.value(ValueType(vt))
		if err != nil {
			return nil, err
		}
		f.kv[key] = len(f.KVs)
		f.KVs = append(f.KVs, KV{Key: key, Value: v})
	}
	if v, ok := f.Get("general.alignment"); ok {
		p.where = "metadata general.alignment"
		a, isU32 := v.(uint32)
		if !isU32 {
			return nil, p.fail("type %T, want u32", v)
		}
		if a == 0 || a&(a-1) != 0 || a > 1<<20 {
			return nil, p.fail("%d is not a power of two up to 2^20", a)
		}
		f.Alignment = int(a)
	}
	f.Tensors = make([]*Tensor, 0, min(nTensors, 1<<16))
	for i := uint64(0); i < nTensors; i++ {
		p.where = fmt.Sprintf("tensor info %d", i)
		t, err := p.tensorInfo()
		if err != nil {
			return nil, err
		}
		if _, dup := f.tensors[t.Name]; dup {
			p.where = "tensor " + t.Name
			return nil, p.fail("duplicate tensor name")
		}
		f.tensors[t.Name] = t
		f.Tensors = append(f.Tensors, t)
	}
	p.where = "header"
	start := uint64(alignUp(int64(p.off), int64(f.Alignment)))
	if nTensors > 0 && start > uint64(len(data)) {
		return nil, p.fail("truncated: the data section would start at %d, past the end of the %d-byte file", start, len(data))
	}
	f.DataOffset = int64(start)
	if err := f.placeTensors(p); err != nil {
		return nil, err
	}
	return f, nil
}

func quoteKey(k string) string {
	for _, r := range k {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return fmt.Sprintf("%q", k)
		}
	}
	return k
}

func (p *parser) value(vt ValueType) (any, error) {
	switch vt {
	case TypeString:
		return p.str("string value")
	case TypeArray:
		et, err := p.u32("array element type")
		if err != nil {
			return nil, err
		}
		n, err := p.u64("array length")
		if err != nil {
			return nil, err
		}
		return p.array(ValueType(et), n)
	}
	size := vt.size()
	if size == 0 {
		return nil, p.fail("unknown value type %d", uint32(vt))
	}
	if err := p.need(uint64(size), vt.String()+" value"); err != nil {
		return nil, err
	}
	b := p.data[p.off : p.off+size]
	p.off += size
	le := binary.LittleEndian
	switch vt {
	case TypeUint8:
		return b[0], nil
	case TypeInt8:
		return int8(b[0]), nil
	case TypeBool:
		if b[0] > 1 {
			return nil, p.fail("bool value %d, want 0 or 1", b[0])
		}
		return b[0] == 1, nil
	case TypeUint16:
		return le.Uint16(b), nil
	case TypeInt16:
		return int16(le.Uint16(b)), nil
	case TypeUint32:
		return le.Uint32(b), nil
	case TypeInt32:
		return int32(le.Uint32(b)), nil
	case TypeFloat32:
		return math.Float32frombits(le.Uint32(b)), nil
	case TypeUint64:
		return le.Uint64(b), nil
	case TypeInt64:
		return int64(le.Uint64(b)), nil
	}
	return math.Float64frombits(le.Uint64(b)), nil // TypeFloat64
}

func (p *parser) array(et ValueType, n uint64) (any, error) {
	rest := uint64(len(p.data) - p.off)
	if et == TypeString {
		// every string takes at least its 8-byte length
		if n > rest/8 {
			return nil, p.fail("array of %d strings cannot fit in the %d bytes left", n, rest)
		}
		// Grow as strings are read: each takes at least its 8-byte length
		// in the file, but a string header takes 16 bytes in memory.
		out := make([]string, 0, min(n, 1<<16))
		for i := uint64(0); i < n; i++ {
			s, err := p.str(fmt.Sprintf("string %d", i))
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	}
	size := et.size()
	if size == 0 {
		if et == TypeArray {
			return nil, p.fail("nested arrays are not supported")
		}
		return nil, p.fail("array of unknown value type %d", uint32(et))
	}
	if n > rest/uint64(size) {
		return nil, p.fail("array of %d %s values cannot fit in the %d bytes left", n, et, rest)
	}
	b := p.data[p.off : p.off+int(n)*size]
	p.off += int(n) * size
	le := binary.LittleEndian
	switch et {
	case TypeUint8:
		return slices.Clone(b), nil
	case TypeInt8:
		return decodeArr(b, 1, func(b []byte) int8 { return int8(b[0]) }), nil
	case TypeBool:
		out := make([]bool, n)
		for i, x := range b {
			if x > 1 {
				return nil, p.fail("bool element %d is %d, want 0 or 1", i, x)
			}
			out[i] = x == 1
		}
		return out, nil
	case TypeUint16:
		return decodeArr(b, 2, le.Uint16), nil
	case TypeInt16:
		return decodeArr(b, 2, func(b []byte) int16 { return int16(le.Uint16(b)) }), nil
	case TypeUint32:
		return decodeArr(b, 4, le.Uint32), nil
	case TypeInt32:
		return decodeArr(b, 4, func(b []byte) int32 { return int32(le.Uint32(b)) }), nil
	case TypeFloat32:
		return decodeArr(b, 4, func(b []byte) float32 { return math.Float32frombits(le.Uint32(b)) }), nil
	case TypeUint64:
		return decodeArr(b, 8, le.Uint64), nil
	case TypeInt64:
		return decodeArr(b, 8, func(b []byte) int64 { return int64(le.Uint64(b)) }), nil
	}
	return decodeArr(b, 8, func(b []byte) float64 { return math.Float64frombits(le.Uint64(b)) }), nil
}

func decodeArr[T any](b []byte, size int, f func([]byte) T) []T {
	out := make([]T, len(b)/size)
	for i := range out {
		out[i] = f(b[i*size:])
	}
	return out
}

func (p *parser) tensorInfo() (*Tensor, error) {
	name, err := p.str("tensor name")
	if err != nil {
		return nil, err
	}
	p.where = "tensor " + quoteKey(name)
	if len(name) > MaxNameLen {
		return nil, p.fail("name of %d bytes, ggml allows %d", len(name), MaxNameLen)
	}
	nd, err := p.u32("n_dims")
	if err != nil {
		return nil, err
	}
	if nd > MaxDims {
		return nil, p.fail("%d dimensions, ggml allows %d", nd, MaxDims)
	}
	t := &Tensor{Name: name, Dims: make([]int, nd)}
	total := uint64(1)
	overflow, zero := false, false
	for j := range t.Dims {
		d, err := p.u64(fmt.Sprintf("dimension %d", j))
		if err != nil {
			return nil, err
		}
		if d > math.MaxInt64 {
			return nil, p.fail("dimension %d is %d (negative as ggml's int64)", j, d)
		}
		zero = zero || d == 0
		hi, lo := bits.Mul64(total, d)
		overflow = overflow || hi != 0 || lo > math.MaxInt64
		total = lo
		t.Dims[j] = int(d)
	}
	if overflow && !zero {
		return nil, p.fail("dimensions %v overflow int64", t.Dims)
	}
	ty, err := p.u32("type")
	if err != nil {
		return nil, err
	}
	t.Type = Type(ty)
	if !t.Type.Known() {
		return nil, p.fail("unknown or unsupported ggml type %d", ty)
	}
	off, err := p.u64("data offset")
	if err != nil {
		return nil, err
	}
	if off > math.MaxInt64 {
		return nil, p.fail("data offset %d out of range", off)
	}
	t.Offset = int64(off)
	return t, nil
}

// byteSize returns the tensor's size in bytes, checking that rows are whole
// blocks and that the size fits in int64.
func (t *Tensor) byteSize() (int64, error) {
	ne0 := 1
	if len(t.Dims) > 0 {
		ne0 = t.Dims[0]
	}
	bs := t.Type.BlockSize()
	if ne0%bs != 0 {
		return 0, fmt.Errorf("type %s needs rows of whole %d-element blocks, ne0 is %d", t.Type, bs, ne0)
	}
	n := uint64(1)
	for _, d := range t.Dims {
		n *= uint64(d) // cannot overflow: checked when read
	}
	hi, lo := bits.Mul64(n/uint64(bs), uint64(t.Type.BlockBytes()))
	if hi != 0 || lo > math.MaxInt64 {
		return 0, fmt.Errorf("size in bytes of dimensions %v overflows", t.Dims)
	}
	return int64(lo), nil
}

// placeTensors checks every tensor's data range (aligned, inside the file,
// not overlapping another's) and sets its view.
func (f *File) placeTensors(p *parser) error {
	dataLen := f.Size - f.DataOffset
	type span struct {
		start, end int64
		t          *Tensor
	}
	spans := make([]span, 0, len(f.Tensors))
	for _, t := range f.Tensors {
		p.where = "tensor " + quoteKey(t.Name)
		size, err := t.byteSize()
		if err != nil {
			return p.fail("%v", err)
		}
		if t.Offset%int64(f.Alignment) != 0 {
			return p.fail("data offset %d is not a multiple of the alignment %d", t.Offset, f.Alignment)
		}
		if t.Offset > dataLen || size > dataLen-t.Offset {
			return p.fail("data [%d, %d) runs past the end of the data section (%d bytes): file truncated?", t.Offset, t.Offset+min(size, math.MaxInt64-t.Offset), dataLen)
		}
		start := f.DataOffset + t.Offset
		t.data = p.data[start : start+size : start+size]
		spans = append(spans, span{t.Offset, t.Offset + size, t})
	}
	slices.SortFunc(spans, func(a, b span) int {
		if a.start != b.start {
			if a.start < b.start {
				return -1
			}
			return 1
		}
		return 0
	})
	var prev *span // the nonempty span reaching furthest so far
	for i := range spans {
		b := &spans[i]
		if b.end == b.start {
			continue
		}
		if prev != nil && b.start < prev.end {
			p.where = "tensor " + quoteKey(b.t.Name)
			return p.fail("data [%d, %d) overlaps tensor %s [%d, %d)", b.start, b.end, prev.t.Name, prev.start, prev.end)
		}
		prev = b
	}
	return nil
}

func alignUp(n, a int64) int64 { return (n + a - 1) / a * a }
