package gptq

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDynamic(t *testing.T) {
	src := `{"-:model\\.layers\\.0\\..*": {}, "+:.*self_attn.*": {"bits": 8, "group_size": 64},
		".*shared_expert\\..*": {"bits": 8, "sym": false}, "+:.*": {"desc_act": true}}`
	d, err := ParseDynamic([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, r := range d {
		keys = append(keys, r.Key())
	}
	if diff := cmp.Diff([]string{`-:model\.layers\.0\..*`, "+:.*self_attn.*", `+:.*shared_expert\..*`, "+:.*"}, keys); diff != "" {
		t.Errorf("rule order (-want +got):\n%s", diff)
	}
	c := NewConfig(128, true, false, false, true, 0.01)
	c.Dynamic = d
	for _, tc := range []struct {
		name      string
		quantized bool
		bits      int
		group     int
		sym, act  bool
	}{
		{"model.layers.0.self_attn.q_proj", false, 4, 128, true, false}, // first rule wins
		{"model.layers.1.self_attn.q_proj", true, 8, 64, true, false},
		{"model.layers.10.mlp.shared_expert.down_proj", true, 8, 128, false, false},
		{"model.layers.1.mlp.experts.3.up_proj", true, 4, 128, true, true},
		{"xmodel.layers.0.mlp", true, 4, 128, true, true}, // re.match anchors at the start only
	} {
		m, ok := c.Module(tc.name)
		if ok != tc.quantized || (ok && (m.Bits != tc.bits || m.GroupSize != tc.group || m.Sym != tc.sym || m.DescAct != tc.act)) {
			t.Errorf("%s: quantized %v, %d-bit g%d sym %v act %v; want %v, %d g%d %v %v", tc.name, ok, m.Bits, m.GroupSize, m.Sym, m.DescAct,
				tc.quantized, tc.bits, tc.group, tc.sym, tc.act)
		}
	}
	if l, err := c.LayoutFor("model.layers.2.self_attn.o_proj"); err != nil || l.Bits != 8 {
		t.Errorf("LayoutFor: %v, %v", l, err)
	}
	// Round trip through quantize_config.json keeps the order and values.
	data, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var back Config
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c.Dynamic, back.Dynamic, cmp.Comparer(func(a, b Rule) bool {
		return a.Key() == b.Key() && cmp.Equal(a.Bits, b.Bits) && cmp.Equal(a.GroupSize, b.GroupSize) && cmp.Equal(a.Sym, b.Sym) && cmp.Equal(a.DescAct, b.DescAct)
	})); diff != "" {
		t.Errorf("dynamic after a round trip (-want +got):\n%s", diff)
	}
	last := -1
	for _, k := range []string{`"-:model\\.layers\\.0\\..*"`, `"+:.*self_attn.*"`, `"+:.*shared_expert\\..*"`, `"+:.*"`} {
		i := strings.Index(string(data), k)
		if i <= last {
			t.Errorf("quantize_config.json: rule %s not after the previous one:\n%s", k, data)
		}
		last = i
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
}

func TestDynamicErrors(t *testing.T) {
	for src, want := range map[string]string{
		`[]`:                          "JSON object",
		`{"+:(?=x)": {"bits": 8}}`:    "(?=x)",
		`{"+:.*": {"bits": "8"}}`:     "bits",
		`{"+:.*": {"damp": 0.1}}`:     `unknown field "damp"`,
		`{"-:.*": {"bits": 8}}`:       "takes no settings",
		`{"+:.*": {"bits": 8}} x`:     "trailing",
		`{"+:.*": {"bits": 8}`:        "dynamic",
		`{"+:.*": {"group_size": 0}}`: "", // parsed; Validate refuses
	} {
		d, err := ParseDynamic([]byte(src))
		if want == "" {
			c := NewConfig(128, true, false, false, true, 0.01)
			c.Dynamic = d
			if err != nil || c.Validate() == nil || !strings.Contains(c.Validate().Error(), "group_size=0") {
				t.Errorf("%s: parse %v, Validate %v", src, err, c.Validate())
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", src, err, want)
		}
	}
}
