package hf

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/moeforge/moeforge/formats/gptq"
)

// ignoreRaw compares Configs by their typed fields.
var ignoreRaw = cmpopts.IgnoreUnexported(Config{})

// TestParseConfigFixtures parses every config shipped in testdata and
// compares all typed fields with what transformers would use.
func TestParseConfigFixtures(t *testing.T) {
	qwen2MoETiny := Config{
		ModelType: Qwen2MoE, Architectures: []string{"Qwen2MoeForCausalLM"},
		HiddenSize: 64, IntermediateSize: 128, NumHiddenLayers: 3, NumAttentionHeads: 4, NumKeyValueHeads: 4,
		HeadDim: 16, RMSNormEps: 1e-6, VocabSize: 1024, HiddenAct: "silu", RopeTheta: 1e6,
		MaxPositionEmbeddings: 512, QKVBias: true, DType: "float32",
		NumExperts: 16, NumExpertsPerTok: 4, MoEIntermediateSize: 32, SharedExpertIntermediateSize: 128,
		DecoderSparseStep: 1, MLPOnlyLayers: []int{},
	}
	sharded := qwen2MoETiny
	sharded.DType = "bfloat16"
	moeSmall := Config{
		ModelType: Qwen2MoE, Architectures: []string{"Qwen2MoeForCausalLM"},
		HiddenSize: 256, IntermediateSize: 1024, NumHiddenLayers: 3, NumAttentionHeads: 4, NumKeyValueHeads: 4,
		HeadDim: 64, RMSNormEps: 1e-6, VocabSize: 1024, HiddenAct: "silu", RopeTheta: 1e6,
		MaxPositionEmbeddings: 1024, QKVBias: true, DType: "bfloat16",
		NumExperts: 16, NumExpertsPerTok: 4, MoEIntermediateSize: 128, SharedExpertIntermediateSize: 256,
		DecoderSparseStep: 1, MLPOnlyLayers: []int{},
	}
	a60 := moeSmall
	a60.NumExperts, a60.MoEIntermediateSize = 60, 64
	cases := []struct {
		path string
		want Config
	}{
		{"fixtures/mixtral_tiny/model/config.json", Config{
			ModelType: Mixtral, Architectures: []string{"MixtralForCausalLM"},
			HiddenSize: 64, IntermediateSize: 96, NumHiddenLayers: 2, NumAttentionHeads: 4, NumKeyValueHeads: 2,
			HeadDim: 16, RMSNormEps: 1e-5, VocabSize: 1024, HiddenAct: "silu", RopeTheta: 1e6,
			MaxPositionEmbeddings: 512, QKVBias: false, DType: "float32",
			NumExperts: 8, NumExpertsPerTok: 2, MoEIntermediateSize: 96, NormTopKProb: true, DecoderSparseStep: 1,
		}},
		{"fixtures/qwen2_dense_tiny/model/config.json", Config{
			ModelType: Qwen2, Architectures: []string{"Qwen2ForCausalLM"},
			HiddenSize: 64, IntermediateSize: 256, NumHiddenLayers: 3, NumAttentionHeads: 4, NumKeyValueHeads: 2,
			HeadDim: 16, RMSNormEps: 1e-6, VocabSize: 1024, TieWordEmbeddings: true, HiddenAct: "silu", RopeTheta: 1e6,
			MaxPositionEmbeddings: 512, QKVBias: true, DType: "float32",
		}},
		{"fixtures/qwen2_moe_tiny/model/config.json", qwen2MoETiny},
		{"fixtures/qwen2_moe_tiny_sharded/model/config.json", sharded},
		{"models/qwen2_dense_small/config.json", Config{
			ModelType: Qwen2, Architectures: []string{"Qwen2ForCausalLM"},
			HiddenSize: 256, IntermediateSize: 1024, NumHiddenLayers: 3, NumAttentionHeads: 4, NumKeyValueHeads: 2,
			HeadDim: 64, RMSNormEps: 1e-6, VocabSize: 1024, HiddenAct: "silu", RopeTheta: 1e6,
			MaxPositionEmbeddings: 1024, QKVBias: true, DType: "bfloat16",
		}},
		{"models/qwen2_moe_small/config.json", moeSmall},
		{"models/qwen2_moe_a60/config.json", a60},
		{"fixtures/configs/qwen1.5-moe-a2.7b.json", Config{
			ModelType: Qwen2MoE, Architectures: []string{"Qwen2MoeForCausalLM"},
			HiddenSize: 2048, IntermediateSize: 5632, NumHiddenLayers: 24, NumAttentionHeads: 16, NumKeyValueHeads: 16,
			HeadDim: 128, RMSNormEps: 1e-6, VocabSize: 151936, HiddenAct: "silu", RopeTheta: 1e6,
			MaxPositionEmbeddings: 8192, QKVBias: true, DType: "bfloat16",
			NumExperts: 60, NumExpertsPerTok: 4, MoEIntermediateSize: 1408, SharedExpertIntermediateSize: 5632,
			DecoderSparseStep: 1,
		}},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			got, err := ReadConfig(testdataPath(t, c.path))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(&c.want, got, ignoreRaw); diff != "" {
				t.Errorf("-want +got:\n%s", diff)
			}
		})
	}
	// ReadConfig also takes the directory holding config.json.
	c, err := ReadConfig(testdataPath(t, "fixtures/qwen2_moe_tiny/model"))
	if err != nil || c.NumExperts != 16 {
		t.Errorf("ReadConfig(dir) = %+v, %v", c, err)
	}
}

