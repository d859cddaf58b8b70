package export

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/formats/gguf"
	"github.com/moeforge/moeforge/internal/fixture"
	"github.com/moeforge/moeforge/internal/judge"
	"github.com/moeforge/moeforge/tokenizer"
)

// TestGGUFTokenizerMetadata checks the tokenizer.* keys of an export against
// the source tokenizer.json: one token per embedding row in id order, the
// specials typed as control, the merges in rank order, the special ids and
// the chat template.
func TestGGUFTokenizerMetadata(t *testing.T) {
	dir := materialized(t, "models/qwen2_moe_small")
	path, _ := exportFile(t, dir, GGUFOptions{Type: ggufF32, TypeSet: true})
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := f.Get("tokenizer.ggml.tokens")
	tokens := v.([]string)
	v, _ = f.Get("tokenizer.ggml.token_type")
	types := v.([]int32)
	if len(tokens) != 1024 || len(types) != 1024 {
		t.Fatalf("%d tokens, %d types, want 1024 (vocab_size)", len(tokens), len(types))
	}
	for id, s := range tokens {
		want, _ := tok.Token(id)
		if s != want {
			t.Fatalf("token %d = %q, tokenizer.json has %q", id, s, want)
		}
	}
	for _, sp := range []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"} {
		id, _ := tok.TokenID(sp)
		if types[id] != tokenControl {
			t.Errorf("%s (id %d) has token type %d, want control (3)", sp, id, types[id])
		}
	}
	if types[100] != tokenNormal {
		t.Errorf("token 100 has type %d, want normal (1)", types[100])
	}
	// The merges, in rank order, as tokenizer.json lists them.
	raw, err := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	var tj struct {
		Model struct {
			Merges []json.RawMessage `json:"merges"`
		} `json:"model"`
	}
	if err := json.Unmarshal(raw, &tj); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, m := range tj.Model.Merges {
		var s string
		if json.Unmarshal(m, &s) == nil {
			want = append(want, s)
			continue
		}
		var pair []string
		json.Unmarshal(m, &pair)
		want = append(want, pair[0]+" "+pair[1])
	}
	v, _ = f.Get("tokenizer.ggml.merges")
	if diff := cmp.Diff(want, v.([]string)); diff != "" {
		t.Errorf("merges differ from tokenizer.json (-want +got):\n%s", diff)
	}
	eot, _ := tok.TokenID("<|endoftext|>")
	for key, want := range map[string]any{
		"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "qwen2",
		"tokenizer.ggml.bos_token_id": uint32(0), "tokenizer.ggml.eos_token_id": uint32(eot),
		"tokenizer.ggml.padding_token_id": uint32(eot), "tokenizer.ggml.add_bos_token": false,
	} {
		if got, _ := f.Get(key); got != want {
			t.Errorf("%s = %v (%T), want %v (%T)", key, got, got, want, want)
		}
	}
	tmpl, _ := os.ReadFile(filepath.Join(dir, "chat_template.jinja"))
	if got, _ := f.String("tokenizer.chat_template"); got != string(tmpl) {
		t.Errorf("chat template %q, want %q", got, tmpl)
	}
}

// TestGGUFTokenizerJudge: llama.cpp tokenizes text from the exported file's
// metadata exactly as moeforge (and Hugging Face tokenizers) do from
// tokenizer.json, special tokens included.
func TestGGUFTokenizerJudge(t *testing.T) {
	jd := judge.Dir(t, "llamacpp")
	dir := materialized(t, "models/qwen2_moe_small")
	path, _ := exportFile(t, dir, GGUFOptions{Type: ggufF32, TypeSet: true})
	root, _ := fixture.Root()
	text, err := os.ReadFile(filepath.Join(root, "tinyshakespeare.txt"))
	if err != nil {
		t.Fatal(err)
	}
	sample := string(text[len(text)*9/10:len(text)*9/10+20000]) +
		"<|im_start|>user\nWhat's  up?\n\n  \t déjà vu 123456 <|im_end|>\n<|endoftext|>"
	txt := filepath.Join(t.TempDir(), "text.txt")
	os.WriteFile(txt, []byte(sample), 0o644)
	cmd := exec.Command("node", filepath.Join(jd, "tokenize.mjs"), path, txt)
	cmd.Dir = jd
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("llama.cpp tokenize: %v", err)
	}
	var llama []int
	if err := json.Unmarshal(out, &llama); err != nil {
		t.Fatal(err)
	}
	tok, _ := tokenizer.Load(dir)
	ours := tok.Encode(sample)
	if diff := cmp.Diff(ours, llama); diff != "" {
		t.Errorf("llama.cpp's tokenization (%d ids) differs from moeforge's (%d):\n%s", len(llama), len(ours), diff)
	}
	t.Logf("%d characters → %d tokens, identical in llama.cpp", len(sample), len(ours))
}
