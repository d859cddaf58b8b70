package tokenizer

import (
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestNewQwen2BPERoundTrip: a tokenizer rebuilt from another's vocabulary,
// Merges and AddedTokens (what a GGUF export stores) encodes and decodes
// the same.
func TestNewQwen2BPERoundTrip(t *testing.T) {
	src, err := Load("../testdata/tokenizer/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	vocab := map[string]int{}
	added := map[int]bool{}
	for _, a := range src.AddedTokens() {
		added[a.ID] = true
	}
	for id := 0; id < src.VocabSize(); id++ {
		if s, ok := src.Token(id); ok && !added[id] {
			vocab[s] = id
		}
	}
	re, err := NewQwen2BPE(vocab, src.Merges(), src.AddedTokens())
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile("../testdata/tinyshakespeare.txt")
	if err != nil {
		t.Fatal(err)
	}
	sample := string(text[:50000]) + "<|im_start|>user\n déjà  vu<|im_end|>"
	a, b := src.Encode(sample), re.Encode(sample)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Fatalf("rebuilt tokenizer encodes differently:\n%s", diff)
	}
	if s, err := re.Decode(b); err != nil || s != sample {
		t.Errorf("decode: %v", err)
	}
}
