// Package hf reads and writes Hugging Face checkpoint directories: config.json
// for the architectures moeforge knows (qwen2, qwen2_moe, mixtral), their
// tensor names (per-expert and fused expert layouts, GPTQ-quantized linears),
// and the non-weight files that travel with a checkpoint.
package hf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/moeforge/moeforge/formats/gptq"
	"github.com/moeforge/moeforge/formats/safetensors"
)

// Arch is a config.json model_type that moeforge knows.
type Arch string

// The supported architectures.
const (
	Qwen2    Arch = "qwen2"
	Qwen2MoE Arch = "qwen2_moe"
	Mixtral  Arch = "mixtral"
	Qwen3    Arch = "qwen3"
	Qwen3MoE Arch = "qwen3_moe"
)

// Config is a typed config.json. Fields hold the values transformers uses,
// defaults applied. Keys moeforge does not interpret are kept and written
// back unchanged by Marshal.
type Config struct {
	ModelType             Arch
	Architectures         []string
	HiddenSize            int
	IntermediateSize      int // dense MLP width (qwen2, dense layers of qwen2_moe); mixtral: expert width
	NumHiddenLayers       int
	NumAttentionHeads     int
	NumKeyValueHeads      int // absent → NumAttentionHeads
	HeadDim               int // absent or null → HiddenSize / NumAttentionHeads (qwen3: absent → 128, Qwen3Config's default)
	RMSNormEps            float64
	VocabSize             int
	TieWordEmbeddings     bool
	HiddenAct             string
	RopeTheta             float64
	MaxPositionEmbeddings int
	QKVBias               bool   // q/k/v projections have a bias (qwen2: always; qwen2_moe: qkv_bias, default true; mixtral: never; qwen3*: attention_bias, default false)
	OProjBias             bool   // o_proj has a bias (qwen3*: attention_bias; never otherwise)
	DType                 string // "dtype" (5.x) or "torch_dtype" (4.x), e.g. "bfloat16"
	SlidingWindow         int    // 0 = none; applied only when the architecture uses it

	// Mixture of experts (qwen2_moe, mixtral, qwen3_moe).
	NumExperts                   int // num_experts / num_local_experts
	NumExpertsPerTok             int
	MoEIntermediateSize          int // routed expert width (mixtral: intermediate_size)
	SharedExpertIntermediateSize int // 0 = no shared expert
	NormTopKProb                 bool
	DecoderSparseStep            int
	MLPOnlyLayers                []int

	// Quantization is the parsed quantization_config, nil for float checkpoints.
	Quantization *gptq.Config

	raw            map[string]json.RawMessage
	expertsKeyName string // the key NumExperts was read from
	ropeNested     bool   // rope theta lives in rope_parameters (transformers 5.x)
	dtypeKey       string
	headDimNull    bool
}

// mergeQuantization overlays q's keys on the quantization_config read from
// the file (raw, possibly nil), so that keys moeforge does not interpret
// (e.g. model_file_base_name, meta) are written back unchanged.
func mergeQuantization(q *gptq.Config, raw json.RawMessage) (map[string]json.RawMessage, error) {
	out := map[string]json.RawMessage{}
	if len(raw) > 0 {
		json.Unmarshal(raw, &out) // a non-object was rejected by ParseConfig; start afresh if so
		if out == nil {
			out = map[string]json.RawMessage{}
		}
	}
	b, err := q.MarshalQuantizationConfig()
	if err != nil {
		return nil, err
	}
	var typed map[string]json.RawMessage
	if err := json.Unmarshal(b, &typed); err != nil {
		return nil, err
	}
	if q.ModulesInBlock == nil {
		delete(out, "modules_in_block_to_quantize")
	}
	for k, v := range typed {
		out[k] = v
	}
	return out, nil
}

// ReadConfig parses dir/config.json, or path itself when it is a file.
func ReadConfig(path string) (*Config, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, "config.json")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, safetensors.Corrupt(path, err.Error())
	}
	return c, nil
}

