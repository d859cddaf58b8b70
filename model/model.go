// Package model runs the forward pass of the architectures moeforge supports
// (Qwen2, Qwen2-MoE, Mixtral, Qwen3, Qwen3-MoE) on float32, float16,
// bfloat16 and GPTQ int4 checkpoints, in float32 with float64 reductions.
//
// What differs between architectures (biases, q/k norm, shared expert,
// routing normalization, which layers are sparse or windowed) is read from
// the config through formats/hf, whose architecture table is the one place
// those rules are written down; this package has no per-architecture code.
//
// Weights stay in the checkpoint's memory map in their stored type; every
// matrix product goes through internal/gemm, which widens them panel by
// panel. Tokens of all sequences of a batch are processed together as one
// [N, hidden] block; attention runs per sequence, MoE layers group tokens by
// expert and run one product per expert.
package model

import (
	"context"
	"fmt"
	"math"

	"github.com/moeforge/moeforge/formats/gptq"
	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/gemm"
)

// Linear is y = x·Wᵀ + b for a weight W [Out, In] in any stored form.
type Linear struct {
	Name string // module path, e.g. model.layers.0.self_attn.q_proj
	Spec hf.Linear
	W    gemm.Matrix
	Bias []float32 // nil when the layer has none
}

// Forward computes dst[rows, Out] = x[rows, In]·Wᵀ + b.
func (l *Linear) Forward(dst, x []float32, rows int) {
	gemm.MulT(dst, x, l.W, rows, false)
	if l.Bias != nil {
		out := l.W.Rows()
		for r := 0; r < rows; r++ {
			d := dst[r*out : (r+1)*out]
			for i, b := range l.Bias {
				d[i] += b
			}
		}
	}
}

// Out is the number of output features.
func (l *Linear) Out() int { return l.W.Rows() }

// In is the number of input features.
func (l *Linear) In() int { return l.W.Cols() }

// FFN is a SwiGLU feed-forward block: Down(silu(Gate x) ⊙ Up x). Dense MLPs,
// routed experts and shared experts are all FFNs.
type FFN struct {
	Gate, Up, Down *Linear
}

// Attention is grouped-query self-attention with rotary position embeddings.
// QNorm and KNorm, when set (Qwen3), are RMSNorm weights [head_dim] applied
// to every head of q and k before rope.
type Attention struct {
	Q, K, V, O   *Linear
	QNorm, KNorm []float32
}

// MoE is a sparse mixture-of-experts block: softmax router over all experts,
// top-k selection (renormalized when NormTopK), optional shared expert
// scaled by sigmoid(SharedGate·x).
type MoE struct {
	Router     *Linear
	Experts    []*FFN
	TopK       int
	NormTopK   bool
	Shared     *FFN    // nil when absent
	SharedGate *Linear // [1, hidden]; nil when absent
}

// Layer is one decoder layer: x += Attn(norm(x)); x += MLP(norm(x)).
type Layer struct {
	Index     int
	InputNorm []float32
	PostNorm  []float32
	Attn      *Attention
	MLP       *FFN // dense layers
	MoE       *MoE // sparse layers
	// SlidingWindow is the number of most recent positions (the token's own
	// included) each query attends to; 0 means the whole causal context.
	SlidingWindow int
}

// Model is a loaded causal language model.
type Model struct {
	Config     *hf.Config
	Embeddings gemm.Matrix // [vocab, hidden]
	Layers     []*Layer
	Norm       []float32
	LMHead     *Linear // tied models point at the embedding matrix

	rope *rope
	src  Source // set by Open, closed by Close
}

// Open opens the model at path — a Hugging Face checkpoint directory, or any
// other format a Source has been registered for (see RegisterFormat) — and
// loads it; Close releases the memory maps.
func Open(path string) (*Model, error) {
	src, err := OpenSource(path)
	if err != nil {
		return nil, err
	}
	m, err := LoadSource(src)
	if err != nil {
		src.Close()
		return nil, err
	}
	m.src = src
	return m, nil
}

