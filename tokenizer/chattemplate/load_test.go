package chattemplate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestLoad: chat_template.jinja wins over tokenizer_config.json; the
// config's template may be a string or a list of named ones; special
// tokens may be strings or AddedToken objects; a missing template is
// ErrNoTemplate; EndOfTurn finds the template's markers.
func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("tokenizer_config.json", `{"bos_token": {"content": "<|begin_of_text|>", "lstrip": false}, "eos_token": "<|eot_id|>", "pad_token": null,
		"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>{{ m.content }}<|eot_id|>{% endfor %}"}]}`)
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]string{"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}, c.Tokens); d != "" {
		t.Errorf("tokens (-want +got):\n%s", d)
	}
	out, err := c.Render(Messages([]Message{{"user", "hi"}}), Options{})
	if err != nil || out != "<|begin_of_text|><|start_header_id|>user<|end_header_id|>hi<|eot_id|>" {
		t.Errorf("render: %q, %v", out, err)
	}
	if d := cmp.Diff([]string{"<|eot_id|>"}, c.EndOfTurn()); d != "" {
		t.Errorf("end of turn (-want +got):\n%s", d)
	}
	write("chat_template.jinja", "J{{ messages | length }}")
	if c, err = Load(dir); err != nil || !strings.HasSuffix(c.Path, "chat_template.jinja") {
		t.Fatalf("chat_template.jinja not preferred: %v %v", c, err)
	}
	os.Remove(filepath.Join(dir, "chat_template.jinja"))
	write("tokenizer_config.json", `{"eos_token": "</s>"}`)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "no chat template") {
		t.Errorf("no template: %v", err)
	}
	write("tokenizer_config.json", `{"chat_template": "{% if %}"}`)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "tokenizer_config.json") {
		t.Errorf("bad template: %v", err)
	}
}
