package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"os"
	"slices"
	"unicode/utf8"
)

// MaxHeaderSize is the largest JSON header accepted, as in the reference reader.
const MaxHeaderSize = 100_000_000

// File is one safetensors file. Its tensors are views into the file's bytes
// (a memory map when opened with Open), valid until Close.
type File struct {
	// Path names the file in errors.
	Path string
	// Metadata is the header's "__metadata__" map (nil when absent).
	Metadata map[string]string

	tensors []*Tensor // in data-offset order
	byName  map[string]*Tensor
	data    []byte
	unmap   func() error
}

// Open memory-maps and validates a safetensors file.
func Open(path string) (*File, error) {
	data, unmap, err := MapFile(path, "safetensors")
	if err != nil {
		return nil, err
	}
	f, err := Parse(path, data)
	if err != nil {
		unmap()
		return nil, err
	}
	f.unmap = unmap
	return f, nil
}

// Close releases the file's memory map. Tensors of the file must not be used afterwards.
func (f *File) Close() error {
	if f.unmap == nil {
		return nil
	}
	err := f.unmap()
	f.unmap = nil
	return err
}

// Tensors returns the tensors in the order of their data in the file.
func (f *File) Tensors() []*Tensor { return f.tensors }

// Tensor returns the named tensor.
func (f *File) Tensor(name string) (*Tensor, bool) {
	t, ok := f.byName[name]
	return t, ok
}

// Size returns the file's length in bytes.
func (f *File) Size() int64 { return int64(len(f.data)) }

type headerEntry struct {
	DType       DType    `json:"dtype"`
	Shape       []uint64 `json:"shape"`
	DataOffsets []uint64 `json:"data_offsets"`
}