// Close closes the checkpoint of a model made by Open (a no-op for Load:
// the caller owns that checkpoint).
func (m *Model) Close() error {
	if m.src == nil {
		return nil
	}
	err := m.src.Close()
	m.src = nil
	return err
}

// Load builds the model over the checkpoint's tensors. Matrices are not
// copied: they are read from the memory map when used. Checkpoint must stay
// open while the model is in use.
func Load(ck *hf.Checkpoint) (*Model, error) { return LoadSource(HFSource(ck)) }

// LoadSource builds the model over the tensors of src, which must stay open
// while the model is in use.
func LoadSource(src Source) (*Model, error) {
	c := src.Config()
	m := &Model{Config: c, rope: newRope(c.HeadDim, c.RopeTheta)}
	var err error
	if m.Embeddings, err = src.Matrix(hf.EmbedTokens); err != nil {
		return nil, err
	}
	if m.Norm, err = src.Vector(hf.FinalNorm); err != nil {
		return nil, err
	}
	if c.TieWordEmbeddings {
		m.LMHead = &Linear{Name: hf.LMHead, W: m.Embeddings,
			Spec: hf.Linear{Name: hf.LMHead, Out: c.VocabSize, In: c.HiddenSize, Kind: hf.KindLMHead, Layer: -1, Expert: -1}}
	} else {
		m.LMHead, err = loadLinear(src, hf.Linear{Name: hf.LMHead, Out: c.VocabSize, In: c.HiddenSize, Kind: hf.KindLMHead, Layer: -1, Expert: -1})
		if err != nil {
			return nil, err
		}
	}
	for i := 0; i < c.NumHiddenLayers; i++ {
		l, err := loadLayer(src, i)
		if err != nil {
			return nil, err
		}
		m.Layers = append(m.Layers, l)
	}
	return m, nil
}

func loadLayer(src Source, i int) (*Layer, error) {
	c := src.Config()
	l := &Layer{Index: i, SlidingWindow: c.LayerWindow(i)}
	var err error
	if l.InputNorm, err = src.Vector(hf.InputNorm(i)); err != nil {
		return nil, err
	}
	if l.PostNorm, err = src.Vector(hf.PostAttentionNorm(i)); err != nil {
		return nil, err
	}
	linears := map[string]*Linear{}
	var experts [][3]*Linear
	if c.IsMoELayer(i) {
		experts = make([][3]*Linear, c.NumExperts)
	}
	for _, spec := range c.LayerLinears(i) {
		lin, err := loadLinear(src, spec)
		if err != nil {
			return nil, err
		}
		if spec.Kind == hf.KindExpert {
			experts[spec.Expert][projIndex(spec.Proj)] = lin
		} else {
			linears[spec.Name] = lin
		}
	}
	l.Attn = &Attention{
		Q: linears[hf.AttnLinear(i, hf.QProj)], K: linears[hf.AttnLinear(i, hf.KProj)],
		V: linears[hf.AttnLinear(i, hf.VProj)], O: linears[hf.AttnLinear(i, hf.OProj)],
	}
	if c.HasQKNorm() {
		if l.Attn.QNorm, err = src.Vector(hf.QNorm(i)); err != nil {
			return nil, err
		}
		if l.Attn.KNorm, err = src.Vector(hf.KNorm(i)); err != nil {
			return nil, err
		}
	}
	if !c.IsMoELayer(i) {
		l.MLP = &FFN{Gate: linears[hf.MLPLinear(i, hf.GateProj)], Up: linears[hf.MLPLinear(i, hf.UpProj)], Down: linears[hf.MLPLinear(i, hf.DownProj)]}
		return l, nil
	}
	// Softmax routing over all experts, top-k renormalized when
	// norm_topk_prob (always for Mixtral: its parser sets it), plus the
	// shared expert where the architecture has one.
	l.MoE = &MoE{Router: linears[c.RouterLinear(i)], TopK: c.NumExpertsPerTok, NormTopK: c.NormTopKProb}
	if c.HasSharedExpert() {
		l.MoE.Shared = &FFN{
			Gate: linears[c.SharedExpertLinear(i, hf.GateProj)],
			Up:   linears[c.SharedExpertLinear(i, hf.UpProj)],
			Down: linears[c.SharedExpertLinear(i, hf.DownProj)],
		}
		l.MoE.SharedGate = linears[c.SharedExpertGateLinear(i)]
	}
	for _, e := range experts {
		l.MoE.Experts = append(l.MoE.Experts, &FFN{Gate: e[0], Up: e[1], Down: e[2]})
	}
	return l, nil
}

