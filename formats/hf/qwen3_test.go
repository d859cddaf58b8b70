package hf

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/formats/safetensors"
)

// tinyQwen3 is a minimal dense Qwen3 config.
func tinyQwen3() map[string]any {
	m := tinyQwen2()
	m["model_type"] = "qwen3"
	m["num_key_value_heads"] = 2
	return m
}

// tinyQwen3MoE is a minimal Qwen3-MoE config.
func tinyQwen3MoE() map[string]any {
	m := tinyQwen3()
	m["model_type"] = "qwen3_moe"
	m["num_experts"] = 8
	m["num_experts_per_tok"] = 2
	m["moe_intermediate_size"] = 32
	return m
}

// TestParamCountsQwen3_30B_A3B: the released Qwen3-30B-A3B config gives its
// published 30.5 B total / 3.3 B active parameters, exactly 30,532,122,624
// and 3,353,032,704 (every tensor counted, q_norm and k_norm included; active
// = total minus the 120 unselected experts of each of the 48 layers).
func TestParamCountsQwen3_30B_A3B(t *testing.T) {
	c, err := ReadConfig(testdataPath(t, "fixtures/configs/qwen3-30b-a3b.json"))
	if err != nil {
		t.Fatal(err)
	}
	total, active := c.ParamCounts()
	if total != 30_532_122_624 || active != 3_353_032_704 {
		t.Errorf("params %d total, %d active; want 30,532,122,624 and 3,353,032,704", total, active)
	}
	// The same by hand: h 2048, head_dim 128 (≠ h/heads = 64), 32 q / 4 kv
	// heads, 128 experts × 768, vocab 151936, untied.
	h, hd, v, e, i := int64(2048), int64(128), int64(151936), int64(128), int64(768)
	layer := h*32*hd*2 + 2*h*4*hd + 2*hd + 2*h + e*h + e*3*h*i
	if want := 2*v*h + h + 48*layer; total != want {
		t.Errorf("total %d, by hand %d", total, want)
	}
	if !c.HasQKNorm() || c.HasSharedExpert() || !c.NormTopKProb || c.QKVBias || c.OProjBias || c.HeadDim != 128 {
		t.Errorf("parsed %+v", c)
	}
	if got := len(c.MoELayers()); got != 48 {
		t.Errorf("%d MoE layers, want 48", got)
	}
	if c.LayerWindow(47) != 0 {
		t.Errorf("use_sliding_window false, but layer 47 has window %d", c.LayerWindow(47))
	}
}

// TestQwen3Defaults: keys absent from a config take the defaults of
// transformers' Qwen3Config / Qwen3MoeConfig, which differ from Qwen2's.
func TestQwen3Defaults(t *testing.T) {
	for _, tc := range []struct {
		name              string
		cfg               map[string]any
		headDim, kvHeads  int
		bias, norm, qknor bool
	}{
		// Qwen3Config: head_dim 128, num_key_value_heads 32 when absent.
		{"qwen3", without(tinyQwen3(), "num_key_value_heads", 32), 128, 32, false, false, true},
		// Qwen3MoeConfig has no head_dim field (modeling falls back to
		// hidden/heads); num_key_value_heads 4; norm_topk_prob false.
		{"qwen3_moe", without(tinyQwen3MoE(), "num_key_value_heads", 4), 16, 4, false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustParseMap(t, tc.cfg)
			if c.HeadDim != tc.headDim || c.NumKeyValueHeads != tc.kvHeads || c.QKVBias != tc.bias || c.NormTopKProb != tc.norm || c.HasQKNorm() != tc.qknor {
				t.Errorf("head_dim %d kv %d bias %v norm_topk %v qk_norm %v", c.HeadDim, c.NumKeyValueHeads, c.QKVBias, c.NormTopKProb, c.HasQKNorm())
			}
			// A null num_key_value_heads means as many as the heads.
			m := tc.cfg
			m["num_key_value_heads"] = nil
			if c := mustParseMap(t, m); c.NumKeyValueHeads != c.NumAttentionHeads {
				t.Errorf("null num_key_value_heads: %d, want %d", c.NumKeyValueHeads, c.NumAttentionHeads)
			}
		})
	}
}

// without deletes key from m and sets num_attention_heads.
func without(m map[string]any, key string, heads int) map[string]any {
	delete(m, key)
	m["num_attention_heads"] = heads
	return m
}