// tinyQwen2 is a minimal dense config, edited by the tests below.
func tinyQwen2() map[string]any {
	return map[string]any{
		"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
		"num_attention_heads": 4, "vocab_size": 100,
	}
}

// tinyQwen2MoE is a minimal Qwen2-MoE config.
func tinyQwen2MoE() map[string]any {
	m := tinyQwen2()
	m["model_type"] = "qwen2_moe"
	m["num_experts"] = 8
	m["num_experts_per_tok"] = 2
	m["moe_intermediate_size"] = 32
	return m
}

// tinyMixtral is a minimal Mixtral config.
func tinyMixtral() map[string]any {
	m := tinyQwen2()
	m["model_type"] = "mixtral"
	m["num_local_experts"] = 8
	m["num_experts_per_tok"] = 2
	return m
}

func parseMap(t *testing.T, m map[string]any) (*Config, error) {
	t.Helper()
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return ParseConfig(data)
}

func mustParseMap(t *testing.T, m map[string]any) *Config {
	t.Helper()
	c, err := parseMap(t, m)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// marshalKeys marshals c and returns its top-level keys with their raw values.
func marshalKeys(t *testing.T, c *Config) map[string]json.RawMessage {
	t.Helper()
	data, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("Marshal wrote invalid JSON: %v\n%s", err, data)
	}
	return m
}

func compact(t *testing.T, raw []byte) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestHeadDim: absent and null mean hidden/heads; an explicit value wins;
// Marshal writes back what was read.
func TestHeadDim(t *testing.T) {
	cases := []struct {
		name    string
		value   any // nil with set: null
		set     bool
		want    int
		written string // "" = key absent
	}{
		{"absent", nil, false, 16, ""},
		{"null", nil, true, 16, "null"},
		{"explicit", 32, true, 32, "32"},
		{"explicit default", 16, true, 16, "16"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := tinyQwen2()
			if c.set {
				m["head_dim"] = c.value
			}
			cfg := mustParseMap(t, m)
			if cfg.HeadDim != c.want {
				t.Errorf("HeadDim = %d, want %d", cfg.HeadDim, c.want)
			}
			raw, ok := marshalKeys(t, cfg)["head_dim"]
			if got := string(raw); ok != (c.written != "") || got != c.written {
				t.Errorf("Marshal wrote head_dim %q (present %v), want %q", got, ok, c.written)
			}
		})
	}
	// A head_dim set by a caller (not read) is written.
	cfg := mustParseMap(t, tinyQwen2())
	cfg.HeadDim = 8
	if got := string(marshalKeys(t, cfg)["head_dim"]); got != "8" {
		t.Errorf("changed head_dim written as %q", got)
	}
}

