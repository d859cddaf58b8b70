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
// tokenizer (NAME/moeforge, MB/s) and then, right after, with Hugging Face
// tokenizers through its Node binding (NAME/hf, when the judge is
// installed: the best of b.N encodes after a warm-up, timed inside node so
// that process start and JSON transfer are not counted), so that each pair
// is measured in the same minute:
//
//	go test ./tokenizer -run '^$' -bench EncodeFamilies -benchtime 3x
func BenchmarkEncodeFamilies(b *testing.B) {
	text := readShakespeare(b)
	for _, name := range families {
		b.Run(name+"/moeforge", func(b *testing.B) {
			tok := parseFamily(b, name)
			tok.Encode(text) // warm the word cache, as the judge's warm-up does
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				tok.Encode(text)
			}
		})
		b.Run(name+"/hf", func(b *testing.B) {
			dir := judge.Dir(b, "tokenizers")
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