func projIndex(p hf.Proj) int {
	switch p {
	case hf.GateProj:
		return 0
	case hf.UpProj:
		return 1
	}
	return 2
}

// loadLinear wraps a linear layer's tensors as a Linear.
func loadLinear(src Source, spec hf.Linear) (*Linear, error) {
	w, bias, err := src.Linear(spec)
	if err != nil {
		return nil, err
	}
	if w.Rows() != spec.Out || w.Cols() != spec.In {
		return nil, fmt.Errorf("%s: matrix [%d %d], want [%d %d]", spec.Name, w.Rows(), w.Cols(), spec.Out, spec.In)
	}
	if bias != nil && len(bias) != spec.Out {
		return nil, fmt.Errorf("%s: bias of %d values, want %d", spec.Name, len(bias), spec.Out)
	}
	return &Linear{Name: spec.Name, Spec: spec, W: w, Bias: bias}, nil
}

// matrixOf views a 2-D float tensor as a gemm.Matrix without copying when
// its type and alignment allow it (F32, F16, BF16), else converts it.
func matrixOf(t *safetensors.Tensor) (gemm.Matrix, error) {
	if len(t.Shape) != 2 {
		return nil, fmt.Errorf("tensor %s: shape %v is not a matrix", t.Name, t.Shape)
	}
	n, k := t.Shape[0], t.Shape[1]
	switch t.DType {
	case safetensors.F32:
		if v, ok := t.F32View(); ok {
			return gemm.F32{Data: v, N: n, K: k}, nil
		}
	case safetensors.BF16:
		if v, ok := t.U16View(); ok {
			return gemm.BF16{Data: v, N: n, K: k}, nil
		}
	case safetensors.F16:
		if v, ok := t.U16View(); ok {
			return gemm.F16{Data: v, N: n, K: k}, nil
		}
	}
	v, err := t.Float32()
	if err != nil {
		return nil, err
	}
	return gemm.F32{Data: v, N: n, K: k}, nil
}

// int4Of reads a GPTQ linear through formats/gptq (the one reader and
// validator of the layout) with the layout its config gives the module
// (bits and checkpoint_format, after quantization_config.dynamic) and wraps
// its packed words for the products.
func int4Of(c *hf.Config, lw *hf.LinearWeights, spec hf.Linear) (gemm.Matrix, error) {
	lay := gptq.V1Int4
	if q := c.Quantization; q != nil {
		var err error
		if lay, err = q.LayoutFor(spec.Name); err != nil {
			return nil, fmt.Errorf("quantization_config.%w", err)
		}
	}
	p, err := lay.Read(spec.Name, spec.Out, spec.In, lw.GPTQ())
	if err != nil {
		return nil, err
	}
	return MatrixOf(p), nil
}

// MatrixOf wraps a packed GPTQ layer (validated, e.g. by gptq.Layout.Read)
// as the matrix the products dequantize: gemm.Int4 (SIMD) for 4 bits,
// gemm.GPTQ for 2, 3 and 8.
func MatrixOf(p *gptq.Packed) gemm.Matrix {
	if p.Layout.Bits == 4 {
		return gemm.Int4{QWeight: p.QWeight, QZeros: p.QZeros, Scales: p.Scales, GIdx: p.GIdx, N: p.Out, K: p.In,
			V2: p.Layout.ZeroOffset() == 0}
	}
	return gemm.GPTQ{Bits: p.Layout.Bits, ZeroOffset: int32(p.Layout.ZeroOffset()), QWeight: p.QWeight, QZeros: p.QZeros,
		Scales: p.Scales, GIdx: p.GIdx, N: p.Out, K: p.In}
}

