package chattemplate

import (
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
