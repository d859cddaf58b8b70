package export

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/formats/gguf"
	"github.com/moeforge/moeforge/internal/fixture"
	"github.com/moeforge/moeforge/tokenizer"
)

// mixtralSPM materializes the mixtral_tiny fixture with the Mistral-style
// mistral_tiny tokenizer (tokenizer.json with Prepend/Replace, byte_fallback).
func mixtralSPM(t *testing.T) string {
	t.Helper()
	root, err := fixture.Root()
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "mixtral_spm")
	for _, rel := range []string{"fixtures/mixtral_tiny/model", "tokenizers/mistral_tiny"} {
		if err := fixture.Materialize(filepath.Join(root, rel), dst); err != nil {
			t.Fatal(err)
		}
	}
	os.Remove(filepath.Join(dst, "golden.json"))
	return dst
}

// spmCorpus is varied text for the SentencePiece-style tokenizer: the
// mistral_tiny golden corpus, Shakespeare, whitespace runs, bytes outside the
// vocabulary (byte fallback), and special tokens written in the text.
func spmCorpus(t *testing.T) []string {
	t.Helper()
	root, _ := fixture.Root()
	dir := filepath.Join(t.TempDir(), "g")
	if err := fixture.Materialize(filepath.Join(root, "tokenizers/mistral_tiny"), dir); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Texts []string `json:"texts"`
	}
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Texts) < 20 {
		t.Fatalf("golden corpus has %d texts", len(g.Texts))
	}
	out := g.Texts
	shak, err := os.ReadFile(filepath.Join(root, "tinyshakespeare.txt"))
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, string(shak[len(shak)/2:len(shak)/2+8000]),
		"First Citizen:\n\n  Before we proceed any further,\thear me speak.  ",
		"déjà vu — 東京 🙂 ünïcödé 123456789 x²",
		"<s>[INST] What's up? [/INST] nothing</s><s> again</s>",
		"   leading spaces", "trailing spaces   ", "\n\nnewlines\n", "a<s>b</s>c<unk>d")
	return out
}

// TestGGUFLlamaTokenizerMetadata: a Mistral-style tokenizer.json becomes
// llama.cpp's "llama" tokenizer: token types unknown/control/byte/normal,
// scores that order merged pieces by merge rank, the merges, the special
// ids and add_bos_token true.
func TestGGUFLlamaTokenizerMetadata(t *testing.T) {
	dir := mixtralSPM(t)
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
	v, _ = f.Get("tokenizer.ggml.scores")
	scores, _ := v.([]float32)
	if len(tokens) != 1024 || len(types) != 1024 || len(scores) != 1024 {
		t.Fatalf("%d tokens, %d types, %d scores, want 1024", len(tokens), len(types), len(scores))
	}
	for id, s := range tokens {
		want, _ := tok.Token(id)
		if s != want {
			t.Fatalf("token %d = %q, tokenizer.json has %q", id, s, want)
		}
	}
	for id, want := range map[int]int32{0: tokenUnknown, 1: tokenControl, 2: tokenControl, 3: tokenByte, 3 + 0x0A: tokenByte, 258: tokenByte, 1023: tokenNormal} {
		if types[id] != want {
			t.Errorf("token %d %q has type %d, want %d", id, tokens[id], types[id], want)
		}
	}
	if n := strings.Count(strings.Join(tokens[3:259], ""), "<0x"); n != 256 {
		t.Errorf("%d byte tokens in ids 3..258, want 256", n)
	}
	merges := tok.Merges()
	v, _ = f.Get("tokenizer.ggml.merges")
	if diff := cmp.Diff(merges, v.([]string)); diff != "" {
		t.Errorf("merges differ (-want +got):\n%s", diff)
	}
	// The piece merge 0 makes scores highest among merged pieces, and a
	// later merge's piece lower.
	a, b, _ := strings.Cut(merges[0], " ")
	first, _ := tok.TokenID(a + b)
	a, b, _ = strings.Cut(merges[len(merges)-1], " ")
	last, _ := tok.TokenID(a + b)
	if scores[first] != 0 || !(scores[last] < scores[first]) || !(scores[3] < scores[last]) {
		t.Errorf("scores: first merge's piece %v, last's %v, byte token %v", scores[first], scores[last], scores[3])
	}
	for key, want := range map[string]any{
		"tokenizer.ggml.model": "llama", "tokenizer.ggml.pre": "default",
		"tokenizer.ggml.bos_token_id": uint32(1), "tokenizer.ggml.eos_token_id": uint32(2),
		"tokenizer.ggml.unknown_token_id": uint32(0), "tokenizer.ggml.add_bos_token": true,
		"tokenizer.ggml.add_eos_token": false, "tokenizer.ggml.add_space_prefix": true,
	} {
		if got, _ := f.Get(key); got != want {
			t.Errorf("%s = %v (%T), want %v (%T)", key, got, got, want, want)
		}
	}
}

// TestGGUFLlamaTokenizerRoundTrip: the tokenizer moeforge rebuilds from the
// file's metadata encodes and decodes the corpus exactly as the source
// tokenizer.json does.
func TestGGUFLlamaTokenizerRoundTrip(t *testing.T) {
	dir := mixtralSPM(t)
	path, _ := exportFile(t, dir, GGUFOptions{Type: ggufF32, TypeSet: true})
	src, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := GGUFTokenizer(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range spmCorpus(t) {
		want := src.Encode(text)
		ids := got.Encode(text)
		if diff := cmp.Diff(want, ids); diff != "" {
			t.Fatalf("%.40q: GGUF tokenizer differs from tokenizer.json (-want +got):\n%s", text, diff)
		}
		ws, err1 := src.Decode(want)
		gs, err2 := got.Decode(ids)
		if err1 != nil || err2 != nil || ws != gs {
			t.Fatalf("%.40q: decode %q (%v), GGUF %q (%v)", text, ws, err1, gs, err2)
		}
	}
}
