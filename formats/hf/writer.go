package hf

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/outdir"
)

// WriterOptions tune a checkpoint Writer.
type WriterOptions struct {
	// MaxShardSize caps the tensor bytes per shard (0 = 5 GB, as transformers).
	MaxShardSize int64
	// ShardName names shard i (0-based) of n; nil gives transformers' names
	// (safetensors.ShardName).
	ShardName func(i, n int) string
	// Metadata goes into every shard's __metadata__ ("format": "pt" unless
	// set here; MLX sets "mlx").
	Metadata map[string]string
	// IndexMetadata adds keys beside total_size in the index's metadata.
	IndexMetadata map[string]any
}

// Tensor is one output tensor: its name, dtype and shape, and the function
// that computes its bytes just before it is written (so only one tensor is
// in memory at a time). Written, when set, is called once the bytes are in
// the shard (e.g. to release the input pages they were computed from).
type Tensor struct {
	safetensors.Info
	Produce func() ([]byte, error)
	Written func()
}

// Writer writes one Hugging Face checkpoint directory: the tensors streamed
// into shards (at most MaxShardSize each) in plan order, the index when
// sharded, config.json, other documents (quantize_config.json), and the
// input's tokenizer and other non-weight files. It is the one checkpoint
// writer of convert and quantize.
//
// A Writer made by Create writes into a temporary sibling of the final
// directory (internal/outdir) that Commit renames into place; Abort (safe
// after Commit, so callers defer it) removes it. NewWriter writes into an
// existing directory the caller manages.
type Writer struct {
	dir    string
	opt    WriterOptions
	out    *outdir.Dir // nil for NewWriter
	shards *safetensors.DirWriter
}

// Create prepares the checkpoint final: an existing non-empty final is
// refused unless force is set (it is replaced on Commit); final's parent
// must exist.
func Create(final string, force bool, opt WriterOptions) (*Writer, error) {
	od, err := outdir.Create(final, force)
	if err != nil {
		return nil, err
	}
	return &Writer{dir: od.Path(), opt: opt, out: od}, nil
}

// NewWriter writes a checkpoint into dir, an existing (empty) directory.
func NewWriter(dir string, opt WriterOptions) *Writer { return &Writer{dir: dir, opt: opt} }

// Dir is the directory being written (the temporary one until Commit).
func (w *Writer) Dir() string { return w.dir }

// Plan fixes the output tensors, in writing order, and their shards; the
// shard file names are returned. It is called once, before WriteTensor. A
// plan whose bytes exceed the free space of the output's file system is
// refused (ErrNoSpace) before anything is written.
func (w *Writer) Plan(plan []safetensors.Info) ([]string, error) {
	if w.shards != nil {
		return nil, fmt.Errorf("%s: tensors already planned", w.dir)
	}
	if err := checkSpace(w.dir, plan); err != nil {
		return nil, err
	}
	dw, err := safetensors.NewDirWriter(w.dir, plan, safetensors.WriterOptions{
		MaxShardSize: w.opt.MaxShardSize, ShardName: w.opt.ShardName,
		Metadata: w.opt.Metadata, IndexMetadata: w.opt.IndexMetadata})
	if err != nil {
		return nil, err
	}
	w.shards = dw
	return dw.Shards(), nil
}

// WriteTensor writes the next planned tensor's bytes.
func (w *Writer) WriteTensor(name string, data []byte) error {
	if w.shards == nil {
		return fmt.Errorf("tensor %q written before the plan", name)
	}
	return w.shards.Write(name, data)
}

// CloseTensors finishes the last shard and writes the index; it fails when
// a planned tensor was not written.
func (w *Writer) CloseTensors() error {
	if w.shards == nil {
		if _, err := w.Plan(nil); err != nil {
			return err
		}
	}
	return w.shards.Close()
}

// WriteAll plans tensors, computes and writes each in order, and closes the
// shards. progress, when set, is told after each tensor how many are
// written. It returns the shard file names.
func (w *Writer) WriteAll(ctx context.Context, tensors []Tensor, progress func(done, total int)) ([]string, error) {
	plan := make([]safetensors.Info, len(tensors))
	for i, t := range tensors {
		plan[i] = t.Info
	}
	shards, err := w.Plan(plan)
	if err != nil {
		return nil, err
	}
	for i, t := range tensors {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		data, err := t.Produce()
		if err != nil {
			return nil, err
		}
		if err := w.WriteTensor(t.Name, data); err != nil {
			return nil, err
		}
		if t.Written != nil {
			t.Written()
		}
		if progress != nil {
			progress(i+1, len(tensors))
		}
	}
	if err := w.CloseTensors(); err != nil {
		return nil, err
	}
	return shards, nil
}

// WriteConfig writes config.json.
func (w *Writer) WriteConfig(c *Config) error { return c.WriteFile(w.dir) }

// WriteFile writes another document of the checkpoint (a plain file name).
func (w *Writer) WriteFile(name string, data []byte) error {
	if filepath.Base(name) != name || name == "" || name == "." || name == ".." {
		return fmt.Errorf("%s: invalid file name %q", w.dir, name)
	}
	return os.WriteFile(filepath.Join(w.dir, name), data, 0o644)
}

// CopyExtraFiles copies src's non-weight files (CopyExtraFiles) and returns
// their names.
func (w *Writer) CopyExtraFiles(src string) ([]string, error) { return CopyExtraFiles(src, w.dir) }

// Commit renames a Created checkpoint into place; for NewWriter it does
// nothing.
func (w *Writer) Commit() error {
	if w.out == nil {
		return nil
	}
	return w.out.Commit()
}

// Abort stops writing: the open shard is closed and a Created checkpoint's
// temporary directory removed. It does nothing after Commit.
func (w *Writer) Abort() {
	if w.shards != nil {
		w.shards.Abort()
	}
	if w.out != nil {
		w.out.Abort()
	}
}