// TestRopeTheta: transformers 4.x files have a top-level rope_theta,
// 5.x files rope_parameters.rope_theta; Marshal keeps the key where it was.
func TestRopeTheta(t *testing.T) {
	cases := []struct {
		name      string
		edit      func(m map[string]any)
		want      float64
		topLevel  bool
		nestedOut bool
	}{
		{"default", func(m map[string]any) {}, 10000, true, false},
		{"top level", func(m map[string]any) { m["rope_theta"] = 500000.0 }, 5e5, true, false},
		{"rope_parameters", func(m map[string]any) {
			m["rope_parameters"] = map[string]any{"rope_theta": 2e6, "rope_type": "default"}
		}, 2e6, false, true},
		{"rope_parameters without theta", func(m map[string]any) {
			m["rope_parameters"] = map[string]any{"rope_type": "default"}
			m["rope_theta"] = 1e6
		}, 1e6, true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := tinyQwen2()
			c.edit(m)
			cfg := mustParseMap(t, m)
			if cfg.RopeTheta != c.want {
				t.Errorf("RopeTheta = %g, want %g", cfg.RopeTheta, c.want)
			}
			cfg.RopeTheta = 123456
			keys := marshalKeys(t, cfg)
			_, top := keys["rope_theta"]
			if top != c.topLevel {
				t.Errorf("top-level rope_theta written: %v, want %v", top, c.topLevel)
			}
			if c.nestedOut {
				var rp map[string]any
				json.Unmarshal(keys["rope_parameters"], &rp)
				if rp["rope_theta"] != 123456.0 || rp["rope_type"] != "default" {
					t.Errorf("rope_parameters written as %s", keys["rope_parameters"])
				}
			}
			back, err := ParseConfig(mustMarshal(t, cfg))
			if err != nil || back.RopeTheta != 123456 {
				t.Errorf("re-parsed rope theta %v, %v", back, err)
			}
		})
	}
}

