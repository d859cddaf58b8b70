package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fixtureDir holds a copy of the shared tokenizer fixture: tokenizer.json and
// golden_encodings.json (ids produced by Hugging Face tokenizers 0.23).
var fixtureDir = filepath.Join("..", "testdata", "tokenizer")

func loadFixture(t testing.TB) *Tokenizer {
	t.Helper()
	tok, err := Load(fixtureDir)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type golden struct {
	Text    string `json:"text"`
	IDs     []int  `json:"ids"`
	Decoded string `json:"decoded"`
}

func loadGolden(t testing.TB) []golden {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtureDir, "golden_encodings.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g []golden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	if len(g) == 0 {
		t.Fatal("no golden encodings")
	}
	return g
}

func TestGoldenEncodings(t *testing.T) {
	tok := loadFixture(t)
	for _, g := range loadGolden(t) {
		t.Run(g.Text, func(t *testing.T) {
			ids := tok.Encode(g.Text)
			if diff := cmp.Diff(g.IDs, ids); diff != "" {
				t.Errorf("Encode(%q) mismatch (-hf +got):\n%s", g.Text, diff)
			}
			text, err := tok.Decode(g.IDs)
			if err != nil {
				t.Fatal(err)
			}
			if text != g.Decoded {
				t.Errorf("Decode(%v) = %q, want %q", g.IDs, text, g.Decoded)
			}
		})
	}
}