// Parse validates data, the whole content of a safetensors file, and returns
// the file with tensor views into data. name is used in error messages.
func Parse(name string, data []byte) (*File, error) {
	fail := func(format string, args ...any) error {
		return Corrupt(name, fmt.Sprintf(format, args...))
	}
	if len(data) < 8 {
		return nil, fail("not a safetensors file: %d bytes, shorter than the 8-byte header length", len(data))
	}
	n := binary.LittleEndian.Uint64(data[:8])
	if n > MaxHeaderSize {
		return nil, fail("header length %d exceeds the limit of %d bytes (corrupted or not a safetensors file)", n, MaxHeaderSize)
	}
	if n > uint64(len(data)-8) {
		return nil, fail("header length %d runs past the end of the file (%d bytes): file truncated?", n, len(data))
	}
	header := data[8 : 8+n]
	if !utf8.Valid(header) {
		return nil, fail("header is not valid UTF-8")
	}
	if len(header) == 0 || header[0] != '{' {
		return nil, fail("header does not start with '{'")
	}
	entries, meta, err := decodeHeader(header)
	if err != nil {
		return nil, fail("%v", err)
	}
	buf := data[8+n:]
	f := &File{Path: name, Metadata: meta, data: data, byName: make(map[string]*Tensor, len(entries))}
	type placed struct {
		name  string
		entry headerEntry
	}
	list := make([]placed, 0, len(entries))
	for _, e := range entries {
		list = append(list, placed{e.name, e.entry})
	}
	for _, p := range list {
		e := p.entry
		size := e.DType.Size()
		if size == 0 {
			return nil, fail("tensor %q: unsupported dtype %q", p.name, e.DType)
		}
		if len(e.DataOffsets) != 2 {
			return nil, fail("tensor %q: data_offsets must have 2 entries, has %d", p.name, len(e.DataOffsets))
		}
		if e.Shape == nil {
			return nil, fail("tensor %q: missing shape", p.name)
		}
		if e.DataOffsets[1] < e.DataOffsets[0] {
			return nil, fail("tensor %q: data_offsets [%d, %d] end before they begin", p.name, e.DataOffsets[0], e.DataOffsets[1])
		}
		count := uint64(1)
		for _, d := range e.Shape {
			hi, lo := bits.Mul64(count, d)
			if hi != 0 || lo > math.MaxInt64 {
				return nil, fail("tensor %q: shape %v overflows", p.name, e.Shape)
			}
			count = lo
		}
		hi, nbytes := bits.Mul64(count, uint64(size))
		if hi != 0 || nbytes > math.MaxInt64 {
			return nil, fail("tensor %q: shape %v overflows", p.name, e.Shape)
		}
		if got := e.DataOffsets[1] - e.DataOffsets[0]; got != nbytes {
			return nil, fail("tensor %q: %s %v needs %d bytes but data_offsets [%d, %d] hold %d", p.name, e.DType, e.Shape, nbytes, e.DataOffsets[0], e.DataOffsets[1], got)
		}
	}
	slices.SortStableFunc(list, func(a, b placed) int {
		if c := cmpU64(a.entry.DataOffsets[0], b.entry.DataOffsets[0]); c != 0 {
			return c
		}
		return cmpU64(a.entry.DataOffsets[1], b.entry.DataOffsets[1])
	})
	var end uint64
	for i, p := range list {
		b, e := p.entry.DataOffsets[0], p.entry.DataOffsets[1]
		if b != end {
			if b < end {
				return nil, fail("tensor %q: data_offsets [%d, %d] overlap tensor %q ending at %d", p.name, b, e, list[i-1].name, end)
			}
			return nil, fail("tensor %q: data_offsets [%d, %d] leave a gap after offset %d", p.name, b, e, end)
		}
		end = e
	}
	if end != uint64(len(buf)) {
		if end > uint64(len(buf)) {
			return nil, fail("tensor data needs %d bytes after the header but the file holds %d: file truncated?", end, len(buf))
		}
		return nil, fail("%d trailing bytes after the last tensor's data", uint64(len(buf))-end)
	}
	for _, p := range list {
		shape := make([]int, len(p.entry.Shape))
		for i, d := range p.entry.Shape {
			shape[i] = int(d)
		}
		t := &Tensor{Name: p.name, DType: p.entry.DType, Shape: shape, File: name,
			data: buf[p.entry.DataOffsets[0]:p.entry.DataOffsets[1]:p.entry.DataOffsets[1]]}
		f.tensors = append(f.tensors, t)
		f.byName[p.name] = t
	}
	return f, nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

type namedEntry struct {
	name  string
	entry headerEntry
}

// decodeHeader reads the top-level JSON object token by token so that
// duplicate names and a non-object header are rejected.
func decodeHeader(header []byte) ([]namedEntry, map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(header))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, fmt.Errorf("header is not valid JSON: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, errors.New("header is not a JSON object")
	}
	seen := map[string]bool{}
	var entries []namedEntry
	var meta map[string]string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("header is not valid JSON: %v", err)
		}
		key := tok.(string) // object keys are always strings
		if seen[key] {
			return nil, nil, fmt.Errorf("header names %q twice", key)
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, fmt.Errorf("header is not valid JSON: %v", err)
		}
		if key == "__metadata__" {
			if err := json.Unmarshal(raw, &meta); err != nil {
				return nil, nil, fmt.Errorf("__metadata__ must map strings to strings: %v", err)
			}
			continue
		}
		var e headerEntry
		d := json.NewDecoder(bytes.NewReader(raw))
		d.DisallowUnknownFields()
		if err := d.Decode(&e); err != nil {
			return nil, nil, fmt.Errorf("tensor %q: bad entry: %v", key, err)
		}
		entries = append(entries, namedEntry{key, e})
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, fmt.Errorf("header is not valid JSON: %v", err)
	}
	// Only padding (whitespace) may follow the object.
	if len(bytes.TrimSpace(header[dec.InputOffset():])) != 0 {
		return nil, nil, errors.New("header has bytes after its JSON object")
	}
	return entries, meta, nil
}

// MapFile maps the file at path read-only (kind names the format in the
// error for a directory). Empty files are returned as an empty slice. The
// format readers open their files through it.
func MapFile(path, kind string) ([]byte, func() error, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer fd.Close()
	st, err := fd.Stat()
	if err != nil {
		return nil, nil, err
	}
	if st.IsDir() {
		return nil, nil, fmt.Errorf("%s: is a directory, not a %s file", path, kind)
	}
	if st.Size() == 0 {
		return []byte{}, func() error { return nil }, nil
	}
	return Map(fd, st.Size())
}
