package export

import (
	"context"
	"testing"

	"github.com/moeforge/moeforge/formats/gguf"
	"github.com/moeforge/moeforge/model"
)

// BenchmarkGGUFForward runs moeforge's forward pass over 4 × 256 tokens of
// qwen2_moe_small from the bf16 checkpoint and from its GGUF exports, in
// one process so the types compare under the same load (tokens/s).
//
//	go test -run '^$' -bench GGUFForward ./export
func BenchmarkGGUFForward(b *testing.B) {
	dir := materialized(b, "models/qwen2_moe_small")
	seqs := textIDs(b, dir, 4, 256)
	paths := map[string]string{"checkpoint-bf16": dir}
	for _, ty := range []gguf.Type{gguf.F32, gguf.BF16, gguf.F16, gguf.Q8_0, gguf.Q4_0} {
		paths["gguf-"+ty.String()], _ = exportFile(b, dir, GGUFOptions{Type: ty, TypeSet: true})
	}
	for _, name := range []string{"checkpoint-bf16", "gguf-F32", "gguf-BF16", "gguf-F16", "gguf-Q8_0", "gguf-Q4_0"} {
		b.Run(name, func(b *testing.B) {
			m, err := model.Open(paths[name])
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			for b.Loop() {
				if _, err := m.Logits(context.Background(), &model.Batch{Seqs: seqs}, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(4*256*b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
