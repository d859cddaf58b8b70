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
	// Progress, when set, is told how many sequences are done.
	Progress Progress
}

// Result is what Run measured.
type Result struct {
	Metrics Metrics
	// Layers holds one entry per decoder layer with Options.PerLayer.
	Layers []LayerResult
}

// Run runs both models on every sequence, batch by batch, and measures the
// parity metrics and, with opt.PerLayer, the per-layer comparison. The
// models must pass CheckCompatible.
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
// next-token NLL) and the number of predicted tokens.
func Perplexity(ctx context.Context, m *model.Model, seqs [][]int, batchSize int, progress Progress) (ppl float64, predicted int, err error) {
	V := m.Config.VocabSize
	var sum float64
	batchSize = max(batchSize, 1)
	for i := 0; i < len(seqs); i += batchSize {
		batch := seqs[i:min(i+batchSize, len(seqs))]
		logits, err := m.Logits(ctx, &model.Batch{Seqs: batch}, nil)
		if err != nil {
			return 0, 0, err
		}
		row := 0
		for _, s := range batch {
			for _, v := range model.NextTokenNLL(logits[row*V:(row+len(s))*V], V, s) {
				sum += v
				predicted++
			}
			row += len(s)
		}
		if progress != nil {
			progress(min(i+batchSize, len(seqs)), len(seqs))
		}
	}
	if predicted == 0 {
		return 0, 0, fmt.Errorf("no predicted tokens")
	}
	return expMean(sum, predicted), predicted, nil
}
