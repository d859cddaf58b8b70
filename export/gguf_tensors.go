package export

import (
	"fmt"
	"slices"

	"github.com/moeforge/moeforge/formats/gguf"
	"github.com/moeforge/moeforge/formats/hf"
)

// builder appends the output tensors of a plan; the first error sticks.
type builder struct {
	p   *GGUFPlan
	src *source
	c   *hf.Config
	typ gguf.Type
	err error
}

func (b *builder) add(name string, typ gguf.Type, ne []int, enc func([]byte) error) {
	b.p.tensors = append(b.p.tensors, outTensor{name: name, typ: typ, ne: ne, encode: enc})
}

func (b *builder) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

// floatType is the type of the large float tensors that are not quantized
// (token_embd, output): the export type, or for Q8_0 and Q4_0 the
// checkpoint's own float dtype (lossless).
func (b *builder) floatType() gguf.Type {
	switch b.typ {
	case gguf.Q8_0, gguf.Q4_0:
		return b.src.floatType()
	}
	return b.typ
}

// matrixType is the type of a quantizable matrix with in inputs: the export
// type, or F16 when its rows are not whole blocks of it.
func (b *builder) matrixType(name string, in int) gguf.Type {
	if in%b.typ.BlockSize() != 0 {
		b.p.summary.Fallback = append(b.p.summary.Fallback, name)
		return gguf.F16
	}
	return b.typ
}

// vector writes a float tensor of the checkpoint as F32 with the given ne
// dims (norms, biases, routers).
func (b *builder) vector(name, hfName string, ne []int, typ gguf.Type) {
	b.add(name, typ, ne, func(dst []byte) error {
		x, err := b.src.float(hfName, numElements(ne))
		if err != nil {
			return err
		}
		return encode(typ, dst, x, name)
	})
}

func encode(typ gguf.Type, dst []byte, x []float32, name string) error {
	if err := gguf.Encode(typ, dst, x); err != nil {
		return fmt.Errorf("%s: %v", name, err)
	}
	return nil
}

func (b *builder) embedding() {
	c := b.c
	b.vector("token_embd.weight", hf.EmbedTokens, []int{c.HiddenSize, c.VocabSize}, b.floatType())
}

// head writes output_norm and output; output is the embedding when tied
// (llama.cpp's qwen2moe requires the tensor).
func (b *builder) head() {
	c := b.c
	b.vector("output_norm.weight", hf.FinalNorm, []int{c.HiddenSize}, gguf.F32)
	if c.TieWordEmbeddings {
		b.vector("output.weight", hf.EmbedTokens, []int{c.HiddenSize, c.VocabSize}, b.floatType())
		return
	}
	l := hf.Linear{Name: hf.LMHead, Out: c.VocabSize, In: c.HiddenSize, Kind: hf.KindLMHead, Layer: -1, Expert: -1}
	typ := b.floatType()
	b.add("output.weight", typ, []int{c.HiddenSize, c.VocabSize}, func(dst []byte) error {
		return b.src.encodeLinear(dst, l, typ, nil, b.p)
	})
}

// linear writes a quantizable matrix [Out, In] as ne {In, Out}; perm, when
// set, maps each output row to the source row it takes.
func (b *builder) linear(name string, l hf.Linear, perm func(int) int) {
	typ := b.matrixType(name, l.In)
	b.add(name, typ, []int{l.In, l.Out}, func(dst []byte) error {
		return b.src.encodeLinear(dst, l, typ, perm, b.p)
	})
}

// bias writes the F32 bias of l (permuted like its rows).
func (b *builder) bias(name string, l hf.Linear, perm func(int) int) {
	b.add(name, gguf.F32, []int{l.Out}, func(dst []byte) error {
		x, err := b.src.float(l.Name+".bias", l.Out)
		if err != nil {
			return err
		}
		return encode(gguf.F32, dst, permuteRows(x, l.Out, 1, perm), name)
	})
}

// router writes a small float linear (router, shared-expert gate) as F32
// with the given ne dims.
func (b *builder) router(name string, l hf.Linear, ne []int) {
	b.add(name, gguf.F32, ne, func(dst []byte) error {
		return b.src.encodeLinear(dst, l, gguf.F32, nil, b.p)
	})
}

// experts writes the routed experts' projection p of layer i stacked:
// ne {In, Out, E}, expert e's matrix at index e.
func (b *builder) experts(name string, i int, p hf.Proj) {
	c := b.c
	var ls []hf.Linear
	for _, l := range c.LayerLinears(i) {
		if l.Kind == hf.KindExpert && l.Proj == p {
			ls = append(ls, l)
		}
	}
	if len(ls) != c.NumExperts {
		b.fail(fmt.Errorf("layer %d: %d experts with %s, config says %d", i, len(ls), p, c.NumExperts))
		return
	}
	typ := b.matrixType(name, ls[0].In)
	b.add(name, typ, []int{ls[0].In, ls[0].Out, len(ls)}, func(dst []byte) error {
		per := len(dst) / len(ls)
		for e, l := range ls {
			if err := b.src.encodeLinear(dst[e*per:(e+1)*per], l, typ, nil, b.p); err != nil {
				return err
			}
		}
		return nil
	})
}

// attention writes layer i's norm and attention tensors; permuted rotates q
// and k rows into the order llama.cpp's NORM rope expects (by heads and by
// kv heads), as its converter does for Llama/Mixtral.
func (b *builder) attention(i int, permuted bool) {
	c := b.c
	h := c.HiddenSize
	b.vector(fmt.Sprintf("blk.%d.attn_norm.weight", i), hf.InputNorm(i), []int{h}, gguf.F32)
	ls := c.LayerLinears(i)
	names := map[string]string{hf.QProj: "attn_q", hf.KProj: "attn_k", hf.VProj: "attn_v", hf.OProj: "attn_output"}
	for _, l := range ls[:4] {
		proj := l.Name[len(l.Name)-len("q_proj"):]
		var perm func(int) int
		if permuted && proj == hf.QProj {
			perm = ropePermutation(c.NumAttentionHeads, c.HeadDim)
		}
		if permuted && proj == hf.KProj {
			perm = ropePermutation(c.NumKeyValueHeads, c.HeadDim)
		}
		base := fmt.Sprintf("blk.%d.%s", i, names[proj])
		b.linear(base+".weight", l, perm)
		if l.Bias {
			b.bias(base+".bias", l, perm)
		}
	}
	b.vector(fmt.Sprintf("blk.%d.ffn_norm.weight", i), hf.PostAttentionNorm(i), []int{h}, gguf.F32)
}

// ropePermutation maps output row r of q or k (heads × headDim rows) to its
// source row: llama.cpp's converter reshapes each head's rows as [2, hd/2]
// and swaps the axes, so row h·hd + 2j + s comes from h·hd + s·hd/2 + j.
func ropePermutation(heads, headDim int) func(int) int {
	return func(r int) int {
		h, k := r/headDim, r%headDim
		j, s := k/2, k%2
		return h*headDim + s*(headDim/2) + j
	}
}

// permuteRows returns x [rows, cols] with row r taken from row perm(r); x
// itself when perm is nil.
func permuteRows(x []float32, rows, cols int, perm func(int) int) []float32 {
	if perm == nil {
		return x
	}
	out := make([]float32, len(x))
	for r := 0; r < rows; r++ {
		copy(out[r*cols:(r+1)*cols], x[perm(r)*cols:(perm(r)+1)*cols])
	}
	return out
}

// isZero reports whether every value is zero.
func isZero(x []float32) bool {
	return !slices.ContainsFunc(x, func(v float32) bool { return v != 0 })
}
