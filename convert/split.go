package convert

import (
	"fmt"
	"strings"

	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/safetensors"
)

// SplitOptions are the choices of an expert split.
type SplitOptions struct {
	// Factor is g: every expert becomes g experts of width I/g.
	Factor int
	// DType is the output dtype ("" = the input's).
	DType safetensors.DType
}

// Split plans the re-splitting of a Mixtral, Qwen2-MoE or Qwen3-MoE checkpoint
// (ALGORITHMS.md §2): expert e becomes experts e·g … e·g+g−1 (adjacent, so
// that their identical router logits select them together), each with I/g
// of its neurons; the router row is copied to each piece, top-k and the
// number of experts are multiplied by g and every piece's down_proj by g.
// Each piece gets probability p_e/g, with or without renormalization, so the
// output is unchanged exactly. Shared experts, their gates and dense layers
// are copied unchanged.
func Split(in *hf.Checkpoint, opts SplitOptions) (*Plan, error) {
	c := in.Config
	g := opts.Factor
	if !c.IsMoE() {
		hint := ""
		if _, ok := c.UpcycleTarget(); ok {
			hint = " (to turn a dense model into experts, use convert upcycle)"
		}
		return nil, fmt.Errorf("%s: split needs a mixtral, qwen2_moe or qwen3_moe checkpoint, this one is %s%s", in.Dir, c.ModelType, hint)
	}
	if c.Quantization != nil {
		return nil, fmt.Errorf("%s: the checkpoint is GPTQ-quantized; split needs float weights (split first, then quantize)", in.Dir)
	}
	I := c.MoEIntermediateSize
	if g < 2 {
		return nil, fmt.Errorf("split: --factor %d must be at least 2 (each expert becomes that many)", g)
	}
	if I%g != 0 {
		return nil, fmt.Errorf("split: the expert width %d is not a multiple of --factor %d: use a factor that divides %d, e.g. %s", I, g, I, factorHint(I, g))
	}
	out := c.Clone()
	out.NumExperts *= g
	out.NumExpertsPerTok *= g
	out.MoEIntermediateSize = I / g
	if c.ModelType == hf.Mixtral {
		out.IntermediateSize = I / g // mixtral's intermediate_size is the expert width
	}
	if opts.DType != "" {
		out.DType = configDType(opts.DType)
	}

	b := newBuilder(in, out, opts.DType)
	Ip, h := I/g, c.HiddenSize
	for _, i := range c.MoELayers() {
		router, err := in.Tensor(c.RouterLinear(i) + ".weight")
		if err != nil {
			return nil, err
		}
		for _, spec := range c.LayerLinears(i) {
			if spec.Kind != hf.KindExpert {
				continue
			}
			lw, err := in.Linear(spec)
			if err != nil {
				return nil, err
			}
			w, e, p := lw.Weight, spec.Expert, spec.Proj
			if p == hf.DownProj {
				if err := checkScale(float64(g), b.outDType(w.DType), fmt.Sprintf("split by %d", g),
					fmt.Sprintf("pass --dtype f32, or use a power-of-two factor (%s)", pow2FactorHint(I))); err != nil {
					return nil, err
				}
			}
			for j := 0; j < g; j++ {
				name := out.ExpertLinear(i, e*g+j, p) + ".weight"
				first := j * Ip
				if p == hf.DownProj {
					b.compute(name, w, []int{h, Ip}, func() ([]float32, error) {
						m, err := newMatrix(w)
						if err != nil {
							return nil, err
						}
						return m.gatherCols(span(first, Ip), float32(g)), nil
					}, w)
				} else {
					b.compute(name, w, []int{Ip, h}, func() ([]float32, error) {
						m, err := newMatrix(w)
						if err != nil {
							return nil, err
						}
						return m.gatherRows(span(first, Ip), 1), nil
					}, w)
				}
			}
		}
		rows := make([]int32, c.NumExperts*g)
		for e := range rows {
			rows[e] = int32(e / g) // piece e·g+j keeps expert e's router row
		}
		b.compute(out.RouterLinear(i)+".weight", router, []int{c.NumExperts * g, h}, func() ([]float32, error) {
			m, err := newMatrix(router)
			if err != nil {
				return nil, err
			}
			return m.gatherRows(rows, 1), nil
		}, router)
	}
	moe, dense := layerSplit(out)
	sum := &Summary{
		Recipe: "split", Input: in.Dir, InputArch: c.ModelType, OutputArch: out.ModelType, Exact: true,
		MoELayers: moe, DenseLayers: dense,
		Experts: out.NumExperts, TopK: out.NumExpertsPerTok, ExpertSize: out.MoEIntermediateSize,
		NormTopKProb: out.NormTopKProb, ParamsBefore: paramsOf(c),
		Split: &SplitSummary{Factor: g, ExpertsBefore: c.NumExperts, TopKBefore: c.NumExpertsPerTok, ExpertSizeBefore: I, DownScale: float64(g)},
	}
	if out.HasSharedExpert() {
		sum.SharedSize = out.SharedExpertIntermediateSize
		sum.note("the shared expert and its gate are copied unchanged")
	}
	if len(in.Unexpected) > 0 {
		sum.note("%d input tensors the config does not use were left out (e.g. %s)", len(in.Unexpected), in.Unexpected[0])
	}
	p, err := b.plan(sum)
	if err != nil {
		return nil, err
	}
	sum.finish(p)
	return p, nil
}

// span returns the neuron indices [first, first+n).
func span(first, n int) []int32 {
	s := make([]int32, n)
	for t := range s {
		s[t] = int32(first + t)
	}
	return s
}

// factorHint lists the factors ≥ 2 of n nearest to want: "2, 3 or 4".
func factorHint(n, want int) string {
	var below, above []int
	for d := 2; d <= n; d++ {
		if n%d == 0 {
			if d < want {
				below = append(below, d)
			} else {
				above = append(above, d)
			}
		}
	}
	var pick []string
	for i := max(len(below)-2, 0); i < len(below); i++ {
		pick = append(pick, fmt.Sprint(below[i]))
	}
	for i := 0; i < min(2, len(above)); i++ {
		pick = append(pick, fmt.Sprint(above[i]))
	}
	if len(pick) == 0 {
		return "none: the experts cannot be split"
	}
	return strings.Join(pick, ", ")
}

// pow2FactorHint lists power-of-two factors of n: "2, 4, 8".
func pow2FactorHint(n int) string {
	var pick []string
	for d := 2; d <= n && len(pick) < 3; d *= 2 {
		if n%d == 0 {
			pick = append(pick, fmt.Sprint(d))
		}
	}
	if len(pick) == 0 {
		return "none divides the expert width"
	}
	return strings.Join(pick, ", ")
}
