package safetensors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultMaxShardSize is the shard size limit transformers uses by default (5 GB).
const DefaultMaxShardSize int64 = 5_000_000_000

// Info describes a tensor to be written.
type Info struct {
	Name  string
	DType DType
	Shape []int
}

// ByteSize is the size of the tensor's data in bytes.
func (i Info) ByteSize() int64 {
	n := int64(i.DType.Size())
	for _, d := range i.Shape {
		n *= int64(d)
	}
	return n
}

// InfoOf returns the description of an existing tensor.
func InfoOf(t *Tensor) Info { return Info{Name: t.Name, DType: t.DType, Shape: t.Shape} }

// WriterOptions tunes a DirWriter.
type WriterOptions struct {
	// MaxShardSize caps the tensor bytes per shard (0 = DefaultMaxShardSize).
	// A tensor larger than the cap gets a shard of its own.
	MaxShardSize int64
	// Metadata is stored in every shard's __metadata__; "format" is "pt"
	// unless Metadata sets it (MLX writes "mlx").
	Metadata map[string]string
	// ShardName names shard i (0-based) of n; nil gives transformers'
	// names (ShardName): model.safetensors alone, else
	// model-0000i-of-0000n.safetensors.
	ShardName func(i, n int) string
	// IndexMetadata adds keys to the index's "metadata" object beside total_size.
	IndexMetadata map[string]any
}

// DirWriter streams a checkpoint's tensors into dir: model.safetensors when
// they fit one shard, else model-0000i-of-0000n.safetensors plus
// model.safetensors.index.json. Tensors are written one at a time, in the
// order of the plan given to NewDirWriter, so only the tensor being written
// needs to be in memory.
type DirWriter struct {
	dir    string
	plan   []Info
	shards []shardPlan
	meta   map[string]string
	idx    map[string]any
	next   int // index into plan of the next tensor
	cur    int // index of the open shard, -1 before the first
	file   *os.File
	buf    *bufio.Writer
}

type shardPlan struct {
	name       string
	first, end int // plan[first:end] go to this shard
}

// NewDirWriter plans the shards of the given tensors. dir must exist.
func NewDirWriter(dir string, plan []Info, opt WriterOptions) (*DirWriter, error) {
	limit := opt.MaxShardSize
	if limit <= 0 {
		limit = DefaultMaxShardSize
	}
	seen := map[string]bool{}
	for _, in := range plan {
		if in.DType.Size() == 0 {
			return nil, fmt.Errorf("tensor %q: unsupported dtype %q", in.Name, in.DType)
		}
		if seen[in.Name] {
			return nil, fmt.Errorf("tensor %q is planned twice", in.Name)
		}
		if in.Name == "__metadata__" || in.Name == "" {
			return nil, fmt.Errorf("invalid tensor name %q", in.Name)
		}
		seen[in.Name] = true
	}
	var shards []shardPlan
	var size int64
	for i, in := range plan {
		b := in.ByteSize()
		if len(shards) == 0 || (size+b > limit && i > shards[len(shards)-1].first) {
			shards = append(shards, shardPlan{first: i})
			size = 0
		}
		size += b
		shards[len(shards)-1].end = i + 1
	}
	if len(shards) == 0 {
		shards = []shardPlan{{}}
	}
	name := opt.ShardName
	if name == nil {
		name = ShardName
	}
	for i := range shards {
		shards[i].name = name(i, len(shards))
		if shards[i].name == IndexFile || filepath.Base(shards[i].name) != shards[i].name || shards[i].name == "" {
			return nil, fmt.Errorf("invalid shard name %q", shards[i].name)
		}
	}
	meta := map[string]string{"format": "pt"}
	for k, v := range opt.Metadata {
		meta[k] = v
	}
	return &DirWriter{dir: dir, plan: plan, shards: shards, meta: meta, idx: opt.IndexMetadata, cur: -1}, nil
}

// ShardName is transformers' name of shard i (0-based) of n:
// model.safetensors when n is 1, else model-0000i-of-0000n.safetensors.
func ShardName(i, n int) string {
	if n == 1 {
		return SingleFile
	}
	return fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, n)
}

// Shards returns the planned shard file names.
func (w *DirWriter) Shards() []string {
	var names []string
	for _, s := range w.shards {
		names = append(names, s.name)
	}
	return names
}

