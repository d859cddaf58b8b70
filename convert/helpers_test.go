package convert

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/corpus"
	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/internal/fixture"
	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
	"github.com/moeforge/moeforge/model"
	"github.com/moeforge/moeforge/tokenizer"
	"github.com/moeforge/moeforge/verify"
)

func TestMain(m *testing.M) {
	code := m.Run()
	fixturetest.Cleanup()
	os.Exit(code)
}

// Checkpoints used by the tests (materialized from testdata/ once per run).
func denseTiny(t *testing.T) string {
	return filepath.Join(fixturetest.Dir(t, "fixtures/qwen2_dense_tiny"), "model")
}
func denseSmall(t *testing.T) string { return fixturetest.Dir(t, "models/qwen2_dense_small") }

// exactTol is the parity bound of the exact recipes (ALGORITHMS.md §1–2):
// max |Δlogit| / max |logit| over every position and vocabulary entry.
const exactTol = 1e-4

func openCheckpoint(t *testing.T, dir string) *hf.Checkpoint {
	t.Helper()
	ck, err := hf.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ck.Close() })
	return ck
}

func openModel(t *testing.T, dir string) *model.Model {
	t.Helper()
	m, err := model.Load(openCheckpoint(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// writePlan writes p into a fresh directory and returns it.
func writePlan(t *testing.T, p *Plan, maxShard int64) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := p.Write(context.Background(), dir, WriteOptions{MaxShardSize: maxShard}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// checkLoadable checks what transformers needs to load the output without
// missing or unexpected keys: the files hold exactly the tensors the output
// config describes, with their shapes, and the checkpoint opens and loads.
func checkLoadable(t *testing.T, dir string) *hf.Checkpoint {
	t.Helper()
	ck := openCheckpoint(t, dir)
	var want []string
	for _, s := range ck.Config.Tensors() {
		want = append(want, s.Name)
		tt, ok := ck.Weights.Tensor(s.Name)
		if ok && !slices.Equal(tt.Shape, s.Shape) {
			t.Errorf("%s: shape %v, config wants %v", s.Name, tt.Shape, s.Shape)
		}
	}
	slices.Sort(want)
	if diff := cmp.Diff(want, ck.Weights.Names()); diff != "" {
		t.Errorf("tensor names differ from the config's tensor set (-config +file):\n%s", diff)
	}
	if len(ck.Unexpected) > 0 {
		t.Errorf("unexpected tensors: %v", ck.Unexpected)
	}
	if _, err := model.Load(ck); err != nil {
		t.Fatal(err)
	}
	return ck
}

// randomSeqs are token windows of random ids.
func randomSeqs(vocab int) [][]int { return corpus.RandomIDs(3, 40, vocab, 7) }

// textSeqs are windows of the evaluation text (§4 split), tokenized with
// the checkpoint's tokenizer: realistic inputs for the trained models.
func textSeqs(t *testing.T, dir string, n, seqlen int) [][]int {
	t.Helper()
	text, tok := shakespeare(t, dir)
	_, eval, err := corpus.SplitText(text, 0.9)
	if err != nil {
		t.Fatal(err)
	}
	ids := tok.Encode(eval[:min(len(eval), 8*n*seqlen)])
	seqs, err := corpus.EvalWindows(ids, n, seqlen)
	if err != nil {
		t.Fatal(err)
	}
	return seqs
}

// calibSeqs returns n calibration windows of seqlen tokens of
// tinyshakespeare (its first 90%, the evaluation protocol's calibration
// split, seed 0) in dir's tokenizer.
func calibSeqs(t *testing.T, dir string, n, seqlen int) [][]int {
	t.Helper()
	text, tok := shakespeare(t, dir)
	calib, err := corpus.Calibration(text, tok.Encode, 0.9, n, seqlen, 0)
	if err != nil {
		t.Fatal(err)
	}
	return calib
}

// shakespeare returns testdata's tinyshakespeare.txt and dir's tokenizer.
func shakespeare(t *testing.T, dir string) (string, *tokenizer.Tokenizer) {
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
	return string(text), tok
}

// checkGroups runs m on seqs and fails the test when a token selects only
// part of a group of `group` adjacent experts, or when the experts of a
// group got router logits that are not bit-identical. It returns the
// number of routed tokens seen.
func checkGroups(t *testing.T, m *model.Model, seqs [][]int, group int) int {
	t.Helper()
	E, K := m.Config.NumExperts, m.Config.NumExpertsPerTok
	tokens, bad := 0, 0
	hooks := &model.Hooks{Routing: func(layer int, logits []float32, experts []int32, _ []float32) {
		N := len(logits) / E
		tokens += N
		for r := 0; r < N; r++ {
			l := logits[r*E : (r+1)*E]
			for e := range l {
				if math.Float32bits(l[e]) != math.Float32bits(l[e/group*group]) && bad < 5 {
					bad++
					t.Errorf("layer %d token %d: router logit of expert %d is %v, its group's first expert has %v", layer, r, e, l[e], l[e/group*group])
				}
			}
			count := map[int]int{}
			for _, e := range experts[r*K : (r+1)*K] {
				count[int(e)/group]++
			}
			for g, c := range count {
				if c != group && bad < 5 {
					bad++
					t.Errorf("layer %d token %d: selected %d of the %d experts of group %d (experts %v)", layer, r, c, group, g, experts[r*K:(r+1)*K])
				}
			}
		}
	}}
	if _, err := m.Logits(context.Background(), &model.Batch{Seqs: seqs}, hooks); err != nil {
		t.Fatal(err)
	}
	return tokens
}

// parity runs both models on seqs and returns the §5 metrics.
func parity(t *testing.T, ref, cand *model.Model, seqs [][]int) verify.Metrics {
	t.Helper()
	m, err := verify.Compare(context.Background(), ref, cand, seqs, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// readDir returns every file of dir by name.
func readDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}
