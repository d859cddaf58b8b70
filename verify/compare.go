package verify

import (
	"context"
	"fmt"

	"github.com/moeforge/moeforge/model"
)

// Progress is told how many of the total sequences are done.
type Progress func(done, total int)

// Compare runs both models on every sequence and returns the parity
// metrics. Sequences are run batchSize at a time (1 if batchSize ≤ 0) so that
// memory stays bounded by one batch's logits.
func Compare(ctx context.Context, ref, cand *model.Model, seqs [][]int, batchSize int, progress Progress) (Metrics, error) {
	r, err := Run(ctx, ref, cand, seqs, Options{BatchSize: batchSize, Progress: progress})
	return r.Metrics, err
}

// Options control Run.
type Options struct {
	// BatchSize is the number of sequences run together (1 if ≤ 0).
	BatchSize int
	// PerLayer adds the comparison of the hidden state after every layer
	// and of the expert selection (Result.Layers). It keeps one batch's
	// reference hidden states for all layers in memory.
	PerLayer bool
	// Progress, when set, is told how many sequences are done (with
	// PerLayer), else how many of the two models' layer steps.
	Progress Progress

	logitsBytes int64 // caps the logits of each model held at once; tests shrink it
}

// Result is what Run measured.
type Result struct {
	Metrics Metrics
	// Layers holds one entry per decoder layer with Options.PerLayer.
	Layers []LayerResult
}

// Run runs both models on every sequence and measures the parity metrics
// and, with opt.PerLayer, the per-layer comparison. The models must pass
// CheckCompatible. Without PerLayer each model makes one layer-major pass
// (model.HiddenLayerMajor: each reads its weights once, the reference's
// before the candidate's) and their logits are compared a chunk of windows
// at a time; with it they run batch by batch, side by side.
func Run(ctx context.Context, ref, cand *model.Model, seqs [][]int, opt Options) (Result, error) {
	if err := CheckCompatible(ref, cand, opt.PerLayer); err != nil {
		return Result{}, err
	}
	V := ref.Config.VocabSize
	acc := NewAccumulator(V)
	var lc *layerCollector
	var refHooks, candHooks *model.Hooks
	if opt.PerLayer {
		lc = newLayerCollector(ref, cand)
		refHooks, candHooks = lc.refHooks(), lc.candHooks()
	}
	batchSize := max(opt.BatchSize, 1)
	if !opt.PerLayer {
		return runLayerMajor(ctx, ref, cand, seqs, acc, model.PassOptions{Batch: batchSize, LogitsBytes: opt.logitsBytes}, opt.Progress)
	}
	for i := 0; i < len(seqs); i += batchSize {
		batch := seqs[i:min(i+batchSize, len(seqs))]
		lr, err := ref.Logits(ctx, &model.Batch{Seqs: batch}, refHooks)
		if err != nil {
			return Result{}, fmt.Errorf("reference: %w", err)
		}
		lcand, err := cand.Logits(ctx, &model.Batch{Seqs: batch}, candHooks)
		if err != nil {
			return Result{}, fmt.Errorf("candidate: %w", err)
		}
		if lc != nil && lc.err != nil {
			return Result{}, lc.err
		}
		row := 0
		for _, s := range batch {
			if err := acc.Add(lr[row*V:(row+len(s))*V], lcand[row*V:(row+len(s))*V], s); err != nil {
				return Result{}, err
			}
			row += len(s)
		}
		if opt.Progress != nil {
			opt.Progress(min(i+batchSize, len(seqs)), len(seqs))
		}
	}
	res := Result{Metrics: acc.Metrics()}
	if lc != nil {
		res.Layers = lc.results()
	}
	return res, nil
}

// Perplexity runs one model over the sequences and returns exp(mean
// next-token NLL) and the number of predicted tokens. The pass is
// layer-major (model.HiddenLayerMajor): every weight is read once whatever
// batchSize is; the logits are made and reduced to NLL a chunk at a time.
// progress is told the layers done (of layers + 1).
func Perplexity(ctx context.Context, m *model.Model, seqs [][]int, batchSize int, progress Progress) (ppl float64, predicted int, err error) {
	return perplexity(ctx, m, seqs, model.PassOptions{Batch: batchSize, Progress: progress})
}

func perplexity(ctx context.Context, m *model.Model, seqs [][]int, opt model.PassOptions) (ppl float64, predicted int, err error) {
	V := m.Config.VocabSize
	x, err := m.HiddenLayerMajor(ctx, seqs, opt)
	if err != nil {
		return 0, 0, err
	}
	var sum float64
	err = m.LogitsChunks(ctx, seqs, x, opt, func(first, n int, logits []float32) error {
		row := 0
		for _, s := range seqs[first : first+n] {
			for _, v := range model.NextTokenNLL(logits[row*V:(row+len(s))*V], V, s) {
				sum += v
				predicted++
			}
			row += len(s)
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	if predicted == 0 {
		return 0, 0, fmt.Errorf("no predicted tokens")
	}
	return expMean(sum, predicted), predicted, nil
}

// runLayerMajor is Run without PerLayer: the final hidden states of the
// reference, then of the candidate, each in one layer-major pass; then both
// lm_heads a chunk at a time into the accumulator.
func runLayerMajor(ctx context.Context, ref, cand *model.Model, seqs [][]int, acc *Accumulator, opt model.PassOptions, progress Progress) (Result, error) {
	steps := 2 * (len(ref.Layers) + 1)
	if progress != nil {
		opt.Progress = func(done, _ int) { progress(done, steps) }
	}
	xr, err := ref.HiddenLayerMajor(ctx, seqs, opt)
	if err != nil {
		return Result{}, fmt.Errorf("reference: %w", err)
	}
	if progress != nil {
		opt.Progress = func(done, _ int) { progress(len(ref.Layers)+1+done, steps) }
	}
	xc, err := cand.HiddenLayerMajor(ctx, seqs, opt)
	if err != nil {
		return Result{}, fmt.Errorf("candidate: %w", err)
	}
	V := ref.Config.VocabSize
	// Both models' logits of a chunk side by side: the candidate's chunk
	// is made inside the reference's callback, with the same boundaries.
	err = ref.LogitsChunks(ctx, seqs, xr, opt, func(first, n int, lr []float32) error {
		h := cand.Config.HiddenSize
		r0 := (&model.Batch{Seqs: seqs[:first]}).NumTokens()
		part := seqs[first : first+n]
		rows := (&model.Batch{Seqs: part}).NumTokens()
		one := opt
		one.Batch = n
		return cand.LogitsChunks(ctx, part, xc[r0*h:(r0+rows)*h], one, func(_, _ int, lc []float32) error {
			row := 0
			for _, s := range part {
				if err := acc.Add(lr[row*V:(row+len(s))*V], lc[row*V:(row+len(s))*V], s); err != nil {
					return err
				}
				row += len(s)
			}
			return nil
		})
	})
	if err != nil {
		return Result{}, err
	}
	return Result{Metrics: acc.Metrics()}, nil
}