// ParseConfig parses the content of a config.json.
func ParseConfig(data []byte) (*Config, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("config is not a JSON object: %v", err)
	}
	if raw == nil {
		return nil, fmt.Errorf("config is not a JSON object")
	}
	c := &Config{raw: raw}
	p := parser{raw: raw}
	mt := p.str("model_type", "")
	if p.err != nil {
		return nil, p.err
	}
	if mt == "" {
		return nil, fmt.Errorf("config has no model_type (want one of %s)", archNames)
	}
	c.ModelType = Arch(mt)
	spec, ok := archs[c.ModelType]
	if !ok {
		return nil, fmt.Errorf("unsupported architecture model_type=%q (moeforge knows %s)", mt, archNames)
	}
	c.Architectures = p.strs("architectures")
	c.HiddenSize = p.requiredInt("hidden_size")
	c.IntermediateSize = p.requiredInt("intermediate_size")
	c.NumHiddenLayers = p.requiredInt("num_hidden_layers")
	c.NumAttentionHeads = p.requiredInt("num_attention_heads")
	c.VocabSize = p.requiredInt("vocab_size")
	c.NumKeyValueHeads = p.int("num_key_value_heads", c.NumAttentionHeads)
	if p.isNull("head_dim") {
		c.headDimNull = true
	}
	if c.NumAttentionHeads > 0 {
		c.HeadDim = p.int("head_dim", c.HiddenSize/c.NumAttentionHeads)
	}
	c.RMSNormEps = p.float("rms_norm_eps", 1e-6)
	c.TieWordEmbeddings = p.bool("tie_word_embeddings", false)
	c.HiddenAct = p.str("hidden_act", "silu")
	c.MaxPositionEmbeddings = p.int("max_position_embeddings", 32768)
	c.RopeTheta = 10000
	if _, ok := raw["rope_theta"]; ok {
		c.RopeTheta = p.float("rope_theta", 10000)
	}
	if rp, ok := raw["rope_parameters"]; ok && !p.isNull("rope_parameters") {
		var params map[string]json.RawMessage
		if err := json.Unmarshal(rp, &params); err != nil {
			return nil, fmt.Errorf("rope_parameters: %v", err)
		}
		pp := parser{raw: params, prefix: "rope_parameters."}
		if _, ok := params["rope_theta"]; ok {
			c.RopeTheta = pp.float("rope_theta", c.RopeTheta)
			c.ropeNested = true
		}
		if t := pp.str("rope_type", "default"); t != "default" {
			return nil, fmt.Errorf("rope_parameters.rope_type=%q is not supported (only default rope)", t)
		}
		if pp.err != nil {
			return nil, pp.err
		}
	}
	if rs, ok := raw["rope_scaling"]; ok && string(rs) != "null" {
		return nil, fmt.Errorf("rope_scaling is not supported: %s", rs)
	}
	c.dtypeKey = "dtype"
	if _, ok := raw["dtype"]; !ok {
		if _, ok := raw["torch_dtype"]; ok {
			c.dtypeKey = "torch_dtype"
		}
	}
	c.DType = p.str(c.dtypeKey, "")
	if _, ok := raw["quantization_config"]; ok && !p.isNull("quantization_config") {
		var q gptq.Config
		if err := json.Unmarshal(raw["quantization_config"], &q); err != nil {
			return nil, fmt.Errorf("quantization_config: %v", err)
		}
		if _, err := q.Layout(); err != nil {
			return nil, fmt.Errorf("quantization_config.%w", err)
		}
		c.Quantization = &q
	}
	spec.parse(c, &p)
	if p.err != nil {
		return nil, p.err
	}
	if c.HiddenAct != "silu" {
		return nil, fmt.Errorf("hidden_act=%q is not supported (only silu)", c.HiddenAct)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Upper bounds on config values (see validate).
const (
	maxLayers  = 4096
	maxExperts = 16384
)

func (c *Config) validate() error {
	pos := []struct {
		name string
		v    int
	}{{"hidden_size", c.HiddenSize}, {"num_hidden_layers", c.NumHiddenLayers}, {"num_attention_heads", c.NumAttentionHeads},
		{"num_key_value_heads", c.NumKeyValueHeads}, {"head_dim", c.HeadDim}, {"vocab_size", c.VocabSize}}
	for _, f := range pos {
		if f.v <= 0 {
			return fmt.Errorf("%s=%d must be positive", f.name, f.v)
		}
	}
	// Sanity bounds far above any published model, so that a corrupted or
	// hostile config cannot make moeforge enumerate billions of tensors.
	if c.NumHiddenLayers > maxLayers {
		return fmt.Errorf("num_hidden_layers=%d exceeds %d: corrupted config?", c.NumHiddenLayers, maxLayers)
	}
	if c.NumExperts > maxExperts {
		return fmt.Errorf("%s=%d exceeds %d: corrupted config?", c.expertsKey(), c.NumExperts, maxExperts)
	}
	if c.NumAttentionHeads%c.NumKeyValueHeads != 0 {
		return fmt.Errorf("num_attention_heads=%d is not a multiple of num_key_value_heads=%d", c.NumAttentionHeads, c.NumKeyValueHeads)
	}
	if c.HeadDim%2 != 0 {
		return fmt.Errorf("head_dim=%d must be even for rotary embeddings", c.HeadDim)
	}
	if c.RMSNormEps <= 0 {
		return fmt.Errorf("rms_norm_eps=%g must be positive", c.RMSNormEps)
	}
	if !(c.RopeTheta > 0) { // 0 or less: every rotary frequency is Inf or NaN, and so are the logits
		key := "rope_theta"
		if c.ropeNested {
			key = "rope_parameters.rope_theta"
		}
		return fmt.Errorf("%s=%g must be positive", key, c.RopeTheta)
	}
	if c.IsMoE() {
		if c.NumExperts <= 0 || c.NumExpertsPerTok <= 0 || c.NumExpertsPerTok > c.NumExperts {
			return fmt.Errorf("num_experts_per_tok=%d must be in [1, %s=%d]", c.NumExpertsPerTok, c.expertsKey(), c.NumExperts)
		}
		if c.MoEIntermediateSize <= 0 {
			return fmt.Errorf("%s=%d (the expert width) must be positive", c.expertWidthKey(), c.MoEIntermediateSize)
		}
		if c.DecoderSparseStep <= 0 {
			return fmt.Errorf("decoder_sparse_step=%d must be positive", c.DecoderSparseStep)
		}
	}
	for _, l := range c.MLPOnlyLayers {
		if l < 0 || l >= c.NumHiddenLayers {
			return fmt.Errorf("mlp_only_layers lists layer %d, but the model has %d layers", l, c.NumHiddenLayers)
		}
	}
	if c.SharedExpertIntermediateSize < 0 || c.IntermediateSize < 0 {
		return fmt.Errorf("negative intermediate size")
	}
	return nil
}

// expertsKey is the config key holding the number of routed experts: the
// one it was read from, else the architecture's.
func (c *Config) expertsKey() string {
	if c.expertsKeyName != "" {
		return c.expertsKeyName
	}
	if k := archs[c.ModelType].expertsKey; k != "" {
		return k
	}
	return "num_experts"
}

// expertWidthKey is the config key holding the routed experts' width.
func (c *Config) expertWidthKey() string {
	if k := archs[c.ModelType].expertWidthKey; k != "" {
		return k
	}
	return "moe_intermediate_size"
}

// IsMoE reports whether the architecture has routed experts.
func (c *Config) IsMoE() bool { return archs[c.ModelType].moe }

// HasQKNorm reports whether attention normalizes each head of q and k
// (RMSNorm of width head_dim, weights QNorm/KNorm) before rope.
func (c *Config) HasQKNorm() bool { return archs[c.ModelType].qkNorm }

// HasSharedExpertSlot reports whether the architecture's MoE layers may
// have a shared expert (qwen2_moe); Config.HasSharedExpert whether a config
// fills it.
func (a Arch) HasSharedExpertSlot() bool {
	spec, ok := archs[a]
	return ok && spec.sharedExpert
}

// UpcycleTarget is the MoE architecture a dense one is upcycled into:
// qwen2 → qwen2_moe, qwen3 → qwen3_moe; false for MoE architectures.
func (c *Config) UpcycleTarget() (Arch, bool) {
	a := archs[c.ModelType].upcycleTo
	return a, a != ""
}

// LayerWindow is the attention window of decoder layer i: the number of
// most recent positions (its own included) a query sees, 0 for the whole
// causal context. Each architecture's rule is in its spec.
func (c *Config) LayerWindow(i int) int {
	if c.SlidingWindow <= 0 {
		return 0
	}
	return archs[c.ModelType].window(c, i)
}

// IsMoELayer reports whether decoder layer i has a sparse MoE block (else a
// dense MLP of width IntermediateSize): i ∉ mlp_only_layers and
// (i+1) % decoder_sparse_step == 0.
func (c *Config) IsMoELayer(i int) bool {
	if !c.IsMoE() {
		return false
	}
	if slices.Contains(c.MLPOnlyLayers, i) {
		return false
	}
	return (i+1)%c.DecoderSparseStep == 0
}

// MoELayers returns the indices of the MoE layers.
func (c *Config) MoELayers() []int {
	var l []int
	for i := 0; i < c.NumHiddenLayers; i++ {
		if c.IsMoELayer(i) {
			l = append(l, i)
		}
	}
	return l
}

// Clone returns a deep copy (raw keys included).
func (c *Config) Clone() *Config {
	d := *c
	d.Architectures = slices.Clone(c.Architectures)
	d.MLPOnlyLayers = slices.Clone(c.MLPOnlyLayers)
	if c.Quantization != nil {
		q := *c.Quantization
		q.ModulesInBlock = slices.Clone(q.ModulesInBlock)
		d.Quantization = &q
	}
	d.raw = make(map[string]json.RawMessage, len(c.raw))
	for k, v := range c.raw {
		d.raw[k] = slices.Clone(v)
	}
	return &d
}

// Raw returns the raw JSON value of key as read (or last set), if present.
func (c *Config) Raw(key string) (json.RawMessage, bool) {
	v, ok := c.raw[key]
	return v, ok
}

// SetRaw sets a key that has no typed field (kept verbatim by Marshal).
func (c *Config) SetRaw(key string, value any) error {
	b, err := json.Marshal(value)
	if err != nil {
		return err
	}
	if c.raw == nil {
		c.raw = map[string]json.RawMessage{}
	}
	c.raw[key] = b
	return nil
}

// DeleteRaw removes a key that has no typed field.
func (c *Config) DeleteRaw(key string) { delete(c.raw, key) }

// Marshal returns config.json content: the typed fields written under the
// keys of the architecture, every other key as it was read; sorted keys, two
// spaces of indentation, as transformers writes it.
func (c *Config) Marshal() ([]byte, error) {
	out := make(map[string]any, len(c.raw)+8)
	for k, v := range c.raw {
		out[k] = v
	}
	set := func(k string, v any) { out[k] = v }
	set("model_type", string(c.ModelType))
	if c.Architectures != nil {
		set("architectures", c.Architectures)
	}
	set("hidden_size", c.HiddenSize)
	set("intermediate_size", c.IntermediateSize)
	set("num_hidden_layers", c.NumHiddenLayers)
	set("num_attention_heads", c.NumAttentionHeads)
	set("num_key_value_heads", c.NumKeyValueHeads)
	if _, had := c.raw["head_dim"]; had || c.HeadDim != c.HiddenSize/c.NumAttentionHeads {
		if c.headDimNull && c.HeadDim == c.HiddenSize/c.NumAttentionHeads {
			set("head_dim", nil)
		} else {
			set("head_dim", c.HeadDim)
		}
	}
	set("rms_norm_eps", c.RMSNormEps)
	set("vocab_size", c.VocabSize)
	set("tie_word_embeddings", c.TieWordEmbeddings)
	set("hidden_act", c.HiddenAct)
	set("max_position_embeddings", c.MaxPositionEmbeddings)
	if c.ropeNested {
		var params map[string]any
		if rp, ok := c.raw["rope_parameters"]; ok {
			json.Unmarshal(rp, &params)
		}
		if params == nil {
			params = map[string]any{"rope_type": "default"}
		}
		params["rope_theta"] = c.RopeTheta
		set("rope_parameters", params)
	} else {
		set("rope_theta", c.RopeTheta)
	}
	if c.DType != "" {
		set(c.dtypeKey, c.DType)
	}
	if c.Quantization != nil {
		q, err := mergeQuantization(c.Quantization, c.raw["quantization_config"])
		if err != nil {
			return nil, err
		}
		set("quantization_config", q)
	} else {
		delete(out, "quantization_config")
	}
	archs[c.ModelType].marshal(c, set)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteFile writes config.json into dir.
func (c *Config) WriteFile(dir string) error {
	data, err := c.Marshal()
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644)
}

// ConvertTo changes the architecture of the config (e.g. qwen2 → qwen2_moe):
// the model type and architectures list change, keys of the old architecture
// that the new one does not have are kept as they are.
func (c *Config) ConvertTo(a Arch) error {
	spec, ok := archs[a]
	if !ok {
		return fmt.Errorf("unsupported architecture %q", a)
	}
	c.ModelType = a
	c.Architectures = []string{spec.className}
	if !spec.sharedExpert {
		c.SharedExpertIntermediateSize = 0
	}
	if c.IsMoE() && c.DecoderSparseStep == 0 {
		c.DecoderSparseStep = 1 // every layer sparse unless the caller says otherwise
	}
	return nil
}

// parser extracts typed values from raw JSON, remembering the first error.
type parser struct {
	raw    map[string]json.RawMessage
	prefix string
	err    error
}

func (p *parser) fail(key, want string, v json.RawMessage) {
	if p.err == nil {
		p.err = fmt.Errorf("config key %s%s=%s: want %s", p.prefix, key, v, want)
	}
}

func (p *parser) isNull(key string) bool {
	v, ok := p.raw[key]
	return ok && string(bytes.TrimSpace(v)) == "null"
}

func (p *parser) present(key string) (json.RawMessage, bool) {
	v, ok := p.raw[key]
	if !ok || p.isNull(key) {
		return nil, false
	}
	return v, true
}

func (p *parser) int(key string, def int) int {
	v, ok := p.present(key)
	if !ok {
		return def
	}
	var f float64
	if err := json.Unmarshal(v, &f); err != nil || f != float64(int(f)) {
		p.fail(key, "an integer", v)
		return def
	}
	return int(f)
}

func (p *parser) requiredInt(key string) int {
	if _, ok := p.present(key); !ok {
		if p.err == nil {
			p.err = fmt.Errorf("config is missing required key %s%s", p.prefix, key)
		}
		return 0
	}
	return p.int(key, 0)
}

func (p *parser) float(key string, def float64) float64 {
	v, ok := p.present(key)
	if !ok {
		return def
	}
	var f float64
	if err := json.Unmarshal(v, &f); err != nil {
		p.fail(key, "a number", v)
		return def
	}
	return f
}

func (p *parser) bool(key string, def bool) bool {
	v, ok := p.present(key)
	if !ok {
		return def
	}
	var b bool
	if err := json.Unmarshal(v, &b); err != nil {
		p.fail(key, "true or false", v)
		return def
	}
	return b
}

func (p *parser) str(key, def string) string {
	v, ok := p.present(key)
	if !ok {
		return def
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		p.fail(key, "a string", v)
		return def
	}
	return s
}

func (p *parser) strs(key string) []string {
	v, ok := p.present(key)
	if !ok {
		return nil
	}
	var s []string
	if err := json.Unmarshal(v, &s); err != nil {
		p.fail(key, "a list of strings", v)
	}
	return s
}

func (p *parser) ints(key string) []int {
	v, ok := p.present(key)
	if !ok {
		return nil
	}
	var s []int
	if err := json.Unmarshal(v, &s); err != nil {
		p.fail(key, "a list of integers", v)
	}
	return s
}
