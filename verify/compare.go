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
	if ref.Config.VocabSize != cand.Config.VocabSize {
		return Metrics{}, fmt.Errorf("vocabularies differ: reference has %d tokens, candidate %d", ref.Config.VocabSize, cand.Config.VocabSize)
	}
	V := ref.Config.VocabSize
	acc := NewAccumulator(V)
	batchSize = max(batchSize, 1)
	for i := 0; i < len(seqs); i += batchSize {
		batch := seqs[i:min(i+batchSize, len(seqs))]
		lr, err := ref.Logits(ctx, &model.Batch{Seqs: batch}, nil)
		if err != nil {
			return Metrics{}, fmt.Errorf("reference: %w", err)
		}
		lc, err := cand.Logits(ctx, &model.Batch{Seqs: batch}, nil)
		if err != nil {
			return Metrics{}, fmt.Errorf("candidate: %w", err)
		}
		row := 0
		for _, s := range batch {
			if err := acc.Add(lr[row*V:(row+len(s))*V], lc[row*V:(row+len(s))*V], s); err != nil {
				return Metrics{}, err
			}
			row += len(s)
		}
		if progress != nil {
			progress(min(i+batchSize, len(seqs)), len(seqs))
		}
	}
	return acc.Metrics(), nil
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
