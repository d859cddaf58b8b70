package model_test

// A float64 reference forward pass, written independently of package model
// from ALGORITHMS.md §1 and the transformers modeling code it describes
// (Qwen2, Qwen2-MoE, Mixtral; Qwen3 and Qwen3-MoE from modeling_qwen3.py /
// modeling_qwen3_moe.py: q_norm/k_norm per head before rope, o_proj bias
// with attention_bias, no shared expert): per-token loops, float64 everywhere, weights
// read by name from the checkpoint's safetensors. It is slow and simple on
// purpose; tests compare the real forward pass against it on small random
// models that exercise config branches no transformers fixture covers.

import (
	"fmt"
	"math"
	"sort"
	"testing"

	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/safetensors"
)

// refModel is a checkpoint's config and its weights widened to float64.
type refModel struct {
	c *hf.Config
	w map[string][]float64
	// window[i] is layer i's attention window (0 = full causal attention),
	// stated by the test that builds the model.
	window []int
}

func loadRefModel(t *testing.T, dir string, window []int) *refModel {
	t.Helper()
	c, err := hf.ReadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	r := &refModel{c: c, w: map[string][]float64{}, window: window}
	for _, name := range set.Names() {
		tt, _ := set.Tensor(name)
		v, err := tt.Float32()
		if err != nil {
			t.Fatal(err)
		}
		d := make([]float64, len(v))
		for i, x := range v {
			d[i] = float64(x)
		}
		r.w[name] = d
	}
	if r.window == nil {
		r.window = make([]int, c.NumHiddenLayers)
	}
	return r
}

func (r *refModel) get(name string) []float64 {
	v, ok := r.w[name]
	if !ok {
		panic("reference: missing tensor " + name)
	}
	return v
}

// linear computes W·x (+ b) for W [out, in] stored row-major.
func (r *refModel) linear(name string, x []float64, bias bool) []float64 {
	w := r.get(name + ".weight")
	in := len(x)
	out := make([]float64, len(w)/in)
	for o := range out {
		var s float64
		for i, xv := range x {
			s += w[o*in+i] * xv
		}
		out[o] = s
	}
	if bias {
		for o, b := range r.get(name + ".bias") {
			out[o] += b
		}
	}
	return out
}

func (r *refModel) rmsNorm(x []float64, name string) []float64 {
	w := r.get(name)
	var ss float64
	for _, v := range x {
		ss += v * v
	}
	inv := 1 / math.Sqrt(ss/float64(len(x))+r.c.RMSNormEps)
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = w[i] * v * inv
	}
	return out
}

// rotate applies rotary embeddings (rotate_half convention: the first half
// of the head pairs with the second) to one head vector at position pos.
func (r *refModel) rotate(v []float64, pos int) {
	d := len(v)
	for j := 0; j < d/2; j++ {
		freq := math.Pow(r.c.RopeTheta, -float64(2*j)/float64(d))
		ang := float64(pos) * freq
		cs, sn := math.Cos(ang), math.Sin(ang)
		a, b := v[j], v[j+d/2]
		v[j] = a*cs - b*sn
		v[j+d/2] = b*cs + a*sn
	}
}

func (r *refModel) ffn(prefix string, x []float64, names [3]string) []float64 {
	g := r.linear(prefix+names[0], x, false)
	u := r.linear(prefix+names[1], x, false)
	for i := range g {
		g[i] = g[i] / (1 + math.Exp(-g[i])) * u[i]
	}
	return r.linear(prefix+names[2], g, false)
}

// refOutput is what the reference computes for one sequence.
type refOutput struct {
	logits [][]float64 // [T][vocab]
	// experts[layer][t] are the chosen experts of token t, best first.
	experts map[int][][]int
}

