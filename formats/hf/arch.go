package hf

import "fmt"

// archSpec is what differs between architectures: how their config keys are
// read and written, and how their tensors are named.
type archSpec struct {
	className string // architectures[0] for a freshly converted config
	parse     func(c *Config, p *parser)
	marshal   func(c *Config, set func(string, any))
	// moePrefix is the module path of the sparse block of layer i, with a trailing dot.
	moePrefix func(layer int) string
	// expertProj maps a canonical projection to the architecture's module name.
	expertProj func(p Proj) string
}

var archs = map[Arch]*archSpec{
	Qwen2:    qwen2Spec,
	Qwen2MoE: qwen2MoESpec,
	Mixtral:  mixtralSpec,
}

// Proj names the three projections of a SwiGLU FFN: down(silu(gate x) ⊙ up x).
type Proj string

// The projections of a SwiGLU FFN, by their Qwen names.
const (
	GateProj Proj = "gate_proj"
	UpProj   Proj = "up_proj"
	DownProj Proj = "down_proj"
)

// FFNProjs lists the projections in the order gate, up, down.
var FFNProjs = []Proj{GateProj, UpProj, DownProj}

// LinearKind classifies the linear layers of a decoder.
type LinearKind int

// The kinds of linear layers.
const (
	KindAttention LinearKind = iota
	KindMLP                  // dense MLP projection
	KindExpert               // routed expert projection
	KindSharedExpert
	KindRouter           // mlp.gate: [num_experts, hidden]
	KindSharedExpertGate // mlp.shared_expert_gate: [1, hidden]
	KindLMHead
)

// Linear describes one linear layer: weight [Out, In] stored as Name+".weight"
// (or GPTQ tensors Name+".qweight" …), bias Name+".bias" when Bias is set.
type Linear struct {
	Name    string
	Out, In int
	Bias    bool
	Kind    LinearKind
	Layer   int // decoder layer, -1 for lm_head
	Expert  int // routed expert index, -1 otherwise
	Proj    Proj
}

// TensorSpec is a tensor a checkpoint of the config must hold.
type TensorSpec struct {
	Name  string
	Shape []int
}

// LayerPrefix is "model.layers.i.".
func LayerPrefix(i int) string { return fmt.Sprintf("model.layers.%d.", i) }

// Attention projection names.
const (
	QProj = "q_proj"
	KProj = "k_proj"
	VProj = "v_proj"
	OProj = "o_proj"
)

// AttnLinear is the module path of an attention projection of layer i.
func AttnLinear(layer int, proj string) string {
	return LayerPrefix(layer) + "self_attn." + proj
}

// MLPLinear is the module path of a dense MLP projection of layer i.
func MLPLinear(layer int, p Proj) string { return LayerPrefix(layer) + "mlp." + string(p) }

// RouterLinear is the module path of the router of MoE layer i.
func (c *Config) RouterLinear(layer int) string { return archs[c.ModelType].moePrefix(layer) + "gate" }

// ExpertLinear is the module path of one projection of a routed expert.
func (c *Config) ExpertLinear(layer, expert int, p Proj) string {
	s := archs[c.ModelType]
	return fmt.Sprintf("%sexperts.%d.%s", s.moePrefix(layer), expert, s.expertProj(p))
}

// FusedExpertTensors returns the names of the fused expert tensors of a
// layer (transformers 5.x layout): gate_up_proj [E, 2I, H] (gate rows first)
// and down_proj [E, H, I].
func (c *Config) FusedExpertTensors(layer int) (gateUp, down string) {
	p := archs[c.ModelType].moePrefix(layer)
	return p + "experts.gate_up_proj", p + "experts.down_proj"
}

// SharedExpertLinear is the module path of a shared-expert projection.
func (c *Config) SharedExpertLinear(layer int, p Proj) string {
	return LayerPrefix(layer) + "mlp.shared_expert." + string(p)
}

// SharedExpertGateLinear is the module path of the shared expert's gate [1, H].
func (c *Config) SharedExpertGateLinear(layer int) string {
	return LayerPrefix(layer) + "mlp.shared_expert_gate"
}

// Names of the non-linear tensors.
const (
	EmbedTokens = "model.embed_tokens.weight"
	FinalNorm   = "model.norm.weight"
	LMHead      = "lm_head"
)

// InputNorm is the pre-attention RMSNorm weight of layer i.
func InputNorm(layer int) string { return LayerPrefix(layer) + "input_layernorm.weight" }

