package main

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moeforge/moeforge/corpus"
	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/internal/fixture"
	"github.com/moeforge/moeforge/model"
	"github.com/moeforge/moeforge/tokenizer"
	"github.com/moeforge/moeforge/verify"
)

func corpusPath(t *testing.T) string {
	t.Helper()
	root, err := fixture.Root()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "tinyshakespeare.txt")
}

// TestEvalPPLCommand: eval ppl --json on qwen2_moe_small with a few windows
// prints the perplexity the library computes on the same protocol windows
// (to 1e-9 relative: same windows, same batches), and the counts.
func TestEvalPPLCommand(t *testing.T) {
	dir := checkpointCopy(t, "models/qwen2_moe_small")
	corpusFile := corpusPath(t)
	code, stdout, stderr := runMoeforge(t, "eval", "ppl", dir, "--text", corpusFile, "--windows", "4", "--seqlen", "128", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res pplResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, stdout)
	}

	// The protocol, assembled here from the libraries.
	text, err := os.ReadFile(corpusFile)
	if err != nil {
		t.Fatal(err)
	}
	_, eval, _ := corpus.SplitText(string(text), 0.9)
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	windows, err := corpus.EvalWindows(tok.Encode(eval), 4, 128)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := hf.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	m, err := model.Load(ck)
	if err != nil {
		t.Fatal(err)
	}
	want, _, err := verify.Perplexity(context.Background(), m, windows, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(res.PPL-want) > 1e-9*want || res.Tokens != 4*127 || res.InputTokens != 4*128 ||
		res.Windows != 4 || res.SeqLen != 128 || res.TokensPerSecond <= 0 || res.Seconds <= 0 {
		t.Errorf("result %+v; want ppl %.6f over 508 predicted tokens", res, want)
	}
	if res.PPL < 20 || res.PPL > 50 {
		t.Errorf("ppl %.3f of a trained model on 4 windows is implausible", res.PPL)
	}

	code, stdout, _ = runMoeforge(t, "eval", "ppl", dir, "--text", corpusFile, "--windows", "2", "--seqlen", "64")
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "perplexity  ") ||
		!strings.Contains(lines[1], "126 predicted (2 windows × 64 tokens") || !strings.Contains(lines[2], "tokens/s") {
		t.Errorf("human output (exit %d):\n%s", code, stdout)
	}
}

func TestEvalPPLBadInput(t *testing.T) {
	dir := checkpointCopy(t, "fixtures/qwen2_moe_tiny")
	modelDir := filepath.Join(dir, "model")
	corpusFile := corpusPath(t)
	short := filepath.Join(t.TempDir(), "short.txt")
	os.WriteFile(short, []byte("To be, or not to be, that is the question."), 0o644)
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"no --text", []string{"eval", "ppl", modelDir}, []string{"--text FILE is required"}},
		{"missing text", []string{"eval", "ppl", modelDir, "--text", filepath.Join(dir, "none.txt")}, []string{"none.txt", "no such file"}},
		{"too few tokens", []string{"eval", "ppl", modelDir, "--text", short}, []string{short, "fill only 0 windows of 256, want 16"}},
		{"bad split", []string{"eval", "ppl", modelDir, "--text", corpusFile, "--split-at", "1.5"}, []string{"--split-at", "1.5"}},
		{"nonexistent model", []string{"eval", "ppl", filepath.Join(dir, "nope"), "--text", corpusFile}, []string{"nope", "no such checkpoint directory"}},
		{"no tokenizer", []string{"eval", "ppl", modelDir, "--text", corpusFile, "--tokenizer", dir}, []string{"tokenizer"}},
		{"seqlen beyond positions", []string{"eval", "ppl", modelDir, "--text", corpusFile, "--windows", "1", "--seqlen", "600"}, []string{"600 positions", "max_position_embeddings=512"}},
		{"eval alone", []string{"eval"}, []string{"eval ppl MODEL --text FILE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantInputError(t, tc.args, tc.want...)
		})
	}
}