// forward runs one sequence from position 0.
func (r *refModel) forward(ids []int) refOutput {
	c := r.c
	H, hd := c.HiddenSize, c.HeadDim
	nh, nkv := c.NumAttentionHeads, c.NumKeyValueHeads
	T := len(ids)
	// Qwen3 attention: q/k norm, and attention_bias on o_proj too.
	qwen3 := c.ModelType == hf.Qwen3 || c.ModelType == hf.Qwen3MoE
	emb := r.get(hf.EmbedTokens)
	x := make([][]float64, T)
	for t, id := range ids {
		x[t] = append([]float64(nil), emb[id*H:(id+1)*H]...)
	}
	out := refOutput{experts: map[int][][]int{}}
	for i := 0; i < c.NumHiddenLayers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		// Self-attention.
		q := make([][]float64, T)
		k := make([][]float64, T)
		v := make([][]float64, T)
		for t := range x {
			h := r.rmsNorm(x[t], p+"input_layernorm.weight")
			q[t] = r.linear(p+"self_attn.q_proj", h, c.QKVBias)
			k[t] = r.linear(p+"self_attn.k_proj", h, c.QKVBias)
			v[t] = r.linear(p+"self_attn.v_proj", h, c.QKVBias)
			if qwen3 {
				for a := 0; a < nh; a++ {
					copy(q[t][a*hd:(a+1)*hd], r.rmsNorm(q[t][a*hd:(a+1)*hd], p+"self_attn.q_norm.weight"))
				}
				for a := 0; a < nkv; a++ {
					copy(k[t][a*hd:(a+1)*hd], r.rmsNorm(k[t][a*hd:(a+1)*hd], p+"self_attn.k_norm.weight"))
				}
			}
			for a := 0; a < nh; a++ {
				r.rotate(q[t][a*hd:(a+1)*hd], t)
			}
			for a := 0; a < nkv; a++ {
				r.rotate(k[t][a*hd:(a+1)*hd], t)
			}
		}
		attn := make([][]float64, T)
		for t := 0; t < T; t++ {
			o := make([]float64, nh*hd)
			for a := 0; a < nh; a++ {
				kvh := a / (nh / nkv)
				first := 0
				if w := r.window[i]; w > 0 && t-w+1 > 0 {
					first = t - w + 1
				}
				scores := make([]float64, t+1-first)
				maxs := math.Inf(-1)
				for s := first; s <= t; s++ {
					var d float64
					for j := 0; j < hd; j++ {
						d += q[t][a*hd+j] * k[s][kvh*hd+j]
					}
					scores[s-first] = d / math.Sqrt(float64(hd))
					maxs = math.Max(maxs, scores[s-first])
				}
				var sum float64
				for j := range scores {
					scores[j] = math.Exp(scores[j] - maxs)
					sum += scores[j]
				}
				for s := first; s <= t; s++ {
					pw := scores[s-first] / sum
					for j := 0; j < hd; j++ {
						o[a*hd+j] += pw * v[s][kvh*hd+j]
					}
				}
			}
			attn[t] = r.linear(p+"self_attn.o_proj", o, qwen3 && c.QKVBias)
		}
		for t := range x {
			for j := range x[t] {
				x[t][j] += attn[t][j]
			}
		}
		// MLP or sparse block.
		for t := range x {
			h := r.rmsNorm(x[t], p+"post_attention_layernorm.weight")
			var y []float64
			if c.IsMoELayer(i) {
				var chosen []int
				y, chosen = r.moe(i, h)
				out.experts[i] = append(out.experts[i], chosen)
			} else {
				y = r.ffn(p+"mlp.", h, [3]string{"gate_proj", "up_proj", "down_proj"})
			}
			for j := range x[t] {
				x[t][j] += y[j]
			}
		}
	}
	head := hf.LMHead + ".weight"
	if c.TieWordEmbeddings {
		head = hf.EmbedTokens
	}
	w := r.get(head)
	for t := range x {
		h := r.rmsNorm(x[t], hf.FinalNorm)
		l := make([]float64, c.VocabSize)
		for vv := range l {
			for j := 0; j < H; j++ {
				l[vv] += w[vv*H+j] * h[j]
			}
		}
		out.logits = append(out.logits, l)
	}
	return out
}

// moe is the Qwen2-MoE / Mixtral sparse block for one token: softmax over
// all experts, top-k (ties to the lower index), renormalized when
// norm_topk_prob (always for Mixtral), plus the shared expert scaled by
// sigmoid(shared_expert_gate·x).
func (r *refModel) moe(layer int, h []float64) ([]float64, []int) {
	c := r.c
	p := fmt.Sprintf("model.layers.%d.mlp.", layer)
	names := [3]string{"gate_proj", "up_proj", "down_proj"}
	if c.ModelType == hf.Mixtral {
		p = fmt.Sprintf("model.layers.%d.block_sparse_moe.", layer)
		names = [3]string{"w1", "w3", "w2"}
	}
	logits := r.linear(p+"gate", h, false)
	maxl := math.Inf(-1)
	for _, v := range logits {
		maxl = math.Max(maxl, v)
	}
	probs := make([]float64, len(logits))
	var sum float64
	for e, v := range logits {
		probs[e] = math.Exp(v - maxl)
		sum += probs[e]
	}
	order := make([]int, len(probs))
	for e := range probs {
		probs[e] /= sum
		order[e] = e
	}
	sort.SliceStable(order, func(a, b int) bool { return probs[order[a]] > probs[order[b]] })
	top := order[:c.NumExpertsPerTok]
	norm := 1.0
	if c.NormTopKProb {
		norm = 0
		for _, e := range top {
			norm += probs[e]
		}
	}
	y := make([]float64, len(h))
	for _, e := range top {
		ye := r.ffn(fmt.Sprintf("%sexperts.%d.", p, e), h, names)
		for j := range y {
			y[j] += probs[e] / norm * ye[j]
		}
	}
	if c.ModelType == hf.Qwen2MoE && c.SharedExpertIntermediateSize > 0 {
		ys := r.ffn(p+"shared_expert.", h, [3]string{"gate_proj", "up_proj", "down_proj"})
		g := r.linear(p+"shared_expert_gate", h, false)[0]
		s := 1 / (1 + math.Exp(-g))
		for j := range y {
			y[j] += s * ys[j]
		}
	}
	return y, append([]int(nil), top...)
}
