package export

import (
	"os"
	"path/filepath"
	"testing"
)

// TestChatTemplatePrecedence: the GGUF export copies the template every
// other command renders — chat_template.jinja over tokenizer_config.json's
// chat_template, as transformers loads them — and nothing when there is none.
func TestChatTemplatePrecedence(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := chatTemplate(dir); got != "" || err != nil {
		t.Fatalf("no template: %q, %v", got, err)
	}
	write("tokenizer_config.json", `{"chat_template": [{"name": "default", "template": "from-config"}]}`)
	if got, err := chatTemplate(dir); got != "from-config" || err != nil {
		t.Fatalf("tokenizer_config.json only: %q, %v", got, err)
	}
	write("chat_template.jinja", "from-jinja")
	if got, err := chatTemplate(dir); got != "from-jinja" || err != nil {
		t.Fatalf("both: %q, %v; want chat_template.jinja's", got, err)
	}
}
