package export

import (
	"fmt"

	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/mlx"
	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/half"
)

// repack turns a GPTQ layer into MLX's affine layout exactly: the codes
// are transposed to [out, in] and packed along the inputs, the float16
// scale is kept, and bias = −zero·scale, which float16 holds exactly for the
// symmetric zero 8 (a multiplication by a power of two; checked anyway);
// asymmetric checkpoints get float32 scales and biases, which hold every
// −zero·scale exactly.
func (e *mlxExporter) repack(l hf.Linear, lw *hf.LinearWeights, out, in int, p mlx.Params) ([]uint32, []byte, []byte, error) {
	pk, err := e.layout.Read(l.Name, out, in, lw.GPTQ())
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", e.ck.Dir, err)
	}
	layer, err := pk.Unpack()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %s: %w", e.ck.Dir, l.Name, err)
	}
	for i, g := range layer.GIdx {
		if int(g) != i/p.GroupSize {
			return nil, nil, nil, fmt.Errorf("%s: %s.g_idx[%d] = %d, not %d: act-order (desc_act) reordering cannot be repacked into MLX's contiguous groups",
				e.ck.Dir, l.Name, i, g, i/p.GroupSize)
		}
	}
	codes := make([]uint8, out*in)
	for i := 0; i < in; i++ {
		for c := 0; c < out; c++ {
			codes[c*in+i] = layer.Codes[i*out+c]
		}
	}
	groups := in / p.GroupSize
	scales := make([]float32, out*groups)
	biases := make([]float32, out*groups)
	for g := 0; g < groups; g++ {
		for c := 0; c < out; c++ {
			s := half.F16ToF32(layer.Scales[g*out+c])
			z := layer.Zeros[g*out+c]
			// Exact in float32: z has at most 5 significant bits, s 11.
			b := -float32(z) * s
			if e.scaleDT == safetensors.F16 && half.F16ToF32(half.F32ToF16(b)) != b {
				return nil, nil, nil, fmt.Errorf("%s: %s: bias −zero·scale = %g (zero %d, group %d, output %d) is not a float16 value: the repack would not be exact",
					e.ck.Dir, l.Name, b, z, g, c)
			}
			scales[c*groups+g], biases[c*groups+g] = s, b
		}
	}
	return mlx.Pack(codes, out, in, p), encodeFloats(scales, e.scaleDT), encodeFloats(biases, e.scaleDT), nil
}
