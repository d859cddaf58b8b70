package hf

import (
	"encoding/json"
	"fmt"
)

// archSpec is everything that differs between architectures, in one place
// for the whole project: how config keys are read and written, how tensors
// are named, and the forward-pass rules (biases, q/k norm, shared expert,
// routing normalization, sliding window) that package model applies through
// the Config methods below. One file per architecture fills one entry.
type archSpec struct {
	className string // architectures[0] for a freshly converted config
	// moe is set for architectures with routed experts.
	moe bool
	// sharedExpert: MoE layers may have a shared expert behind a sigmoid
	// gate (shared_expert_intermediate_size > 0).
	sharedExpert bool
	// qkNorm: an RMSNorm of width head_dim over each head of q and k,
	// before rope (self_attn.q_norm / k_norm).
	qkNorm bool
	// upcycleTo is the MoE architecture a dense one is upcycled into ("" for
	// MoE architectures).
	upcycleTo Arch
	parse     func(c *Config, p *parser)
	marshal   func(c *Config, set func(string, any))
	// moePrefix is the module path of the sparse block of layer i in the
	// per-expert layout, with a trailing dot; fusedPrefix the one of the
	// fused layout (mlp. for every architecture in transformers 5), which
	// also holds the router there.
	moePrefix   func(layer int) string
	fusedPrefix func(layer int) string
	// expertProj maps a canonical projection to the architecture's module name.
	expertProj func(p Proj) string
	// window is layer i's attention window when sliding_window is set (the
	// caller handles SlidingWindow ≤ 0).
	window func(c *Config, layer int) int
	// expertsKey and expertWidthKey name the config keys of the number and
	// width of the routed experts ("" = num_experts, moe_intermediate_size).
	expertsKey, expertWidthKey string
}

// archs is the table: one entry per architecture, each filled in its own
// file. It is set in init because the specs' functions read it back.
var archs map[Arch]*archSpec

func init() {
	archs = map[Arch]*archSpec{
		Qwen2:    qwen2Spec,
		Qwen2MoE: qwen2MoESpec,
		Mixtral:  mixtralSpec,
		Qwen3:    qwen3Spec,
		Qwen3MoE: qwen3MoESpec,
	}
}

// archNames lists the known model_type values, for error messages.
const archNames = "qwen2, qwen2_moe, mixtral, qwen3, qwen3_moe"

// mlpPrefix is "model.layers.i.mlp.", the sparse block of the Qwen
// architectures and of every fused layout.
func mlpPrefix(layer int) string { return LayerPrefix(layer) + "mlp." }

// qwenExpertProj: Qwen experts use the projection names as they are.
func qwenExpertProj(p Proj) string { return string(p) }

// everyLayerWindow: the window, when set, applies to every layer.
func everyLayerWindow(c *Config, _ int) int { return c.SlidingWindow }

// qwenLayerWindow is the Qwen2/Qwen3 rule for sliding-window attention (when
// use_sliding_window turned it on): the layers that layer_types marks
// "sliding_attention", or, without layer_types, layers i ≥
// max_window_layers (default 28).
func qwenLayerWindow(c *Config, i int) int {
	if raw, ok := c.Raw("layer_types"); ok {
		var types []string
		if json.Unmarshal(raw, &types) == nil && len(types) == c.NumHiddenLayers {
			if types[i] == "sliding_attention" {
				return c.SlidingWindow
			}
			return 0
		}
	}
	first := 28
	if raw, ok := c.Raw("max_window_layers"); ok {
		json.Unmarshal(raw, &first)
	}
	if i >= first {
		return c.SlidingWindow
	}
	return 0
}

// parseExperts reads the number of routed experts from num_experts or
// num_local_experts (transformers 5 writes the latter for the Qwen MoE
// architectures through its attribute map) and remembers which key held it.
func parseExperts(c *Config, p *parser) {
	_, hasE := p.present("num_experts")
	_, hasL := p.present("num_local_experts")
	switch {
	case hasE && hasL:
		e, l := p.int("num_experts", 0), p.int("num_local_experts", 0)
		if e != l && p.err == nil {
			p.err = fmt.Errorf("config has num_experts=%d and num_local_experts=%d: they name the same number", e, l)
		}
		c.NumExperts, c.expertsKeyName = e, "num_experts"
	case hasL:
		c.NumExperts, c.expertsKeyName = p.int("num_local_experts", 0), "num_local_experts"
	default:
		c.NumExperts, c.expertsKeyName = p.requiredInt("num_experts"), "num_experts"
	}
}

