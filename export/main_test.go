package export

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moeforge/moeforge/formats/gguf"
	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/internal/fixture"
	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
	"github.com/moeforge/moeforge/model"
	"github.com/moeforge/moeforge/tokenizer"
)

func TestMain(m *testing.M) {
	code := m.Run()
	fixturetest.Cleanup()
	os.Exit(code)
}

// materialized returns a decompressed copy of testdata/rel (shared; do not
// modify it).
func materialized(t testing.TB, rel string) string {
	t.Helper()
	dir, sub := rel, ""
	if filepath.Base(rel) == "model" {
		dir, sub = filepath.Dir(rel), "model"
	}
	return filepath.Join(fixturetest.Dir(t, dir), sub)
}

// exportFile writes dir as GGUF into a temporary file and returns its path
// and the summary.
func exportFile(t testing.TB, dir string, opt GGUFOptions) (string, GGUFSummary) {
	t.Helper()
	ck, err := hf.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	p, err := PlanGGUF(ck, opt)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "model.gguf")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := p.Write(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Size() != p.Size() {
		t.Fatalf("wrote %d bytes, plan said %d", st.Size(), p.Size())
	}
	return path, sum
}

func fileSHA256(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

// textIDs tokenizes n sequences of length tokens from tinyshakespeare with
// the checkpoint's tokenizer (non-overlapping windows from the start of
// the last tenth, the evaluation split).
func textIDs(t testing.TB, dir string, n, length int) [][]int {
	t.Helper()
	root, err := fixture.Root()
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(filepath.Join(root, "tinyshakespeare.txt"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	ids := tok.Encode(string(text[len(text)*9/10:]))
	var seqs [][]int
	for i := 0; i < n; i++ {
		seqs = append(seqs, ids[i*length:(i+1)*length])
	}
	return seqs
}

// moeforgeLogits runs moeforge's own forward pass on the checkpoint dir.
func moeforgeLogits(t testing.TB, dir string, seqs [][]int) []float32 {
	t.Helper()
	m, err := model.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	logits, err := m.Logits(context.Background(), &model.Batch{Seqs: seqs}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return logits
}

// llamaLogits runs judges/llamacpp/logits.mjs on a GGUF file.
func llamaLogits(t testing.TB, judgeDir, gguf string, seqs [][]int) []float32 {
	t.Helper()
	tmp := t.TempDir()
	ids, _ := json.Marshal(seqs)
	idsPath, out := filepath.Join(tmp, "ids.json"), filepath.Join(tmp, "logits.f32")
	if err := os.WriteFile(idsPath, ids, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", filepath.Join(judgeDir, "logits.mjs"), gguf, idsPath, out, "1")
	cmd.Dir = judgeDir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("llama.cpp on %s: %v\n%s", gguf, err, b)
	}
	return readF32(t, out)
}

func readF32(t testing.TB, path string) []float32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, len(b)/4)
	for i := range x {
		x[i] = math.Float32frombits(uint32(b[4*i]) | uint32(b[4*i+1])<<8 | uint32(b[4*i+2])<<16 | uint32(b[4*i+3])<<24)
	}
	return x
}

// logitStats compares two [N, vocab] logit sets: max |Δ| over max |want|,
// and the fraction of positions whose argmax agrees.
func logitStats(got, want []float32, vocab int) (rel, top1 float64) {
	var maxDiff, maxAbs float64
	agree := 0
	n := len(want) / vocab
	for r := 0; r < n; r++ {
		g, w := got[r*vocab:(r+1)*vocab], want[r*vocab:(r+1)*vocab]
		bg, bw := 0, 0
		for i := range w {
			maxDiff = math.Max(maxDiff, math.Abs(float64(g[i]-w[i])))
			maxAbs = math.Max(maxAbs, math.Abs(float64(w[i])))
			if g[i] > g[bg] {
				bg = i
			}
			if w[i] > w[bw] {
				bw = i
			}
		}
		if bg == bw {
			agree++
		}
	}
	return maxDiff / maxAbs, float64(agree) / float64(n)
}

const ggufF32 = gguf.F32

func float32Bits(v float32) [4]byte {
	u := math.Float32bits(v)
	return [4]byte{byte(u), byte(u >> 8), byte(u >> 16), byte(u >> 24)}
}

func mkdir(dir string) error { return os.MkdirAll(dir, 0o755) }

func contains(s, sub string) bool { return strings.Contains(s, sub) }
