package tokenizer

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
	"github.com/moeforge/moeforge/internal/judge"
)

// BenchmarkEncodeFamilies encodes all of tinyshakespeare with each real
// tokenizer (MB/s). BenchmarkJudgeEncode does the same with Hugging Face
// tokenizers, so that one -bench run compares them in the same minute:
//
//	go test ./tokenizer -run '^$' -bench 'EncodeFamilies|JudgeEncode' -benchtime 3x
func BenchmarkEncodeFamilies(b *testing.B) {
	text := readShakespeare(b)
	for _, name := range families {
		b.Run(name, func(b *testing.B) {
			tok := parseFamily(b, name)
			tok.Encode(text) // warm the word cache, as the judge's warm-up does
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				tok.Encode(text)
			}
		})
	}
}

// BenchmarkJudgeEncode times Hugging Face tokenizers (its Node binding) on
// the same text: the best of b.N encodes after a warm-up, inside node, so
// process start and JSON transfer are not counted.
func BenchmarkJudgeEncode(b *testing.B) {
	dir := judge.Dir(b, "tokenizers")
	text := readShakespeare(b)
	for _, name := range families {
		b.Run(name, func(b *testing.B) {
			req, err := json.Marshal(map[string]any{
				"tokenizer": filepath.Join(fixturetest.Dir(b, filepath.Join("tokenizers", name)), "tokenizer.json"),
				"texts":     []string{text},
				"bench":     max(b.N, 1),
			})
			if err != nil {
				b.Fatal(err)
			}
			cmd := exec.Command("node", filepath.Join(dir, "run.js"))
			cmd.Stdin = bytes.NewReader(req)
			out, err := cmd.Output()
			if err != nil {
				b.Fatal(err)
			}
			var rep struct{ Seconds float64 }
			if err := json.Unmarshal(out, &rep); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(len(text))/rep.Seconds/1e6, "MB/s")
			b.ReportMetric(rep.Seconds*float64(time.Second), "ns/encode")
		})
	}
}