// Write writes the next planned tensor. name must be the next one in the
// plan and len(data) its byte size.
func (w *DirWriter) Write(name string, data []byte) error {
	if w.next >= len(w.plan) {
		return fmt.Errorf("tensor %q: every planned tensor is already written", name)
	}
	in := w.plan[w.next]
	if in.Name != name {
		return fmt.Errorf("tensor %q written out of order: the plan expects %q next", name, in.Name)
	}
	if int64(len(data)) != in.ByteSize() {
		return fmt.Errorf("tensor %q: %s %v needs %d bytes, got %d", name, in.DType, in.Shape, in.ByteSize(), len(data))
	}
	if w.cur < 0 || w.next >= w.shards[w.cur].end {
		if err := w.closeShard(); err != nil {
			return err
		}
		if err := w.openShard(w.cur + 1); err != nil {
			return err
		}
	}
	if _, err := w.buf.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", w.file.Name(), err)
	}
	w.next++
	return nil
}

func (w *DirWriter) openShard(i int) error {
	s := w.shards[i]
	f, err := os.Create(filepath.Join(w.dir, s.name))
	if err != nil {
		return err
	}
	w.cur, w.file, w.buf = i, f, bufio.NewWriterSize(f, 1<<20)
	header, err := encodeHeader(w.meta, w.plan[s.first:s.end])
	if err != nil {
		return err
	}
	if _, err := w.buf.Write(header); err != nil {
		return fmt.Errorf("writing %s: %w", f.Name(), err)
	}
	return nil
}

func (w *DirWriter) closeShard() error {
	if w.file == nil {
		return nil
	}
	f := w.file
	w.file = nil
	if err := w.buf.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("syncing %s: %w", f.Name(), err)
	}
	return f.Close()
}

// Close finishes the last shard and writes the index. It fails when a
// planned tensor was not written.
func (w *DirWriter) Close() error {
	if w.next < len(w.plan) {
		w.Abort()
		return fmt.Errorf("tensor %q was planned but never written", w.plan[w.next].Name)
	}
	if w.cur < 0 { // empty checkpoint: still write a valid file
		if err := w.openShard(0); err != nil {
			return err
		}
	}
	if err := w.closeShard(); err != nil {
		return err
	}
	if len(w.shards) == 1 {
		return nil
	}
	var total int64
	weightMap := map[string]string{}
	for _, s := range w.shards {
		for _, in := range w.plan[s.first:s.end] {
			weightMap[in.Name] = s.name
			total += in.ByteSize()
		}
	}
	meta := map[string]any{"total_size": total}
	for k, v := range w.idx {
		if k != "total_size" {
			meta[k] = v
		}
	}
	data, err := json.MarshalIndent(map[string]any{"metadata": meta, "weight_map": weightMap}, "", "  ")
	if err != nil {
		return err
	}
	return writeFileSync(filepath.Join(w.dir, IndexFile), append(data, '\n'))
}

// Abort closes the open shard without finishing it (the caller removes the directory).
func (w *DirWriter) Abort() {
	if w.file != nil {
		w.file.Close()
		w.file = nil
	}
}

// encodeHeader returns the 8-byte length and the JSON header, padded with
// spaces to a multiple of 8 bytes; tensors are laid out in the given order.
func encodeHeader(meta map[string]string, tensors []Info) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("{")
	mb, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	b.WriteString(`"__metadata__":`)
	b.Write(mb)
	var off int64
	for _, in := range tensors {
		name, _ := json.Marshal(in.Name)
		b.WriteString(",")
		b.Write(name)
		b.WriteString(`:{"dtype":"` + string(in.DType) + `","shape":[`)
		for i, d := range in.Shape {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(strconv.Itoa(d))
		}
		end := off + in.ByteSize()
		fmt.Fprintf(&b, `],"data_offsets":[%d,%d]}`, off, end)
		off = end
	}
	b.WriteString("}")
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	out := make([]byte, 8, 8+b.Len())
	binary.LittleEndian.PutUint64(out, uint64(b.Len()))
	return append(out, b.Bytes()...), nil
}

// WriteFile writes tensors into one safetensors file at path (not sharded).
func WriteFile(path string, tensors []*Tensor, metadata map[string]string) error {
	meta := map[string]string{"format": "pt"}
	for k, v := range metadata {
		meta[k] = v
	}
	infos := make([]Info, len(tensors))
	for i, t := range tensors {
		infos[i] = InfoOf(t)
	}
	header, err := encodeHeader(meta, infos)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	bw.Write(header)
	for _, t := range tensors {
		bw.Write(t.data)
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func writeFileSync(path string, data []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ParseSize parses a shard size such as "5GB", "500MB", "2GiB" or "1000000".
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(strings.ToUpper(s))
	units := []struct {
		suffix string
		mult   int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"TIB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			mult, t = u.mult, strings.TrimSpace(strings.TrimSuffix(t, u.suffix))
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("invalid size %q (want e.g. 5GB, 500MB, 2GiB)", s)
	}
	return int64(v * float64(mult)), nil
}
