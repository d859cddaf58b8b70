package model

import (
	"context"
	"fmt"
	"unsafe"

	"github.com/moeforge/moeforge/internal/gemm"
)

// Layer-major execution (issue #12): a whole-corpus pass (perplexity,
// parity) runs every window through layer 0, then every window through
// layer 1, and so on, so that each layer's weights are read from the file
// once per pass whatever the batch size, while the next layer's pages are
// read ahead and the finished layer's released. The hidden states of all
// windows ([tokens, hidden] float32) stay in memory instead; the logits are
// produced in chunks of windows afterwards.
//
// Within a layer the windows still go through the products Batch at a
// time, exactly as Hidden runs a batch, so the results equal a batch-major
// pass over the same batches bit for bit.

// PassOptions control a layer-major pass.
type PassOptions struct {
	// Batch is the number of windows run through a layer's products
	// together (1 if ≤ 0): more rows per product, more speed; it no longer
	// changes how often weights are read.
	Batch int
	// LogitsBytes caps the logits held at once (0: DefaultLogitsBytes).
	// Chunks are whole batches when a batch's logits fit, so that the
	// logits equal Logits' on the same batches; otherwise as many windows
	// as fit (at least one), which moves logits by GEMM rounding (~1e-6).
	LogitsBytes int64
	// Progress, when set, is told after each layer (and the final norm)
	// how many of the len(Layers)+1 steps are done.
	Progress func(done, total int)
}

// DefaultLogitsBytes is the default cap on the logits a pass holds at once.
const DefaultLogitsBytes = 512 << 20

// HiddenLayerMajor runs the model body over all seqs layer by layer and
// returns the final hidden states [tokens, hidden] (after the final norm),
// the windows' rows in order. Sequences start at position 0.
func (m *Model) HiddenLayerMajor(ctx context.Context, seqs [][]int, opt PassOptions) ([]float32, error) {
	all := &Batch{Seqs: seqs}
	if err := m.checkBatch(all); err != nil {
		return nil, err
	}
	x, err := m.Embed(all)
	if err != nil {
		return nil, err
	}
	adv := newAdvisor(m)
	defer adv.wait() // no advice outlives the pass (the maps may be closed after it)
	if !m.Config.TieWordEmbeddings {
		adv.release(matrixBytes(m.Embeddings))
	}
	batch := max(opt.Batch, 1)
	h := m.Config.HiddenSize
	steps := len(m.Layers) + 1
	if len(m.Layers) > 0 {
		adv.prefetch(m.layerBytes(0))
	}
	for i, l := range m.Layers {
		// Read the next layer (or lm_head) while this one computes.
		if i+1 < len(m.Layers) {
			adv.prefetch(m.layerBytes(i + 1))
		} else {
			adv.prefetch(matrixBytes(m.LMHead.W))
		}
		row := 0
		for b := 0; b < len(seqs); b += batch {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			bs := &Batch{Seqs: seqs[b:min(b+batch, len(seqs))]}
			n := bs.NumTokens()
			m.ForwardLayer(l, x[row*h:(row+n)*h], bs, nil)
			row += n
		}
		adv.release(m.layerBytes(i))
		if opt.Progress != nil {
			opt.Progress(i+1, steps)
		}
	}
	m.FinalNorm(x)
	if opt.Progress != nil {
		opt.Progress(steps, steps)
	}
	return x, nil
}

// LogitsChunks applies lm_head to the final hidden states x of seqs (as
// HiddenLayerMajor returns them) a chunk of windows at a time and calls f
// with the first window of the chunk, its number of windows and their
// logits [chunk tokens, vocab], which f must not keep.
func (m *Model) LogitsChunks(ctx context.Context, seqs [][]int, x []float32, opt PassOptions, f func(first, n int, logits []float32) error) error {
	h, V := m.Config.HiddenSize, m.Config.VocabSize
	if tokens := (&Batch{Seqs: seqs}).NumTokens(); len(x) != tokens*h {
		return fmt.Errorf("internal error: %d hidden values for %d tokens of width %d", len(x), tokens, h)
	}
	chunk := m.logitsChunk(seqs, opt)
	var logits []float32
	row := 0
	for first := 0; first < len(seqs); first += chunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(chunk, len(seqs)-first)
		rows := (&Batch{Seqs: seqs[first : first+n]}).NumTokens()
		if cap(logits) < rows*V {
			logits = make([]float32, rows*V)
		}
		lg := logits[:rows*V]
		m.LMHead.Forward(lg, x[row*h:(row+rows)*h], rows)
		if err := f(first, n, lg); err != nil {
			return err
		}
		row += rows
	}
	return nil
}

// logitsChunk is the number of windows whose logits are produced at once.
func (m *Model) logitsChunk(seqs [][]int, opt PassOptions) int {
	limit := opt.LogitsBytes
	if limit <= 0 {
		limit = DefaultLogitsBytes
	}
	longest := 1
	for _, s := range seqs {
		longest = max(longest, len(s))
	}
	perWindow := int64(longest) * int64(m.Config.VocabSize) * 4
	batch := max(opt.Batch, 1)
	if int64(batch)*perWindow <= limit {
		return batch
	}
	return int(max(limit/perWindow, 1))
}

// layerBytes lists the memory of layer i's weight matrices (those backed
// by a known matrix type).
func (m *Model) layerBytes(i int) [][]byte {
	var out [][]byte
	for _, l := range m.Layers[i].Linears() {
		out = append(out, matrixBytes(l.W)...)
	}
	return out
}

// matrixBytes returns the memory a matrix reads its elements from (nil for
// matrix types it does not know: advice is only an optimization).
func matrixBytes(w gemm.Matrix) [][]byte {
	var out [][]byte
	add := func(p unsafe.Pointer, n int) {
		if n > 0 {
			out = append(out, unsafe.Slice((*byte)(p), n))
		}
	}
	switch w := w.(type) {
	case gemm.F32:
		if len(w.Data) > 0 {
			add(unsafe.Pointer(&w.Data[0]), 4*len(w.Data))
		}
	case gemm.BF16:
		if len(w.Data) > 0 {
			add(unsafe.Pointer(&w.Data[0]), 2*len(w.Data))
		}
	case gemm.F16:
		if len(w.Data) > 0 {
			add(unsafe.Pointer(&w.Data[0]), 2*len(w.Data))
		}
	case gemm.Int4:
		if len(w.QWeight) > 0 {
			add(unsafe.Pointer(&w.QWeight[0]), 4*len(w.QWeight))
		}
	case gemm.GPTQ:
		if len(w.QWeight) > 0 {
			add(unsafe.Pointer(&w.QWeight[0]), 4*len(w.QWeight))
		}
	}
	return out
}