// PostAttentionNorm is the pre-MLP RMSNorm weight of layer i.
func PostAttentionNorm(layer int) string {
	return LayerPrefix(layer) + "post_attention_layernorm.weight"
}

// HasSharedExpert reports whether MoE layers have a shared expert.
func (c *Config) HasSharedExpert() bool {
	return c.ModelType == Qwen2MoE && c.SharedExpertIntermediateSize > 0
}

// LayerLinears lists the linear layers of decoder layer i in forward order:
// q, k, v, o, then the MLP (dense projections, or router, shared expert, its
// gate, and every expert's gate, up, down).
func (c *Config) LayerLinears(i int) []Linear {
	h, hd := c.HiddenSize, c.HeadDim
	ls := []Linear{
		{Name: AttnLinear(i, QProj), Out: c.NumAttentionHeads * hd, In: h, Bias: c.QKVBias, Kind: KindAttention},
		{Name: AttnLinear(i, KProj), Out: c.NumKeyValueHeads * hd, In: h, Bias: c.QKVBias, Kind: KindAttention},
		{Name: AttnLinear(i, VProj), Out: c.NumKeyValueHeads * hd, In: h, Bias: c.QKVBias, Kind: KindAttention},
		{Name: AttnLinear(i, OProj), Out: h, In: c.NumAttentionHeads * hd, Kind: KindAttention},
	}
	ffn := func(name func(Proj) string, width int, kind LinearKind, expert int) {
		for _, p := range FFNProjs {
			l := Linear{Name: name(p), Out: width, In: h, Kind: kind, Expert: expert, Proj: p}
			if p == DownProj {
				l.Out, l.In = h, width
			}
			ls = append(ls, l)
		}
	}
	if !c.IsMoELayer(i) {
		ffn(func(p Proj) string { return MLPLinear(i, p) }, c.IntermediateSize, KindMLP, -1)
	} else {
		ls = append(ls, Linear{Name: c.RouterLinear(i), Out: c.NumExperts, In: h, Kind: KindRouter, Expert: -1})
		if c.HasSharedExpert() {
			ffn(func(p Proj) string { return c.SharedExpertLinear(i, p) }, c.SharedExpertIntermediateSize, KindSharedExpert, -1)
			ls = append(ls, Linear{Name: c.SharedExpertGateLinear(i), Out: 1, In: h, Kind: KindSharedExpertGate, Expert: -1})
		}
		for e := 0; e < c.NumExperts; e++ {
			ffn(func(p Proj) string { return c.ExpertLinear(i, e, p) }, c.MoEIntermediateSize, KindExpert, e)
		}
	}
	for k := range ls {
		ls[k].Layer = i
		if ls[k].Kind == KindAttention {
			ls[k].Expert = -1
		}
	}
	return ls
}

// Tensors lists every tensor a float checkpoint of this config holds, in the
// per-expert layout transformers writes: embeddings, then per layer norms,
// attention and MLP, then the final norm and lm_head (absent when tied).
func (c *Config) Tensors() []TensorSpec {
	h := c.HiddenSize
	ts := []TensorSpec{{EmbedTokens, []int{c.VocabSize, h}}}
	for i := 0; i < c.NumHiddenLayers; i++ {
		ts = append(ts, TensorSpec{InputNorm(i), []int{h}}, TensorSpec{PostAttentionNorm(i), []int{h}})
		for _, l := range c.LayerLinears(i) {
			ts = append(ts, TensorSpec{l.Name + ".weight", []int{l.Out, l.In}})
			if l.Bias {
				ts = append(ts, TensorSpec{l.Name + ".bias", []int{l.Out}})
			}
		}
	}
	ts = append(ts, TensorSpec{FinalNorm, []int{h}})
	if !c.TieWordEmbeddings {
		ts = append(ts, TensorSpec{LMHead + ".weight", []int{c.VocabSize, h}})
	}
	return ts
}

// ParamCounts returns the number of parameters of the model and the number
// used per token (routed experts counted num_experts_per_tok of
// num_experts; embeddings, lm_head and router counted in full, as published
// figures do). It needs the config only.
func (c *Config) ParamCounts() (total, active int64) {
	for _, t := range c.Tensors() {
		n := int64(1)
		for _, d := range t.Shape {
			n *= int64(d)
		}
		total += n
		active += n
	}
	if c.IsMoE() {
		var perExpert int64 = 3 * int64(c.HiddenSize) * int64(c.MoEIntermediateSize)
		layers := int64(len(c.MoELayers()))
		active -= layers * perExpert * int64(c.NumExperts-c.NumExpertsPerTok)
	}
	return total, active
}
