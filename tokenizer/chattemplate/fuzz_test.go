package chattemplate

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
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
	// encoding/json's depth limit: 10000 nested arrays are valid, 10001 not
	// (FromJSON accepted any depth, recursing once per level)
	f.Add([]byte(strings.Repeat("[", 10000) + strings.Repeat("]", 10000)))
	f.Add([]byte(`{"a":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + "}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := FromJSON(data)
		if valid := json.Valid(data); valid != (err == nil) {
			t.Fatalf("json.Valid %v, FromJSON error %v", valid, err)
		}
	})
}

// FuzzLoad feeds arbitrary tokenizer_config.json files to Load (no
// chat_template.jinja beside them). It must never panic; a template it
// loads renders (or fails with an error) on a small conversation.
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "tokenizers", "*", "tokenizer_config.json"))
	more, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "fixtures", "*", "model", "tokenizer_config.json"))
	for _, p := range append(files, more...) {
		if b, err := os.ReadFile(p); err == nil && len(b) < 16<<10 { // llama3's 50 kB would slow the fuzzer down
			f.Add(b)
		}
	}
	f.Add([]byte(`{"bos_token": {"content": "<s>"}, "eos_token": null, "chat_template": [{"name": "default", "template": "{{ bos_token }}{{ messages[0].content }}"}]}`))
	f.Add([]byte(`{"chat_template": [{"name": "tool_use", "template": "x"}]}`))
	msgs := Messages([]Message{{"system", "S"}, {"user", "Hi"}, {"assistant", "yo"}, {"user", "again"}})
	dir := f.TempDir() // rewritten by each input: a worker runs one at a time
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := Load(dir)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if c.Template == nil || c.Path == "" {
			t.Fatalf("loaded %+v without a template or path", c)
		}
		c.Render(msgs, Options{AddGenerationPrompt: true})
		c.EndOfTurn()
	})
}

// FuzzRenderJSONL feeds arbitrary conversation files (quantize
// --calib-chat) through real chat templates. It must never panic, and
// what it accepts is one rendered text per non-blank line.
func FuzzRenderJSONL(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "templates", "*.jinja"))
	var chats []*Chat
	for _, p := range files {
		src, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		tmpl, err := Compile(string(src))
		if err != nil {
			f.Fatal(err)
		}
		chats = append(chats, &Chat{Template: tmpl, Tokens: map[string]string{"bos_token": "<s>", "eos_token": "</s>"}})
	}
	if len(chats) == 0 {
		f.Fatal("no templates in testdata/templates")
	}
	for i := range chats {
		f.Add(uint8(i), []byte(`{"messages": [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Question 1: what is a Mixture-of-Experts model?"}, {"role": "assistant", "content": "Experts route tokens. "}]}`+"\n\n"+
			`{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "<think>\nhm\n</think>\n\nyo", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}, {"role": "tool", "content": "42"}]}`+"\n"))
	}
	f.Add(uint8(0), []byte(`{"messages": []}`))
	f.Add(uint8(1), []byte("[1]\n{\"messages\": [{\"role\": \"user\"}]}"))
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		c := chats[int(which)%len(chats)]
		texts, err := c.RenderJSONL("chats.jsonl", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "chats.jsonl") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		lines := 0
		for _, l := range strings.Split(string(data), "\n") {
			if strings.TrimSpace(l) != "" {
				lines++
			}
		}
		if len(texts) != lines || lines == 0 {
			t.Fatalf("%d texts for %d non-blank lines", len(texts), lines)
		}
	})
}