// Linears returns every linear layer of the model in forward order, lm_head last.
func (m *Model) Linears() []*Linear {
	var ls []*Linear
	for _, l := range m.Layers {
		ls = append(ls, l.Linears()...)
	}
	return append(ls, m.LMHead)
}

// Linears returns the layer's linear layers in forward order: q, k, v, o,
// then the dense MLP, or router, shared expert, shared gate and experts.
func (l *Layer) Linears() []*Linear {
	ls := []*Linear{l.Attn.Q, l.Attn.K, l.Attn.V, l.Attn.O}
	ffn := func(f *FFN) { ls = append(ls, f.Gate, f.Up, f.Down) }
	if l.MLP != nil {
		ffn(l.MLP)
		return ls
	}
	ls = append(ls, l.MoE.Router)
	if l.MoE.Shared != nil {
		ffn(l.MoE.Shared)
		ls = append(ls, l.MoE.SharedGate)
	}
	for _, e := range l.MoE.Experts {
		ffn(e)
	}
	return ls
}

// Hooks observe the forward pass. Every field is optional. Hooks are called
// from the goroutine running the forward pass, one at a time.
type Hooks struct {
	// LinearInput receives the input rows of a linear layer just before it
	// is applied: x is [rows, l.In()]. Routed experts receive only the rows
	// of the tokens routed to them.
	LinearInput func(l *Linear, x []float32, rows int)
	// Routing receives, for an MoE layer, the router logits [N, E], and the
	// selected experts and their weights [N, K] (best first).
	Routing func(layer int, logits []float32, experts []int32, weights []float32)
	// Hidden receives the hidden state [N, hidden] after the embeddings
	// (index 0), after each layer i (index i+1; the last one after the final
	// norm, as transformers reports hidden_states).
	Hidden func(index int, h []float32)
}

// Batch is a set of token sequences processed together. Sequences are
// independent and start at position 0 (or after their cache's content).
type Batch struct {
	Seqs [][]int
	// Caches, when set, holds one KV cache per sequence (decoding).
	Caches []*KVCache
}

// NumTokens is the total number of tokens in the batch.
func (b *Batch) NumTokens() int {
	n := 0
	for _, s := range b.Seqs {
		n += len(s)
	}
	return n
}

// Embed looks up the embeddings of the batch's tokens: [N, hidden].
func (m *Model) Embed(b *Batch) ([]float32, error) {
	h := m.Config.HiddenSize
	x := make([]float32, b.NumTokens()*h)
	r := 0
	for _, s := range b.Seqs {
		for _, id := range s {
			if id < 0 || id >= m.Embeddings.Rows() {
				return nil, fmt.Errorf("token id %d out of range [0, %d)", id, m.Embeddings.Rows())
			}
			m.Embeddings.Widen(x[r*h:(r+1)*h], h, id, id+1, 0, h)
			r++
		}
	}
	return x, nil
}

// Hidden runs the model body: it returns the final hidden states [N, hidden]
// after the final norm.
func (m *Model) Hidden(ctx context.Context, b *Batch, hooks *Hooks) ([]float32, error) {
	if err := m.checkBatch(b); err != nil {
		return nil, err
	}
	x, err := m.Embed(b)
	if err != nil {
		return nil, err
	}
	if hooks != nil && hooks.Hidden != nil {
		hooks.Hidden(0, x)
	}
	for i, l := range m.Layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		m.ForwardLayer(l, x, b, hooks)
		if hooks != nil && hooks.Hidden != nil && i < len(m.Layers)-1 {
			hooks.Hidden(i+1, x)
		}
	}
	rmsNormRows(x, x, m.Norm, m.Config.HiddenSize, m.Config.RMSNormEps)
	if hooks != nil && hooks.Hidden != nil {
		hooks.Hidden(len(m.Layers), x)
	}
	for i, s := range b.Seqs {
		if b.Caches != nil {
			b.Caches[i].Len += len(s)
		}
	}
	return x, nil
}

