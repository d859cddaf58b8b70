package model_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
	"github.com/moeforge/moeforge/model"
)

// BenchmarkDecodeStep: one decode step (one new token per sequence, 128
// cached positions each) for B sequences batched, on qwen2_moe_small;
// reports tokens/s. B=8 over B=1 is what continuous batching gains.
//
//	go test -run X -bench DecodeStep ./model
func BenchmarkDecodeStep(b *testing.B) {
	m := loadModel(b, fixturetest.Dir(b, "models/qwen2_moe_small"))
	ctx := context.Background()
	for _, B := range []int{1, 8} {
		b.Run(fmt.Sprintf("B=%d", B), func(b *testing.B) {
			caches := make([]*model.KVCache, B)
			seqs := make([][]int, B)
			for i := range caches {
				caches[i] = m.NewKVCache()
				p := make([]int, 128)
				for j := range p {
					p[j] = (i*31 + j*7 + 3) % m.Config.VocabSize
				}
				if _, err := m.StepLogits(ctx, [][]int{p}, []*model.KVCache{caches[i]}); err != nil {
					b.Fatal(err)
				}
				seqs[i] = []int{(i + 1) % m.Config.VocabSize}
			}
			for b.Loop() {
				for _, c := range caches {
					c.Truncate(128)
				}
				if _, err := m.StepLogits(ctx, seqs, caches); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(B*b.N)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}
