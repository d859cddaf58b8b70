//go:build slow

package tokenizer

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
	"github.com/moeforge/moeforge/internal/judge"
)

// Run with: go test -tags slow ./tokenizer -run TestAllCodePointsJudgeLive
// (about 5 minutes on 2 loaded cores).

// TestAllCodePointsJudgeLive encodes every Unicode scalar value, in context
// (after a letter, before an apostrophe contraction, a digit and a space),
// with each family and compares with the judge: where Go's Unicode tables
// and Hugging Face's differ, this is what notices.
func TestAllCodePointsJudgeLive(t *testing.T) {
	dir := judge.Dir(t, "tokenizers")
	var texts []string
	var b strings.Builder
	for r := rune(0); r <= utf8.MaxRune; r++ {
		if !utf8.ValidRune(r) {
			continue
		}
		b.WriteString("a")
		b.WriteRune(r)
		b.WriteString("'s1 ")
		b.WriteRune(r)
		b.WriteRune('\u0301')
		if r%512 == 511 {
			texts = append(texts, b.String())
			b.Reset()
		}
	}
	texts = append(texts, b.String())
	for _, name := range []string{"qwen2_5", "mistral", "llama3", "deepseek_v3"} {
		t.Run(name, func(t *testing.T) {
			tok := parseFamily(t, name)
			rep := runJudge(t, dir, judgeRequest{
				Tokenizer: filepath.Join(fixturetest.Dir(t, filepath.Join("tokenizers", name)), "tokenizer.json"),
				Texts:     texts,
			})
			bad := 0
			for k, text := range texts {
				if got := tok.Encode(text); !slices.Equal(got, rep.Results[k].IDs) {
					bad++
					if bad <= 3 {
						t.Errorf("text %d (U+%04X..): mismatch (-hf +got):\n%.1500s", k, []rune(text)[1], cmp.Diff(rep.Results[k].IDs, got))
					}
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d texts differ", bad, len(texts))
			}
		})
	}
}
