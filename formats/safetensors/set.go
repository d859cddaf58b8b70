package safetensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// IndexFile is the name of the shard index of a sharded checkpoint.
const IndexFile = "model.safetensors.index.json"

// SingleFile is the name of an unsharded checkpoint's weights.
const SingleFile = "model.safetensors"

// Index is the content of model.safetensors.index.json.
type Index struct {
	Metadata  map[string]any    `json:"metadata"`
	WeightMap map[string]string `json:"weight_map"`
}

// Set is the tensors of a checkpoint, in one file or several shards.
type Set struct {
	// Dir is the directory the set was opened from.
	Dir string
	// Files are the shards in name order.
	Files []*File
	// Index is the parsed shard index (nil for a single file).
	Index *Index

	byName map[string]*Tensor
}

// OpenDir opens the weights of a checkpoint directory: the shards listed by
// model.safetensors.index.json when it exists, else model.safetensors. The
// index is checked against the shards: a missing shard, a tensor listed but
// absent, a tensor present in two shards or not listed, and a total_size that
// does not match are errors.
func OpenDir(dir string) (*Set, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s: not a directory", dir)
	}
	indexPath := filepath.Join(dir, IndexFile)
	raw, err := os.ReadFile(indexPath)
	if errors.Is(err, os.ErrNotExist) {
		single := filepath.Join(dir, SingleFile)
		if _, err := os.Stat(single); err != nil {
			if _, err := os.Stat(single + ".zst"); err == nil {
				return nil, fmt.Errorf("%s: %s is zstd-compressed (%s.zst): decompress it first (zstd -d)", dir, SingleFile, SingleFile)
			}
			others, _ := filepath.Glob(filepath.Join(dir, "*.safetensors"))
			if len(others) > 0 {
				return nil, fmt.Errorf("%s: no %s or %s, but %d other .safetensors files: sharded checkpoint without its index?", dir, SingleFile, IndexFile, len(others))
			}
			return nil, &NotFoundError{Path: dir, Msg: fmt.Sprintf("no %s or %s: not a safetensors checkpoint directory", SingleFile, IndexFile)}
		}
		f, err := Open(single)
		if err != nil {
			return nil, err
		}
		return newSet(dir, []*File{f}, nil)
	}
	if err != nil {
		return nil, err
	}
	var idx Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, Corrupt(indexPath, err.Error())
	}
	if len(idx.WeightMap) == 0 {
		return nil, Corrupt(indexPath, "weight_map is empty")
	}
	var shardNames []string
	for name, shard := range idx.WeightMap {
		if shard == "" || strings.ContainsAny(shard, `/\`) || shard == "." || shard == ".." {
			return nil, Corrupt(indexPath, fmt.Sprintf("tensor %q maps to invalid shard name %q", name, shard))
		}
		if !slices.Contains(shardNames, shard) {
			shardNames = append(shardNames, shard)
		}
	}
	slices.Sort(shardNames)
	var files []*File
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	for _, s := range shardNames {
		f, err := Open(filepath.Join(dir, s))
		if err != nil {
			closeAll()
			if errors.Is(err, os.ErrNotExist) {
				if _, zerr := os.Stat(filepath.Join(dir, s+".zst")); zerr == nil {
					return nil, Corrupt(indexPath, fmt.Sprintf("lists shard %s, which is zstd-compressed (%s.zst): decompress it first (zstd -d)", s, s))
				}
				return nil, Corrupt(indexPath, fmt.Sprintf("lists shard %s, which does not exist", s))
			}
			return nil, err
		}
		files = append(files, f)
	}
	set, err := newSet(dir, files, &idx)
	if err != nil {
		closeAll()
		return nil, err
	}
	if err := set.checkIndex(indexPath); err != nil {
		closeAll()
		return nil, err
	}
	return set, nil
}

// OpenFiles opens the given safetensors files as one set (no index).
func OpenFiles(paths ...string) (*Set, error) {
	var files []*File
	for _, p := range paths {
		f, err := Open(p)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, err
		}
		files = append(files, f)
	}
	dir := ""
	if len(paths) > 0 {
		dir = filepath.Dir(paths[0])
	}
	return newSet(dir, files, nil)
}

func newSet(dir string, files []*File, idx *Index) (*Set, error) {
	s := &Set{Dir: dir, Files: files, Index: idx, byName: map[string]*Tensor{}}
	for _, f := range files {
		for _, t := range f.tensors {
			if prev, dup := s.byName[t.Name]; dup {
				return nil, Corrupt(dir, fmt.Sprintf("tensor %q is in two shards: %s and %s", t.Name, filepath.Base(prev.File), filepath.Base(f.Path)))
			}
			s.byName[t.Name] = t
		}
	}
	return s, nil
}

func (s *Set) checkIndex(indexPath string) error {
	for name, shard := range s.Index.WeightMap {
		t, ok := s.byName[name]
		if !ok {
			return Corrupt(indexPath, fmt.Sprintf("tensor %q is listed in shard %s, which does not hold it", name, shard))
		}
		if filepath.Base(t.File) != shard {
			return Corrupt(indexPath, fmt.Sprintf("tensor %q is listed in shard %s but found in %s", name, shard, filepath.Base(t.File)))
		}
	}
	for name, t := range s.byName {
		if _, ok := s.Index.WeightMap[name]; !ok {
			return Corrupt(indexPath, fmt.Sprintf("tensor %q in %s is not listed in the index", name, filepath.Base(t.File)))
		}
	}
	if v, ok := s.Index.Metadata["total_size"]; ok {
		want, ok := v.(float64)
		if !ok {
			return Corrupt(indexPath, "metadata.total_size is not a number")
		}
		if got := s.TotalBytes(); float64(got) != want {
			return Corrupt(indexPath, fmt.Sprintf("metadata.total_size is %.0f but the shards' tensors hold %d bytes", want, got))
		}
	}
	return nil
}

// Close unmaps every shard.
func (s *Set) Close() error {
	var errs []error
	for _, f := range s.Files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}

// Tensor returns the named tensor.
func (s *Set) Tensor(name string) (*Tensor, bool) {
	t, ok := s.byName[name]
	return t, ok
}

// Names returns every tensor name, sorted.
func (s *Set) Names() []string {
	names := make([]string, 0, len(s.byName))
	for n := range s.byName {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Len is the number of tensors.
func (s *Set) Len() int { return len(s.byName) }

// TotalBytes is the sum of the tensors' data sizes (the index's total_size).
func (s *Set) TotalBytes() int64 {
	var n int64
	for _, t := range s.byName {
		n += t.ByteSize()
	}
	return n
}

// FileBytes is the sum of the shard file sizes.
func (s *Set) FileBytes() int64 {
	var n int64
	for _, f := range s.Files {
		n += f.Size()
	}
	return n
}