// Logits runs the whole model: logits [N, vocab] for every token.
func (m *Model) Logits(ctx context.Context, b *Batch, hooks *Hooks) ([]float32, error) {
	x, err := m.Hidden(ctx, b, hooks)
	if err != nil {
		return nil, err
	}
	n := b.NumTokens()
	logits := make([]float32, n*m.Config.VocabSize)
	if hooks != nil && hooks.LinearInput != nil {
		hooks.LinearInput(m.LMHead, x, n)
	}
	m.LMHead.Forward(logits, x, n)
	return logits, nil
}

func (m *Model) checkBatch(b *Batch) error {
	if b.Caches != nil && len(b.Caches) != len(b.Seqs) {
		return fmt.Errorf("batch has %d sequences but %d caches", len(b.Seqs), len(b.Caches))
	}
	for i, s := range b.Seqs {
		pos := len(s)
		if b.Caches != nil {
			pos += b.Caches[i].Len
		}
		if max := m.Config.MaxPositionEmbeddings; max > 0 && pos > max {
			return fmt.Errorf("sequence %d reaches position %d, beyond max_position_embeddings=%d", i, pos, max)
		}
	}
	return nil
}

// ForwardLayer applies decoder layer l to the hidden states x [N, hidden] in place.
func (m *Model) ForwardLayer(l *Layer, x []float32, b *Batch, hooks *Hooks) {
	c := m.Config
	h := c.HiddenSize
	n := len(x) / h
	normed := make([]float32, n*h)
	rmsNormRows(normed, x, l.InputNorm, h, c.RMSNormEps)
	attn := m.attention(l, normed, b, hooks)
	for i := range x {
		x[i] += attn[i]
	}
	rmsNormRows(normed, x, l.PostNorm, h, c.RMSNormEps)
	var y []float32
	if l.MLP != nil {
		y = l.MLP.forward(normed, n, hooks)
	} else {
		y = l.MoE.forward(l.Index, normed, n, hooks)
	}
	for i := range x {
		x[i] += y[i]
	}
}

// RMSNorm writes w ⊙ x / sqrt(mean(x²) + eps) for every row of x [rows,
// len(w)] into dst (dst may be x): the layers' input and post-attention
// norms, for callers that run a layer's parts one at a time (quantize).
func RMSNorm(dst, x, w []float32, eps float64) { rmsNormRows(dst, x, w, len(w), eps) }

// FinalNorm applies the model's final RMS norm to hidden states x
// [N, hidden] in place: what lm_head takes as input.
func (m *Model) FinalNorm(x []float32) {
	rmsNormRows(x, x, m.Norm, m.Config.HiddenSize, m.Config.RMSNormEps)
}

// rmsNormRows writes w ⊙ x / sqrt(mean(x²) + eps) for every row (dst may be x).
func rmsNormRows(dst, x, w []float32, h int, eps float64) {
	for r := 0; r < len(x)/h; r++ {
		row := x[r*h : (r+1)*h]
		var ss float64
		for _, v := range row {
			ss += float64(v) * float64(v)
		}
		inv := float32(1 / math.Sqrt(ss/float64(h)+eps))
		out := dst[r*h : (r+1)*h]
		for i, v := range row {
			out[i] = w[i] * (v * inv)
		}
	}
}

func apply(l *Linear, x []float32, rows int, hooks *Hooks) []float32 {
	if hooks != nil && hooks.LinearInput != nil {
		hooks.LinearInput(l, x, rows)
	}
	y := make([]float32, rows*l.Out())
	l.Forward(y, x, rows)
	return y
}
