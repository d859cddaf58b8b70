package quantize

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"

	"github.com/moeforge/moeforge/corpus"
)

// IDCalibration reads calibration sequences from the input_ids tensor
// [N, T] (I64 or I32) of a safetensors file; every id must be below vocab.
func IDCalibration(path string, vocab int) ([][]int, error) {
	seqs, err := corpus.ReadIDs(path, corpus.InputIDs)
	if err != nil {
		return nil, err
	}
	for s, seq := range seqs {
		for j, id := range seq {
			if id >= vocab {
				return nil, fmt.Errorf("%s: input_ids[%d, %d] = %d outside the vocabulary [0, %d)", path, s, j, id, vocab)
			}
		}
	}
	return seqs, nil
}

// activations holds the hidden states [tokens, hidden] of the calibration
// sequences between decoder layers, in chunks of whole sequences so that a
// layer's forward pass runs on one chunk at a time. With a spill directory
// the chunks live zstd-compressed on disk, not in memory.
type activations struct {
	hidden int
	chunks []*chunk
	spill  string // directory of the chunk files, "" = in memory
	enc    *zstd.Encoder
	dec    *zstd.Decoder
}

type chunk struct {
	seqs [][]int
	rows int
	data []float32 // in memory
	path string    // spilled
}

// newActivations groups seqs into chunks of at most chunkTokens tokens (at
// least one sequence each). spillDir, when set, is a directory under which
// a private temporary directory is created.
func newActivations(seqs [][]int, chunkTokens, hidden int, spillDir string) (*activations, error) {
	a := &activations{hidden: hidden}
	var cur *chunk
	for _, s := range seqs {
		if cur == nil || (cur.rows+len(s) > chunkTokens && cur.rows > 0) {
			cur = &chunk{}
			a.chunks = append(a.chunks, cur)
		}
		cur.seqs = append(cur.seqs, s)
		cur.rows += len(s)
	}
	if spillDir != "" {
		if st, err := os.Stat(spillDir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("spill directory %s does not exist", spillDir)
		}
		dir, err := os.MkdirTemp(spillDir, "moeforge-activations-")
		if err != nil {
			return nil, err
		}
		a.spill = dir
		if a.enc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1)); err != nil {
			return nil, err
		}
		if a.dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1)); err != nil {
			return nil, err
		}
		for i, c := range a.chunks {
			c.path = filepath.Join(dir, fmt.Sprintf("chunk-%05d.f32.zst", i))
		}
	}
	return a, nil
}

// sibling returns an empty store with the same chunks for rows of width
// values (spilled too when a is, in a directory of its own).
func (a *activations) sibling(width int) (*activations, error) {
	b := &activations{hidden: width}
	for _, c := range a.chunks {
		b.chunks = append(b.chunks, &chunk{seqs: c.seqs, rows: c.rows})
	}
	if a.spill == "" {
		return b, nil
	}
	dir, err := os.MkdirTemp(filepath.Dir(a.spill), "moeforge-activations-")
	if err != nil {
		return nil, err
	}
	b.spill = dir
	if b.enc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1)); err != nil {
		return nil, err
	}
	if b.dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1)); err != nil {
		return nil, err
	}
	for i, c := range b.chunks {
		c.path = filepath.Join(dir, fmt.Sprintf("chunk-%05d.f32.zst", i))
	}
	return b, nil
}

// view returns chunk i's hidden states for reading, or for modifying when
// the caller stores the result back: in memory the stored slice itself,
// spilled a fresh copy.
func (a *activations) view(i int) ([]float32, error) {
	if a.spill == "" {
		return a.chunks[i].data, nil
	}
	return a.load(i)
}

// load returns a copy of chunk i's hidden states that the caller may modify.
func (a *activations) load(i int) ([]float32, error) {
	c := a.chunks[i]
	if a.spill == "" {
		return append([]float32(nil), c.data...), nil
	}
	f, err := os.Open(c.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := a.dec.Reset(bufio.NewReader(f)); err != nil {
		return nil, fmt.Errorf("%s: %w", c.path, err)
	}
	x := make([]float32, c.rows*a.hidden)
	buf := make([]byte, 4*4096)
	for off := 0; off < len(x); {
		n := min(4096, len(x)-off)
		if _, err := io.ReadFull(a.dec, buf[:4*n]); err != nil {
			return nil, fmt.Errorf("%s: %w", c.path, err)
		}
		for k := 0; k < n; k++ {
			x[off+k] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*k:]))
		}
		off += n
	}
	return x, nil
}

// store replaces chunk i's hidden states with x (kept by reference in memory).
func (a *activations) store(i int, x []float32) error {
	c := a.chunks[i]
	if a.spill == "" {
		c.data = x
		return nil
	}
	f, err := os.Create(c.path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	a.enc.Reset(w)
	buf := make([]byte, 4*4096)
	for off := 0; off < len(x); {
		n := min(4096, len(x)-off)
		for k := 0; k < n; k++ {
			binary.LittleEndian.PutUint32(buf[4*k:], math.Float32bits(x[off+k]))
		}
		if _, err := a.enc.Write(buf[:4*n]); err != nil {
			f.Close()
			return err
		}
		off += n
	}
	if err := a.enc.Close(); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// close drops the chunks and removes the spill files; it may be called
// more than once.
func (a *activations) close() {
	for _, c := range a.chunks {
		c.data = nil
	}
	if a.spill != "" {
		os.RemoveAll(a.spill)
		a.dec.Close()
		a.spill = ""
	}
}
