package chattemplate

import (
	"strings"
	"testing"
)

// TestExpressions: constructs real templates use, with what Python Jinja2
// 3.1.6 renders for them (trim_blocks, lstrip_blocks; checked with
// judges/jinja/render_jinja2.py's environment).
func TestExpressions(t *testing.T) {
	vars := map[string]Value{
		"items": []Value{"x", "y", "z"}, "s": "abcdef", "n": int64(7), "zero": int64(0), "bound": "B", "nothing": nil,
		"d": func() *Dict { d := NewDict(); d.Set("b", int64(2)); d.Set("a", int64(1)); return d }(),
	}
	for _, c := range []struct{ src, want string }{
		{"{{ s[1:] }}|{{ s[:2] }}|{{ s[:-1] }}|{{ s[-2:] }}|{{ s[::-1] }}|{{ s[4:2] }}|{{ s[10:] }}", "bcdef|ab|abcde|ef|fedcba||"},
		{"{{ items[1:] | length }} {{ items[-1] }} {{ items[::2] }}", "2 z ['x', 'z']"},
		{"{{ nope is defined }} {{ bound is defined }} {{ nope is not defined }} {{ nothing is none }}", "False True True True"},
		{"{{ n is number }} {{ s is string }} {{ d is mapping }} {{ items is iterable }} {{ n is odd }} {{ n is divisibleby 7 }}", "True True True True True True"},
		{"{{ 7 % 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 2 - 5 }} {{ 3 * 4 }} {{ -1 }} {{ 10 - -2 }} {{ 7 / 2 }} {{ 2 ** 10 }}", "1 3 -4 -3 12 -1 12 3.5 1024"},
		{"{{ nope or 'fb' }} {{ bound or 'fb' }} {{ zero or 'fb' }} {{ bound and 'last' }}", "fb B fb last"},
		{"{{ d | tojson }} {{ d.items() | list | length }} {{ (d | dictsort)[0][0] }} {{ d | tojson(indent=1) }}", "{\"b\": 2, \"a\": 1} 2 a {\n \"b\": 2,\n \"a\": 1\n}"},
		{"{{ -3 | abs }} {{ 1.0 }} {{ 1e20 }} {{ 0.0001 }} {{ 1/3 }}", "3 1.0 1e+20 0.0001 0.3333333333333333"},
		{"{{ '  a b  '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ '\\tx'.lstrip('\\n') }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}", "a b|a|\tx|['a', 'b', '', 'c']|['a', 'b']"},
		{"{% set ns = namespace(c=0) %}{% for x in items if x != 'y' %}{% set ns.c = ns.c + loop.index %}{% endfor %}{{ ns.c }}", "3"},
		{"{% for x in items %}{{ loop.index0 }}{{ loop.revindex }}{{ loop.first }}{% if loop.last %}!{% endif %}{% endfor %}", "03True12False21False!"},
		{"{% for k, v in d.items() %}{{ k }}={{ v }};{% else %}empty{% endfor %}{% for x in [] %}{% else %}none{% endfor %}", "b=2;a=1;none"},
		{"{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', punct='?') }}", "Hi A! Hi B?"},
		{"{% set x %}in{{ 1 + 1 }}{% endset %}[{{ x }}]", "[in2]"},
		{"{% for x in items %}{% if x == 'y' %}{% break %}{% endif %}{{ x }}{% endfor %}", "x"},
		{"{{ items | join('-') }} {{ items | map('upper') | list }} {{ [3, 1, 2] | sort }} {{ 'ab' ~ 1 ~ none }}", "x-y-z ['X', 'Y', 'Z'] [1, 2, 3] ab1None"},
		{"{{ 'yes' if n > 5 else 'no' }} {{ 'a' in 'cat' }} {{ 'q' not in items }} {{ 'b' in d }}", "yes True True True"},
		{"  {% if true %}\n    kept\n  {% endif %}\nend", "    kept\nend"},
		{"a {{- ' b ' -}} c {#- comment -#} d", "a b cd"},
		{"{{ \"it's\" }} {{ 'say \"hi\"' }} {{ ['it\\'s'] }}", "it's say \"hi\" [\"it's\"]"},
	} {
		tmpl, err := Compile(c.src)
		if err != nil {
			t.Errorf("%q: %v", c.src, err)
			continue
		}
		got, err := tmpl.Execute(vars)
		if err != nil {
			t.Errorf("%q: %v", c.src, err)
			continue
		}
		if got != c.want {
			t.Errorf("%q:\n got %q\nwant %q", c.src, got, c.want)
		}
	}
}

// TestTemplateErrors: bad templates and failing renders give errors that
// name the line; raise_exception's message comes through.
func TestTemplateErrors(t *testing.T) {
	for _, src := range []string{"{% if x %}", "{% for %}", "{{ x", "line1\n{{ x + }}", "{% endfor %}", "{% frobnicate %}", "{{ 'unterminated }}", "{# open"} {
		if _, err := Compile(src); err == nil {
			t.Errorf("%q compiled", src)
		}
	}
	if _, err := Compile("a\nb\n{% if %}"); err == nil || err.Error()[:6] != "line 3" {
		t.Errorf("error %v does not name line 3", err)
	}
	for src, want := range map[string]string{
		"{{ raise_exception('roles must alternate') }}": "raise_exception: roles must alternate",
		"{{ x.y }}":       "x is undefined",
		"{{ 1 + 'a' }}":   "unsupported operand",
		"{{ [] | frob }}": "unknown filter",
		"{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}": "nested too deep",
	} {
		tmpl, err := Compile(src)
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		_, err = tmpl.Execute(nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", src, err, want)
		}
	}
}
