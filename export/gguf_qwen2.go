package export

import (
	"fmt"

	"github.com/moeforge/moeforge/formats/hf"
)

// qwen2 → llama.cpp "qwen2": NEOX rope (q/k unpermuted), q/k/v biases,
// dense SwiGLU MLP.
func init() {
	ggufArchs[hf.Qwen2] = &ggufArch{
		name:  "qwen2",
		check: checkQwenHeadDim,
		keys:  commonKeys,
		layers: func(b *builder, i int) error {
			b.attention(i, false)
			for _, l := range b.c.LayerLinears(i)[4:] {
				b.linear(fmt.Sprintf("blk.%d.ffn_%s.weight", i, ffnName(l.Proj)), l, nil)
			}
			return nil
		},
	}
}

// ffnName is llama.cpp's name of an FFN projection (ffn_gate, ffn_up, ffn_down).
func ffnName(p hf.Proj) string {
	switch p {
	case hf.GateProj:
		return "gate"
	case hf.UpProj:
		return "up"
	}
	return "down"
}

// checkQwenHeadDim: llama.cpp's qwen2 and qwen2moe graphs take head_dim as
// hidden/heads (they read no key_length).
func checkQwenHeadDim(c *hf.Config) error {
	if c.HeadDim*c.NumAttentionHeads != c.HiddenSize {
		return refuse("config head_dim=%d: llama.cpp's %s graph needs head_dim = hidden_size/num_attention_heads = %d", c.HeadDim, c.ModelType, c.HiddenSize/c.NumAttentionHeads)
	}
	return nil
}

// commonKeys are the hyperparameters every architecture here writes
// (prefixed with the architecture name).
func commonKeys(c *hf.Config, kv func(string, any)) {
	kv("block_count", uint32(c.NumHiddenLayers))
	kv("context_length", uint32(c.MaxPositionEmbeddings))
	kv("embedding_length", uint32(c.HiddenSize))
	kv("feed_forward_length", uint32(c.IntermediateSize))
	kv("attention.head_count", uint32(c.NumAttentionHeads))
	kv("attention.head_count_kv", uint32(c.NumKeyValueHeads))
	kv("rope.freq_base", float32(c.RopeTheta))
	kv("attention.layer_norm_rms_epsilon", float32(c.RMSNormEps))
}
