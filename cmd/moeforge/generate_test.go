package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/model"
	"github.com/moeforge/moeforge/tokenizer"
)

// libraryGenerate is what the command should print, computed with the
// libraries directly.
func libraryGenerate(t *testing.T, dir, prompt string, n int, eos []int) (model.Generation, string) {
	t.Helper()
	ck, err := hf.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	m, err := model.Load(ck)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	g, err := m.Generate(context.Background(), tok.Encode(prompt), model.GenerateOptions{MaxNewTokens: n, EOS: eos}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ids := g.IDs
	if g.Stop == model.StopEOS {
		ids = ids[:len(ids)-1]
	}
	text, err := tok.Decode(ids)
	if err != nil {
		t.Fatal(err)
	}
	return g, text
}

// TestGenerateCommand: the streamed text is the greedy continuation the
// library computes, the same on every run; --json reports the same ids;
// an EOS from generation_config.json stops generation and is not printed.
func TestGenerateCommand(t *testing.T) {
	dir := checkpointCopy(t, "models/qwen2_moe_small")
	// The trained model's generation_config says eos_token_id 0 ("!"); use
	// none here so that the run is as long as asked.
	os.WriteFile(filepath.Join(dir, "generation_config.json"), []byte(`{"eos_token_id": null}`), 0o644)
	os.WriteFile(filepath.Join(dir, "config.json"), bytes.Replace(mustRead(t, filepath.Join(dir, "config.json")),
		[]byte(`"eos_token_id": 0,`), nil, 1), 0o644)
	g, text := libraryGenerate(t, dir, "ROMEO:", 40, nil)

	var first string
	for run := 0; run < 2; run++ {
		code, stdout, stderr := runMoeforge(t, "generate", dir, "--prompt", "ROMEO:", "--max-new-tokens", "40")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		want := text
		if !strings.HasSuffix(want, "\n") {
			want += "\n"
		}
		if diff := cmp.Diff(want, stdout); diff != "" {
			t.Errorf("streamed text (-library +command):\n%s", diff)
		}
		if !strings.Contains(stderr, "40 generated, stopped at max_new_tokens") {
			t.Errorf("stderr summary: %q", stderr)
		}
		if run == 0 {
			first = stdout
		} else if stdout != first {
			t.Errorf("second run printed %q, first %q", stdout, first)
		}
	}

	code, stdout, stderr := runMoeforge(t, "--quiet", "generate", dir, "--prompt", "ROMEO:", "--max-new-tokens", "40", "--json")
	if code != 0 || stderr != "" {
		t.Fatalf("--json: exit %d, stderr %q", code, stderr)
	}
	var res generateResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, stdout)
	}
	if diff := cmp.Diff(g.IDs, res.IDs); diff != "" || res.Text != text || res.Stop != "max_new_tokens" || res.PromptTokens == 0 {
		t.Errorf("--json: %+v\nwant ids %v text %q", res, g.IDs, text)
	}

	// The fourth generated token becomes the EOS: the run stops there and
	// prints the text before it.
	eos := g.IDs[3]
	os.WriteFile(filepath.Join(dir, "generation_config.json"), []byte(fmt.Sprintf(`{"eos_token_id": [%d]}`, eos)), 0o644)
	ge, textE := libraryGenerate(t, dir, "ROMEO:", 40, []int{eos})
	code, stdout, stderr = runMoeforge(t, "generate", dir, "--prompt", "ROMEO:", "--max-new-tokens", "40")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if ge.Stop != model.StopEOS || len(ge.IDs) > 4 {
		t.Fatalf("library run with EOS %d: %v %s", eos, ge.IDs, ge.Stop)
	}
	if strings.TrimSuffix(stdout, "\n") != strings.TrimSuffix(textE, "\n") || !strings.Contains(stderr, "stopped at eos") {
		t.Errorf("with EOS %d: stdout %q (want %q), stderr %q", eos, stdout, textE, stderr)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGenerateBadInput(t *testing.T) {
	dir := checkpointCopy(t, "fixtures/qwen2_moe_tiny")
	modelDir := filepath.Join(dir, "model")
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"no --prompt", []string{"generate", modelDir}, []string{"--prompt TEXT is required"}},
		{"empty prompt", []string{"generate", modelDir, "--prompt", ""}, []string{"prompt is empty"}},
		{"zero tokens", []string{"generate", modelDir, "--prompt", "a", "--max-new-tokens", "0"}, []string{"--max-new-tokens 0"}},
		{"nonexistent model", []string{"generate", filepath.Join(dir, "nope"), "--prompt", "a"}, []string{"nope", "no such checkpoint directory"}},
		{"prompt too long", []string{"generate", modelDir, "--prompt", strings.Repeat("z ", 600)}, []string{"more than max_position_embeddings=512"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantInputError(t, tc.args, tc.want...)
		})
	}
}

// byteLevelChar is the GPT-2 byte-level alphabet: the character that stands
// for byte b in tokenizer.json.
func byteLevelChar(b byte) string {
	if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE {
		return string(rune(b))
	}
	n := 0
	for c := 0; c < int(b); c++ {
		cb := byte(c)
		if !((cb >= '!' && cb <= '~') || (cb >= 0xA1 && cb <= 0xAC) || cb >= 0xAE) {
			n++
		}
	}
	return string(rune(256 + n))
}

// TestTextStream: streaming token by token prints exactly what decoding all
// ids at once gives (Hugging Face's lossy UTF-8: one U+FFFD per maximal
// invalid subpart), and never splits a character: everything written so far
// is valid UTF-8 at every step. Each byte is its own token here, the worst
// case for splits.
func TestTextStream(t *testing.T) {
	dir := checkpointCopy(t, "tokenizer")
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, input := range []string{
		"plain ASCII\n",
		"héllo wörld — ½ · 日本語 ok",
		"emoji 😀 at the end 😀",
		"\xe6\x97",               // a character cut short at the end
		"a\xe6\x97b",             // cut short in the middle: one U+FFFD
		"\xff\xfe x \xc0\xaf",    // bytes that never start a character
		"\xed\xa0\x80 surrogate", // encoded surrogate: three replacements
		"\xf0\x9f\x98 \xf0\x9f",
		"\xe2\x82\xac\xe2\x82", // € then a truncated €
	} {
		t.Run(fmt.Sprintf("%q", input), func(t *testing.T) {
			var ids []int
			for i := 0; i < len(input); i++ {
				id, ok := tok.TokenID(byteLevelChar(input[i]))
				if !ok {
					t.Fatalf("no token for byte %#x", input[i])
				}
				ids = append(ids, id)
			}
			want, err := tok.Decode(ids)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			s := &textStream{tok: tok, w: &out}
			for _, id := range ids {
				if err := s.add(id); err != nil {
					t.Fatal(err)
				}
				if !utf8.Valid(out.Bytes()) {
					t.Fatalf("after token %d the output is not valid UTF-8: %q", id, out.String())
				}
			}
			if err := s.finish(); err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(want, "\n") {
				want += "\n"
			}
			if diff := cmp.Diff(want, out.String()); diff != "" {
				t.Errorf("streamed text (-decode all +streamed):\n%s", diff)
			}
		})
	}
}