// marshalExperts writes the number of experts under the key it was read
// from, and under the other one too when the file had both (so that a
// conversion that changes the count cannot leave them disagreeing).
func marshalExperts(c *Config, set func(string, any)) {
	set(c.expertsKey(), c.NumExperts)
	for _, k := range []string{"num_experts", "num_local_experts"} {
		if _, ok := c.raw[k]; ok {
			set(k, c.NumExperts)
		}
	}
}

// parseQwenMoE reads the keys Qwen2-MoE and Qwen3-MoE share.
func parseQwenMoE(c *Config, p *parser) {
	parseExperts(c, p)
	c.NumExpertsPerTok = p.requiredInt("num_experts_per_tok")
	c.MoEIntermediateSize = p.requiredInt("moe_intermediate_size")
	c.NormTopKProb = p.bool("norm_topk_prob", false)
	c.DecoderSparseStep = p.int("decoder_sparse_step", 1)
	c.MLPOnlyLayers = p.ints("mlp_only_layers")
}

// marshalQwenMoE writes the keys Qwen2-MoE and Qwen3-MoE share.
func marshalQwenMoE(c *Config, set func(string, any)) {
	marshalExperts(c, set)
	set("num_experts_per_tok", c.NumExpertsPerTok)
	set("moe_intermediate_size", c.MoEIntermediateSize)
	set("norm_topk_prob", c.NormTopKProb)
	set("decoder_sparse_step", c.DecoderSparseStep)
	layers := c.MLPOnlyLayers
	if layers == nil {
		layers = []int{}
	}
	set("mlp_only_layers", layers)
}

// parseSlidingWindow: sliding_window counts only when use_sliding_window is true.
func parseSlidingWindow(c *Config, p *parser) {
	if p.bool("use_sliding_window", false) {
		c.SlidingWindow = p.int("sliding_window", 0)
	}
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

// FusedRouterLinear is where the fused layout keeps the router (mixtral:
// mlp.gate instead of block_sparse_moe.gate; the same path elsewhere).
// Checkpoint.Tensor finds the router under either name.
func (c *Config) FusedRouterLinear(layer int) string {
	return archs[c.ModelType].fusedPrefix(layer) + "gate"
}

// ExpertLinear is the module path of one projection of a routed expert.
func (c *Config) ExpertLinear(layer, expert int, p Proj) string {
	s := archs[c.ModelType]
	return fmt.Sprintf("%sexperts.%d.%s", s.moePrefix(layer), expert, s.expertProj(p))
}

// FusedExpertTensors returns the names of the fused expert tensors of a
// layer (transformers 5.x layout, mlp.experts for every architecture):
// gate_up_proj [E, 2I, H] (per expert its gate rows, then its up rows) and
// down_proj [E, H, I].
func (c *Config) FusedExpertTensors(layer int) (gateUp, down string) {
	p := archs[c.ModelType].fusedPrefix(layer)
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

// QNorm and KNorm are the per-head RMSNorm weights [head_dim] of q and k
// in layer i (architectures with HasQKNorm).
func QNorm(layer int) string { return LayerPrefix(layer) + "self_attn.q_norm.weight" }

// KNorm is the per-head RMSNorm weight of k in layer i; see QNorm.
func KNorm(layer int) string { return LayerPrefix(layer) + "self_attn.k_norm.weight" }

// LayerNorms lists the norm weights of decoder layer i: input and
// post-attention norms [hidden], then q_norm and k_norm [head_dim] where
// the architecture has them.
func (c *Config) LayerNorms(i int) []TensorSpec {
	ts := []TensorSpec{{InputNorm(i), []int{c.HiddenSize}}, {PostAttentionNorm(i), []int{c.HiddenSize}}}
	if c.HasQKNorm() {
		ts = append(ts, TensorSpec{QNorm(i), []int{c.HeadDim}}, TensorSpec{KNorm(i), []int{c.HeadDim}})
	}
	return ts
}

// HasSharedExpert reports whether MoE layers have a shared expert.
func (c *Config) HasSharedExpert() bool {
	return c.ModelType.HasSharedExpertSlot() && c.SharedExpertIntermediateSize > 0
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
		{Name: AttnLinear(i, OProj), Out: h, In: c.NumAttentionHeads * hd, Bias: c.OProjBias, Kind: KindAttention},
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
		ts = append(ts, c.LayerNorms(i)...)
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
