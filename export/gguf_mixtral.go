package export

import (
	"fmt"

	"github.com/moeforge/moeforge/formats/hf"
)

// mixtral → llama.cpp "llama" with experts: NORM rope, so q and k rows are
// permuted the way llama.cpp's converter does; softmax top-k routing
// renormalized (as Mixtral's); no biases, no shared expert.
func init() {
	ggufArchs[hf.Mixtral] = &ggufArch{
		name:  "llama",
		check: func(c *hf.Config) error { return nil },
		keys: func(c *hf.Config, kv func(string, any)) {
			commonKeys(c, kv)
			kv("expert_count", uint32(c.NumExperts))
			kv("expert_used_count", uint32(c.NumExpertsPerTok))
			kv("vocab_size", uint32(c.VocabSize))
			kv("rope.dimension_count", uint32(c.HeadDim))
			if c.HeadDim*c.NumAttentionHeads != c.HiddenSize {
				kv("attention.key_length", uint32(c.HeadDim))
				kv("attention.value_length", uint32(c.HeadDim))
			}
		},
		layers: func(b *builder, i int) error {
			c := b.c
			b.attention(i, true)
			for _, l := range c.LayerLinears(i) {
				if l.Kind == hf.KindRouter {
					b.router(fmt.Sprintf("blk.%d.ffn_gate_inp.weight", i), l, []int{c.HiddenSize, c.NumExperts})
				}
			}
			for _, p := range hf.FFNProjs {
				b.experts(fmt.Sprintf("blk.%d.ffn_%s_exps.weight", i, ffnName(p)), i, p)
			}
			return nil
		},
	}
}
