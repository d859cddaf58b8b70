package export

import "github.com/moeforge/moeforge/formats/hf"

// mixtral → mlx-lm's mixtral.py: block_sparse_moe.gate and
// block_sparse_moe.switch_mlp stacked from experts.E.w1/w2/w3, top-k then
// softmax over the k, no attention biases, head_dim = hidden/heads.
func init() {
	mlxArchs[hf.Mixtral] = &mlxArch{check: checkMLXHeadDim}
}