func mustMarshal(t *testing.T, c *Config) []byte {
	t.Helper()
	data, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestDTypeKey: "dtype" (5.x) or "torch_dtype" (4.x), written back under the same key.
func TestDTypeKey(t *testing.T) {
	for _, key := range []string{"dtype", "torch_dtype"} {
		m := tinyQwen2()
		m[key] = "bfloat16"
		cfg := mustParseMap(t, m)
		if cfg.DType != "bfloat16" {
			t.Errorf("%s: DType = %q", key, cfg.DType)
		}
		cfg.DType = "float16"
		keys := marshalKeys(t, cfg)
		if string(keys[key]) != `"float16"` {
			t.Errorf("%s: written as %s", key, keys[key])
		}
		other := map[string]string{"dtype": "torch_dtype", "torch_dtype": "dtype"}[key]
		if _, ok := keys[other]; ok {
			t.Errorf("%s: Marshal added %s", key, other)
		}
	}
	m := tinyQwen2()
	m["dtype"] = "float32"
	m["torch_dtype"] = "bfloat16"
	if cfg := mustParseMap(t, m); cfg.DType != "float32" {
		t.Errorf("dtype and torch_dtype: DType = %q, want the 5.x key's float32", cfg.DType)
	}
}

// TestDefaults: keys whose absence has a meaning.
func TestDefaults(t *testing.T) {
	cfg := mustParseMap(t, tinyQwen2MoE())
	if cfg.NumKeyValueHeads != 4 {
		t.Errorf("num_key_value_heads absent: %d, want num_attention_heads=4", cfg.NumKeyValueHeads)
	}
	if !cfg.QKVBias {
		t.Error("qwen2_moe qkv_bias absent: want true")
	}
	if cfg.DecoderSparseStep != 1 || cfg.NormTopKProb || cfg.SharedExpertIntermediateSize != 0 || cfg.HasSharedExpert() {
		t.Errorf("MoE defaults: %+v", cfg)
	}
	if cfg.RMSNormEps != 1e-6 || cfg.HiddenAct != "silu" || cfg.TieWordEmbeddings || cfg.MaxPositionEmbeddings != 32768 {
		t.Errorf("defaults: %+v", cfg)
	}
	m := tinyQwen2MoE()
	m["qkv_bias"] = false
	m["num_key_value_heads"] = 2
	cfg = mustParseMap(t, m)
	if cfg.QKVBias || cfg.NumKeyValueHeads != 2 {
		t.Errorf("explicit qkv_bias=false, kv heads 2: %v, %d", cfg.QKVBias, cfg.NumKeyValueHeads)
	}
	if l := cfg.LayerLinears(0); l[0].Bias || l[1].Bias || l[2].Bias {
		t.Error("qkv_bias=false but q/k/v have biases")
	}
	if cfg := mustParseMap(t, tinyQwen2()); !cfg.QKVBias {
		t.Error("qwen2: q/k/v always have a bias")
	}
	if cfg := mustParseMap(t, tinyMixtral()); cfg.QKVBias || cfg.MoEIntermediateSize != 128 || !cfg.NormTopKProb {
		t.Errorf("mixtral: %+v", cfg)
	}
	m = tinyQwen2()
	m["use_sliding_window"] = true
	m["sliding_window"] = 4096
	if cfg := mustParseMap(t, m); cfg.SlidingWindow != 4096 {
		t.Errorf("sliding window: %d", cfg.SlidingWindow)
	}
}

// typedKeys are the config keys Marshal writes from typed fields.
var typedKeys = map[string]bool{
	"model_type": true, "architectures": true, "hidden_size": true, "intermediate_size": true,
	"num_hidden_layers": true, "num_attention_heads": true, "num_key_value_heads": true, "head_dim": true,
	"rms_norm_eps": true, "vocab_size": true, "tie_word_embeddings": true, "hidden_act": true,
	"max_position_embeddings": true, "rope_parameters": true, "rope_theta": true, "dtype": true,
	"torch_dtype": true, "quantization_config": true, "qkv_bias": true, "num_experts": true,
	"num_experts_per_tok": true, "moe_intermediate_size": true, "shared_expert_intermediate_size": true,
	"norm_topk_prob": true, "decoder_sparse_step": true, "mlp_only_layers": true, "num_local_experts": true,
}

// TestMarshalRoundTrip: parse → Marshal → parse gives the same config, no
// key is lost, and keys moeforge does not interpret come back byte for byte.
func TestMarshalRoundTrip(t *testing.T) {
	paths := []string{"fixtures/configs/qwen1.5-moe-a2.7b.json"}
	for _, ck := range checkpoints {
		paths = append(paths, filepath.Join(ck, "config.json"))
	}
	custom := `"x_custom": {"b": [1, 2.50, "\u00e9<&>"], "a": 1E+2, "c": null}`
	for _, p := range paths {
		t.Run(p, func(t *testing.T) {
			orig, err := os.ReadFile(testdataPath(t, p))
			if err != nil {
				t.Fatal(err)
			}
			// Add an unknown key whose formatting a decode/encode cycle would change.
			orig = append([]byte("{"+custom+","), bytes.TrimPrefix(bytes.TrimSpace(orig), []byte("{"))...)
			a, err := ParseConfig(orig)
			if err != nil {
				t.Fatal(err)
			}
			out := mustMarshal(t, a)
			if !bytes.HasSuffix(out, []byte("}\n")) || !bytes.Contains(out, []byte("\n  \"hidden_size\": ")) {
				t.Errorf("not written as transformers writes (two-space indent, newline at end):\n%s", out)
			}
			b, err := ParseConfig(out)
			if err != nil {
				t.Fatalf("re-parse: %v\n%s", err, out)
			}
			if diff := cmp.Diff(a, b, ignoreRaw, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("round trip changed the config (-before +after):\n%s", diff)
			}
			var before, after map[string]json.RawMessage
			json.Unmarshal(orig, &before)
			json.Unmarshal(out, &after)
			for k, v := range before {
				w, ok := after[k]
				if !ok {
					t.Errorf("key %s lost", k)
					continue
				}
				if !typedKeys[k] && compact(t, v) != compact(t, w) {
					t.Errorf("unknown key %s changed: %s → %s", k, v, w)
				}
			}
			if got := compact(t, after["x_custom"]); got != `{"b":[1,2.50,"\u00e9<&>"],"a":1E+2,"c":null}` {
				t.Errorf("x_custom written as %s", got)
			}
			// Marshal is deterministic.
			if again := mustMarshal(t, b); !bytes.Equal(again, out) {
				t.Errorf("second Marshal differs:\n%s\n%s", out, again)
			}
		})
	}
}

// TestMarshalQuantization: quantization_config round-trips, keys moeforge
// does not interpret inside it are kept, and clearing Quantization removes it.
func TestMarshalQuantization(t *testing.T) {
	m := tinyQwen2MoE()
	m["quantization_config"] = map[string]any{
		"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": true, "sym": true,
		"damp_percent": 0.01, "true_sequential": true, "static_groups": false, "checkpoint_format": "gptq",
		"model_file_base_name": "model", "meta": map[string]any{"quantizer": "x"},
	}
	cfg := mustParseMap(t, m)
	want := &gptq.Config{QuantMethod: "gptq", Bits: 4, GroupSize: 128, DescAct: true, Sym: true, DampPercent: 0.01,
		TrueSequential: true, CheckpointFormat: "gptq", ModelFileBaseName: "model"}
	if diff := cmp.Diff(want, cfg.Quantization); diff != "" {
		t.Fatal(diff)
	}
	cfg.Quantization.GroupSize = 32
	keys := marshalKeys(t, cfg)
	var q map[string]json.RawMessage
	json.Unmarshal(keys["quantization_config"], &q)
	if string(q["group_size"]) != "32" || string(q["model_file_base_name"]) != `"model"` || compact(t, q["meta"]) != `{"quantizer":"x"}` {
		t.Errorf("quantization_config written as %s", keys["quantization_config"])
	}
	back, err := ParseConfig(mustMarshal(t, cfg))
	if err != nil || back.Quantization == nil || back.Quantization.GroupSize != 32 {
		t.Errorf("re-parse: %+v, %v", back, err)
	}
	cfg.Quantization = nil
	if _, ok := marshalKeys(t, cfg)["quantization_config"]; ok {
		t.Error("quantization_config written for a float config")
	}
}

// TestConvertTo turns the dense fixture's config into a Qwen2-MoE one.
func TestConvertTo(t *testing.T) {
	c, err := ReadConfig(testdataPath(t, "fixtures/qwen2_dense_tiny/model/config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ConvertTo(Qwen2MoE); err != nil {
		t.Fatal(err)
	}
	c.NumExperts, c.NumExpertsPerTok, c.MoEIntermediateSize, c.SharedExpertIntermediateSize = 8, 2, 32, 64
	moe, err := ParseConfig(mustMarshal(t, c))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		ModelType: Qwen2MoE, Architectures: []string{"Qwen2MoeForCausalLM"},
		HiddenSize: 64, IntermediateSize: 256, NumHiddenLayers: 3, NumAttentionHeads: 4, NumKeyValueHeads: 2,
		HeadDim: 16, RMSNormEps: 1e-6, VocabSize: 1024, TieWordEmbeddings: true, HiddenAct: "silu", RopeTheta: 1e6,
		MaxPositionEmbeddings: 512, QKVBias: true, DType: "float32",
		NumExperts: 8, NumExpertsPerTok: 2, MoEIntermediateSize: 32, SharedExpertIntermediateSize: 64,
		DecoderSparseStep: 1, MLPOnlyLayers: []int{},
	}
	if diff := cmp.Diff(want, moe, ignoreRaw); diff != "" {
		t.Errorf("-want +got:\n%s", diff)
	}
	if !cmp.Equal(moe.MoELayers(), []int{0, 1, 2}) {
		t.Errorf("MoE layers %v", moe.MoELayers())
	}
	if v, ok := moe.Raw("layer_types"); !ok || !strings.Contains(string(v), "full_attention") {
		t.Error("unknown key layer_types lost in conversion")
	}
	if err := c.ConvertTo("llama"); err == nil || !strings.Contains(err.Error(), "llama") {
		t.Errorf("ConvertTo(llama): %v", err)
	}
}

// TestParseConfigErrors: every error names the key at fault, on one line.
func TestParseConfigErrors(t *testing.T) {
	edit := func(base func() map[string]any, f func(m map[string]any)) []byte {
		m := base()
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	cases := []struct {
		name string
		data []byte
		want []string
	}{
		{"not json", []byte("{"), []string{"not a JSON object"}},
		{"null", []byte("null"), []string{"not a JSON object"}},
		{"array", []byte("[1]"), []string{"not a JSON object"}},
		{"no model_type", edit(tinyQwen2, func(m map[string]any) { delete(m, "model_type") }), []string{"model_type"}},
		{"model_type not string", edit(tinyQwen2, func(m map[string]any) { m["model_type"] = 2 }), []string{"model_type"}},
		{"unknown architecture", edit(tinyQwen2, func(m map[string]any) { m["model_type"] = "llama" }), []string{`model_type="llama"`}},
		{"missing hidden_size", edit(tinyQwen2, func(m map[string]any) { delete(m, "hidden_size") }), []string{"missing required key hidden_size"}},
		{"null vocab_size", edit(tinyQwen2, func(m map[string]any) { m["vocab_size"] = nil }), []string{"vocab_size"}},
		{"string hidden_size", edit(tinyQwen2, func(m map[string]any) { m["hidden_size"] = "64" }), []string{"hidden_size", "integer"}},
		{"fractional layers", edit(tinyQwen2, func(m map[string]any) { m["num_hidden_layers"] = 2.5 }), []string{"num_hidden_layers"}},
		{"bool tie", edit(tinyQwen2, func(m map[string]any) { m["tie_word_embeddings"] = "yes" }), []string{"tie_word_embeddings", "true or false"}},
		{"eps string", edit(tinyQwen2, func(m map[string]any) { m["rms_norm_eps"] = "1e-6" }), []string{"rms_norm_eps", "number"}},
		{"eps zero", edit(tinyQwen2, func(m map[string]any) { m["rms_norm_eps"] = 0 }), []string{"rms_norm_eps"}},
		{"rope_theta zero", edit(tinyQwen2, func(m map[string]any) { m["rope_theta"] = 0 }), []string{"rope_theta=0", "positive"}},
		{"nested rope_theta negative", edit(tinyQwen2, func(m map[string]any) {
			m["rope_parameters"] = map[string]any{"rope_theta": -5, "rope_type": "default"}
		}), []string{"rope_parameters.rope_theta=-5", "positive"}},
		{"architectures", edit(tinyQwen2, func(m map[string]any) { m["architectures"] = "Qwen2ForCausalLM" }), []string{"architectures"}},
		{"head_dim", edit(tinyQwen2, func(m map[string]any) { m["head_dim"] = 1.5 }), []string{"head_dim"}},
		{"odd head_dim", edit(tinyQwen2, func(m map[string]any) { m["head_dim"] = 15 }), []string{"head_dim=15"}},
		{"zero heads", edit(tinyQwen2, func(m map[string]any) { m["num_attention_heads"] = 0 }), []string{"num_attention_heads"}},
		{"kv heads", edit(tinyQwen2, func(m map[string]any) { m["num_key_value_heads"] = 3 }), []string{"num_key_value_heads=3"}},
		{"hidden_act", edit(tinyQwen2, func(m map[string]any) { m["hidden_act"] = "gelu" }), []string{"hidden_act"}},
		{"rope theta type", edit(tinyQwen2, func(m map[string]any) { m["rope_theta"] = "1e6" }), []string{"rope_theta"}},
		{"rope_parameters type", edit(tinyQwen2, func(m map[string]any) { m["rope_parameters"] = 5 }), []string{"rope_parameters"}},
		{"nested rope theta", edit(tinyQwen2, func(m map[string]any) { m["rope_parameters"] = map[string]any{"rope_theta": "x"} }), []string{"rope_parameters.rope_theta"}},
		{"rope type", edit(tinyQwen2, func(m map[string]any) { m["rope_parameters"] = map[string]any{"rope_type": "yarn", "rope_theta": 1e6} }), []string{"rope_parameters.rope_type", "yarn"}},
		{"rope_scaling", edit(tinyQwen2, func(m map[string]any) { m["rope_scaling"] = map[string]any{"type": "linear"} }), []string{"rope_scaling"}},
		{"dtype type", edit(tinyQwen2, func(m map[string]any) { m["torch_dtype"] = 16 }), []string{"torch_dtype"}},
		{"absurd layers", edit(tinyQwen2, func(m map[string]any) { m["num_hidden_layers"] = 1 << 40 }), []string{"num_hidden_layers", "corrupted config"}},
		{"absurd experts", edit(tinyQwen2MoE, func(m map[string]any) { m["num_experts"] = 1 << 30 }), []string{"num_experts", "corrupted config"}},
		{"missing num_experts", edit(tinyQwen2MoE, func(m map[string]any) { delete(m, "num_experts") }), []string{"num_experts"}},
		{"missing moe width", edit(tinyQwen2MoE, func(m map[string]any) { delete(m, "moe_intermediate_size") }), []string{"moe_intermediate_size"}},
		{"zero moe width", edit(tinyQwen2MoE, func(m map[string]any) { m["moe_intermediate_size"] = 0 }), []string{"moe_intermediate_size=0"}},
		{"top-k > experts", edit(tinyQwen2MoE, func(m map[string]any) { m["num_experts_per_tok"] = 9 }), []string{"num_experts_per_tok=9", "num_experts=8"}},
		{"qkv_bias type", edit(tinyQwen2MoE, func(m map[string]any) { m["qkv_bias"] = 1 }), []string{"qkv_bias"}},
		{"sparse step", edit(tinyQwen2MoE, func(m map[string]any) { m["decoder_sparse_step"] = 0 }), []string{"decoder_sparse_step"}},
		{"mlp_only_layers type", edit(tinyQwen2MoE, func(m map[string]any) { m["mlp_only_layers"] = []string{"a"} }), []string{"mlp_only_layers"}},
		{"mlp_only_layers range", edit(tinyQwen2MoE, func(m map[string]any) { m["mlp_only_layers"] = []int{5} }), []string{"mlp_only_layers", "5"}},
		{"negative shared width", edit(tinyQwen2MoE, func(m map[string]any) { m["shared_expert_intermediate_size"] = -1 }), []string{"negative"}},
		{"mixtral experts", edit(tinyMixtral, func(m map[string]any) { delete(m, "num_local_experts") }), []string{"num_local_experts"}},
		{"mixtral top-k", edit(tinyMixtral, func(m map[string]any) { m["num_experts_per_tok"] = 0 }), []string{"num_experts_per_tok=0", "num_local_experts=8"}},
		{"quant method", edit(tinyQwen2MoE, func(m map[string]any) { m["quantization_config"] = map[string]any{"quant_method": "awq", "bits": 4} }), []string{"quant_method", "awq"}},
		{"quant bits", edit(tinyQwen2MoE, func(m map[string]any) { m["quantization_config"] = map[string]any{"quant_method": "gptq", "bits": 5} }), []string{"bits=5"}},
		{"quant format", edit(tinyQwen2MoE, func(m map[string]any) {
			m["quantization_config"] = map[string]any{"quant_method": "gptq", "bits": 4, "checkpoint_format": "marlin"}
		}), []string{"checkpoint_format", "marlin"}},
		{"quant dynamic regex", edit(tinyQwen2MoE, func(m map[string]any) {
			m["quantization_config"] = map[string]any{"quant_method": "gptq", "bits": 4, "dynamic": map[string]any{"+:(?=x)": map[string]any{"bits": 8}}}
		}), []string{"dynamic", "(?=x)"}},
		{"quant dynamic bits", edit(tinyQwen2MoE, func(m map[string]any) {
			m["quantization_config"] = map[string]any{"quant_method": "gptq", "bits": 4, "dynamic": map[string]any{"+:.*mlp": map[string]any{"bits": 6}}}
		}), []string{"dynamic", "bits=6"}},
		{"quant type", edit(tinyQwen2MoE, func(m map[string]any) { m["quantization_config"] = map[string]any{"quant_method": "gptq", "bits": "4"} }), []string{"quantization_config", "bits"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := ParseConfig(c.data)
			if err == nil {
				t.Fatalf("accepted: %+v", cfg)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans several lines: %q", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
		})
	}
	_, err := ReadConfig(filepath.Join(t.TempDir(), "none.json"))
	if err == nil || !os.IsNotExist(err) {
		t.Errorf("missing file: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "config.json")
	os.WriteFile(bad, []byte(`{"model_type": "qwen2"}`), 0o644)
	if _, err := ReadConfig(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("ReadConfig error does not name the file: %v", err)
	}
}

// TestSparseLayers: decoder_sparse_step and mlp_only_layers choose the MoE
// layers; the others get a dense MLP of intermediate_size.
func TestSparseLayers(t *testing.T) {
	m := tinyQwen2MoE()
	m["num_hidden_layers"] = 6
	m["decoder_sparse_step"] = 2
	m["mlp_only_layers"] = []int{1}
	m["shared_expert_intermediate_size"] = 48
	c := mustParseMap(t, m)
	if got := c.MoELayers(); !cmp.Equal(got, []int{3, 5}) {
		t.Fatalf("MoE layers %v, want [3 5]", got)
	}
	for i := 0; i < 6; i++ {
		ls := c.LayerLinears(i)
		kinds := map[LinearKind]int{}
		for _, l := range ls {
			kinds[l.Kind]++
			if l.Layer != i {
				t.Errorf("%s: Layer %d, want %d", l.Name, l.Layer, i)
			}
		}
		want := map[LinearKind]int{KindAttention: 4, KindMLP: 3}
		if c.IsMoELayer(i) {
			want = map[LinearKind]int{KindAttention: 4, KindRouter: 1, KindSharedExpert: 3, KindSharedExpertGate: 1, KindExpert: 3 * 8}
		}
		if !cmp.Equal(kinds, want) {
			t.Errorf("layer %d linears by kind %v, want %v", i, kinds, want)
		}
	}
	moe := c.LayerLinears(3)
	names := []string{moe[0].Name, moe[4].Name, moe[5].Name, moe[8].Name, moe[9].Name, moe[len(moe)-1].Name}
	want := []string{"model.layers.3.self_attn.q_proj", "model.layers.3.mlp.gate", "model.layers.3.mlp.shared_expert.gate_proj",
		"model.layers.3.mlp.shared_expert_gate", "model.layers.3.mlp.experts.0.gate_proj", "model.layers.3.mlp.experts.7.down_proj"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("linear order: %s", diff)
	}
	if l := moe[len(moe)-1]; l.Out != 64 || l.In != 32 || l.Expert != 7 || l.Proj != DownProj {
		t.Errorf("last expert down_proj: %+v", l)
	}
	total, active := c.ParamCounts()
	if want := int64(2 * 8 * 3 * 64 * 32 * 6 / 8); total-active != want {
		t.Errorf("inactive params %d, want %d (6 of 8 experts in 2 MoE layers)", total-active, want)
	}
}

// TestMixtralNames checks the Mixtral module names.
func TestMixtralNames(t *testing.T) {
	c := mustParseMap(t, tinyMixtral())
	if got := c.ExpertLinear(1, 3, GateProj); got != "model.layers.1.block_sparse_moe.experts.3.w1" {
		t.Error(got)
	}
	if got := c.ExpertLinear(1, 3, UpProj); got != "model.layers.1.block_sparse_moe.experts.3.w3" {
		t.Error(got)
	}
	if got := c.ExpertLinear(1, 3, DownProj); got != "model.layers.1.block_sparse_moe.experts.3.w2" {
		t.Error(got)
	}
	if got := c.RouterLinear(0); got != "model.layers.0.block_sparse_moe.gate" {
		t.Error(got)
	}
	// transformers 5 renames the block when it fuses Mixtral's experts
	// (conversion_mapping.py: block_sparse_moe.gate → mlp.gate, w1+w3 →
	// mlp.experts.gate_up_proj, w2 → mlp.experts.down_proj).
	gu, d := c.FusedExpertTensors(0)
	if gu != "model.layers.0.mlp.experts.gate_up_proj" || d != "model.layers.0.mlp.experts.down_proj" {
		t.Error(gu, d)
	}
	if got := c.FusedRouterLinear(0); got != "model.layers.0.mlp.gate" {
		t.Error(got)
	}
}

// TestParamCountsQwen15 checks the published figures of Qwen1.5-MoE-A2.7B
// (≈14.3 B parameters, ≈2.7 B active), within 1%.
func TestParamCountsQwen15(t *testing.T) {
	c, err := ReadConfig(testdataPath(t, "fixtures/configs/qwen1.5-moe-a2.7b.json"))
	if err != nil {
		t.Fatal(err)
	}
	total, active := c.ParamCounts()
	for _, x := range []struct {
		what      string
		got, want float64
	}{{"total", float64(total), 14.3e9}, {"active", float64(active), 2.7e9}} {
		if math.Abs(x.got/x.want-1) > 0.01 {
			t.Errorf("%s parameters %.4g, want %.4g ± 1%%", x.what, x.got, x.want)
		}
	}
	// The exact count, derived by hand: embeddings + lm_head + final norm, and
	// per layer attention (with q/k/v biases), two norms, router, shared
	// expert and its gate, 60 experts.
	h, v, e, i, s := int64(2048), int64(151936), int64(60), int64(1408), int64(5632)
	layer := 4*h*h + 3*h + 2*h + e*h + 3*h*s + h + e*3*h*i
	want := 2*v*h + h + 24*layer
	if total != want {
		t.Errorf("total %d, want %d", total, want)
	}
	if active != want-24*(e-4)*3*h*i {
		t.Errorf("active %d, want %d", active, want-24*(e-4)*3*h*i)
	}
}

func TestClone(t *testing.T) {
	c, err := ReadConfig(testdataPath(t, "fixtures/configs/qwen1.5-moe-a2.7b.json"))
	if err != nil {
		t.Fatal(err)
	}
	c.MLPOnlyLayers = []int{0}
	c.Quantization = &gptq.Config{QuantMethod: "gptq", Bits: 4}
	d := c.Clone()
	d.MLPOnlyLayers[0] = 1
	d.Architectures[0] = "X"
	d.Quantization.Bits = 8
	d.SetRaw("sliding_window", 7)
	if c.MLPOnlyLayers[0] != 0 || c.Architectures[0] != "Qwen2MoeForCausalLM" || c.Quantization.Bits != 4 {
		t.Error("Clone shares slices or pointers")
	}
	if v, _ := c.Raw("sliding_window"); string(v) != "32768" {
		t.Errorf("Clone shares raw keys: %s", v)
	}
	d.DeleteRaw("sliding_window")
	if _, ok := d.Raw("sliding_window"); ok {
		t.Error("DeleteRaw")
	}
}