// TestQwen3Tensors: q_norm and k_norm [head_dim] per layer; attention_bias
// puts a bias on q, k, v and o_proj; no shared expert tensors in qwen3_moe.
func TestQwen3Tensors(t *testing.T) {
	m := tinyQwen3MoE()
	m["attention_bias"] = true
	m["head_dim"] = 8
	m["num_key_value_heads"] = 2
	m["mlp_only_layers"] = []int{1}
	c := mustParseMap(t, m)
	got := map[string][]int{}
	for _, ts := range c.Tensors() {
		got[ts.Name] = ts.Shape
	}
	for name, want := range map[string][]int{
		"model.layers.0.self_attn.q_norm.weight":         {8},
		"model.layers.1.self_attn.k_norm.weight":         {8},
		"model.layers.0.self_attn.q_proj.bias":           {32},
		"model.layers.0.self_attn.k_proj.bias":           {16},
		"model.layers.0.self_attn.o_proj.bias":           {64},
		"model.layers.0.self_attn.o_proj.weight":         {64, 32},
		"model.layers.0.mlp.gate.weight":                 {8, 64},
		"model.layers.0.mlp.experts.7.down_proj.weight":  {64, 32},
		"model.layers.1.mlp.gate_proj.weight":            {128, 64},
		"model.layers.0.input_layernorm.weight":          {64},
		"model.layers.1.post_attention_layernorm.weight": {64},
	} {
		if diff := cmp.Diff(want, got[name]); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	for name := range got {
		if strings.Contains(name, "shared_expert") {
			t.Errorf("qwen3_moe has no shared expert, but %s is listed", name)
		}
	}
	m["shared_expert_intermediate_size"] = 64 // not a Qwen3-MoE key: ignored
	if c := mustParseMap(t, m); c.HasSharedExpert() {
		t.Error("shared_expert_intermediate_size made a qwen3_moe shared expert")
	}
}

// TestQwen3MoEExpertKeys: num_local_experts (what transformers 5 writes
// through Qwen3MoeConfig's attribute map) is read like num_experts and
// written back under the key it came from; both keys must agree.
func TestQwen3MoEExpertKeys(t *testing.T) {
	m := tinyQwen3MoE()
	delete(m, "num_experts")
	m["num_local_experts"] = 6
	c := mustParseMap(t, m)
	if c.NumExperts != 6 {
		t.Fatalf("num_local_experts: %d experts", c.NumExperts)
	}
	keys := marshalKeys(t, c)
	if _, ok := keys["num_experts"]; ok {
		t.Error("marshal added num_experts")
	}
	if string(keys["num_local_experts"]) != "6" {
		t.Errorf("num_local_experts written as %s", keys["num_local_experts"])
	}
	m["num_experts"] = 7
	if _, err := parseMap(t, m); err == nil || !strings.Contains(err.Error(), "num_local_experts=6") {
		t.Errorf("disagreeing keys: %v", err)
	}
	delete(m, "num_local_experts")
	delete(m, "num_experts")
	if _, err := parseMap(t, m); err == nil || !strings.Contains(err.Error(), "num_experts") {
		t.Errorf("no expert count: %v", err)
	}
}

// TestQwen3SlidingWindow: qwen3 follows Qwen2's rule (layer_types, else
// layers ≥ max_window_layers); in qwen3_moe a set use_sliding_window
// applies the window to every layer; without use_sliding_window none.
func TestQwen3SlidingWindow(t *testing.T) {
	windows := func(c *Config) []int {
		var w []int
		for i := 0; i < c.NumHiddenLayers; i++ {
			w = append(w, c.LayerWindow(i))
		}
		return w
	}
	m := tinyQwen3()
	m["num_hidden_layers"] = 3
	m["sliding_window"] = 5
	if diff := cmp.Diff([]int{0, 0, 0}, windows(mustParseMap(t, m))); diff != "" {
		t.Errorf("qwen3 without use_sliding_window:\n%s", diff)
	}
	m["use_sliding_window"] = true
	m["max_window_layers"] = 1
	if diff := cmp.Diff([]int{0, 5, 5}, windows(mustParseMap(t, m))); diff != "" {
		t.Errorf("qwen3 max_window_layers:\n%s", diff)
	}
	m["layer_types"] = []string{"sliding_attention", "full_attention", "sliding_attention"}
	if diff := cmp.Diff([]int{5, 0, 5}, windows(mustParseMap(t, m))); diff != "" {
		t.Errorf("qwen3 layer_types:\n%s", diff)
	}
	m["model_type"] = "qwen3_moe"
	maps := tinyQwen3MoE()
	for k, v := range maps {
		if _, ok := m[k]; !ok {
			m[k] = v
		}
	}
	if diff := cmp.Diff([]int{5, 5, 5}, windows(mustParseMap(t, m))); diff != "" {
		t.Errorf("qwen3_moe:\n%s", diff)
	}
}

// TestQwen3RoundTrip: Marshal writes what Parse reads back unchanged.
func TestQwen3RoundTrip(t *testing.T) {
	for _, m := range []map[string]any{tinyQwen3(), tinyQwen3MoE()} {
		m["attention_bias"] = true
		m["mlp_only_layers"] = []int{0}
		c := mustParseMap(t, m)
		data, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		d, err := ParseConfig(data)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(c, d, cmp.AllowUnexported(Config{}), cmp.FilterPath(func(p cmp.Path) bool {
			return p.Last().String() == ".raw"
		}, cmp.Ignore())); diff != "" {
			t.Errorf("%s round trip (-before +after):\n%s", m["model_type"], diff)
		}
		var back map[string]any
		json.Unmarshal(data, &back)
		if back["head_dim"] == nil && c.HeadDim != c.HiddenSize/c.NumAttentionHeads {
			t.Errorf("head_dim %d not written", c.HeadDim)
		}
	}
}

// TestUpcycleTarget: the dense architectures name their MoE counterpart.
func TestUpcycleTarget(t *testing.T) {
	for _, tc := range []struct {
		cfg  map[string]any
		want Arch
		ok   bool
	}{{tinyQwen2(), Qwen2MoE, true}, {tinyQwen3(), Qwen3MoE, true}, {tinyQwen3MoE(), "", false}, {tinyMixtral(), "", false}} {
		got, ok := mustParseMap(t, tc.cfg).UpcycleTarget()
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: %q %v, want %q %v", tc.cfg["model_type"], got, ok, tc.want, tc.ok)
		}
	}
}

