package chattemplate

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzTemplate: any source either fails to compile with an error or
// renders (or fails) without panicking, on a small conversation.
func FuzzTemplate(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "templates", "*.jinja"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(string(b))
		}
	}
	for _, s := range []string{"{{ x }}", "{% for a, b in d.items() %}{{ a ~ b }}{% endfor %}", "{{ 'abc'[::-1] | upper }}",
		"{% macro m(x, y=2) %}{{ x + y }}{% endmacro %}{{ m(1) }}", "{% set ns = namespace(a=1) %}{% set ns.a = ns.a * 3 %}{{ ns.a }}",
		"{{ [1, 2.5, none, true, 'x'] | tojson(indent=2) }}", "{%- if a is not defined -%} u {%- elif b %}{% else %}{% endif %}", "{# c #}{% raw %}{{ %}{% endraw %}"} {
		f.Add(s)
	}
	msgs := Messages([]Message{{"system", "S"}, {"user", "Hi\n"}, {"assistant", "<think>\nx\n</think>\n\nyo"}, {"user", "again"}})
	f.Fuzz(func(t *testing.T, src string) {
		tmpl, err := Compile(src)
		if err != nil {
			return
		}
		c := &Chat{Template: tmpl, Tokens: map[string]string{"bos_token": "<s>", "eos_token": "</s>"}}
		c.Render(msgs, Options{AddGenerationPrompt: true})
	})
}

// FuzzFromJSON: the ordered JSON decoder never panics, and accepts exactly
// what encoding/json accepts.
func FuzzFromJSON(f *testing.F) {
	f.Add([]byte(`[{"role": "user", "content": "hi", "n": 1.5, "k": [1, null, true]}]`))
	f.Add([]byte(`{"a": {"b": {}}, "c": -0, "d": 1e400}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := FromJSON(data)
		if valid := json.Valid(data); valid != (err == nil) {
			t.Fatalf("json.Valid %v, FromJSON error %v", valid, err)
		}
	})
}