// TestQwen3MoEBothExpertKeysFollowConversions: a file with both
// num_experts and num_local_experts gets both updated when the count
// changes (as convert split does), so it still parses.
func TestQwen3MoEBothExpertKeysFollowConversions(t *testing.T) {
	m := tinyQwen3MoE()
	m["num_local_experts"] = 8
	c := mustParseMap(t, m)
	c.NumExperts = 16
	data, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	d, err := ParseConfig(data)
	if err != nil || d.NumExperts != 16 {
		t.Fatalf("re-parse: %v, %d experts", err, d.NumExperts)
	}
}

// zeroCheckpoint writes a checkpoint of config m with every tensor the
// config needs, zero-filled F32 (shapes are what these tests are about).
func zeroCheckpoint(t *testing.T, m map[string]any) string {
	t.Helper()
	c := mustParseMap(t, m)
	dir := t.TempDir()
	var ts []*safetensors.Tensor
	for _, s := range c.Tensors() {
		ts = append(ts, newTensor(t, s.Name, s.Shape...))
	}
	plan := make([]safetensors.Info, len(ts))
	for i, tt := range ts {
		plan[i] = safetensors.InfoOf(tt)
	}
	w, err := safetensors.NewDirWriter(dir, plan, safetensors.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range ts {
		if err := w.Write(tt.Name, tt.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteFile(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestQwen3CheckpointErrors: a missing or misshapen q_norm/k_norm or o_proj
// bias is an error naming the tensor and the config key; a q_norm in a
// qwen2 checkpoint is reported as unexpected.
func TestQwen3CheckpointErrors(t *testing.T) {
	m := tinyQwen3MoE()
	m["head_dim"], m["attention_bias"] = 8, true
	src := zeroCheckpoint(t, m)
	ck, err := Open(src)
	if err != nil {
		t.Fatal(err)
	}
	if len(ck.Unexpected) != 0 {
		t.Errorf("unexpected %v", ck.Unexpected)
	}
	ck.Close()
	for _, tc := range []struct {
		name string
		edit func([]*safetensors.Tensor) []*safetensors.Tensor
		want []string
	}{
		{"missing q_norm", replaceTensor(t, QNorm(1), nil), []string{QNorm(1), "missing"}},
		{"k_norm of hidden width", replaceTensor(t, KNorm(0), []int{64}), []string{KNorm(0), "[64]", "[8]", "head_dim=8"}},
		{"missing o_proj bias", replaceTensor(t, AttnLinear(0, OProj)+".bias", nil), []string{AttnLinear(0, OProj) + ".bias", "missing"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := rewriteCheckpoint(t, src, tc.edit)
			_, err := Open(dir)
			for _, w := range append(tc.want, dir) {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v does not mention %q", err, w)
				}
			}
		})
	}
	q2 := tinyQwen2()
	dense := rewriteCheckpoint(t, zeroCheckpoint(t, q2), func(ts []*safetensors.Tensor) []*safetensors.Tensor {
		return append(ts, newTensor(t, QNorm(0), 16))
	})
	ck, err = Open(dense)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	if diff := cmp.Diff([]string{QNorm(0)}, ck.Unexpected); diff != "" {
		t.Errorf("qwen2 with a q_norm: unexpected (-want +got):\n%s", diff)
	}
}
