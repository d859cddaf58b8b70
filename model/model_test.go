package model

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	fixturetest.Cleanup()
	os.Exit(code)
}

// reference is a fixture's reference.safetensors: what transformers computed.
type reference struct {
	ids    [][]int
	tensor map[string][]float32
	shapes map[string][]int
}

func loadReference(t testing.TB, path string) *reference {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := &reference{tensor: map[string][]float32{}, shapes: map[string][]int{}}
	for _, tt := range f.Tensors() {
		if tt.Name == "input_ids" {
			ids, err := tt.Int64s()
			if err != nil {
				t.Fatal(err)
			}
			B, T := tt.Shape[0], tt.Shape[1]
			for b := 0; b < B; b++ {
				row := make([]int, T)
				for i := range row {
					row[i] = int(ids[b*T+i])
				}
				r.ids = append(r.ids, row)
			}
			continue
		}
		v, err := tt.Float32()
		if err != nil {
			t.Fatal(err)
		}
		r.tensor[tt.Name] = v
		r.shapes[tt.Name] = tt.Shape
	}
	return r
}

func openModel(t testing.TB, dir string) (*hf.Checkpoint, *Model) {
	t.Helper()
	ck, err := hf.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ck.Close() })
	m, err := Load(ck)
	if err != nil {
		t.Fatal(err)
	}
	return ck, m
}

// relDiff returns max|a−b| / max|b|.
func relDiff(a, b []float32) float64 {
	var d, m float64
	for i := range b {
		d = math.Max(d, math.Abs(float64(a[i])-float64(b[i])))
		m = math.Max(m, math.Abs(float64(b[i])))
	}
	return d / m
}

// topK returns the indices of the k largest values of row (ties to lower index).
func topK(row []float32, k int) []int {
	used := make([]bool, len(row))
	var out []int
	for j := 0; j < k; j++ {
		best := -1
		for i, v := range row {
			if !used[i] && (best < 0 || v > row[best]) {
				best = i
			}
		}
		used[best] = true
		out = append(out, best)
	}
	return out
}

// checkParity runs the model on the reference's input ids and compares
// logits, hidden states, router logits, expert choices and NLL.
func checkParity(t *testing.T, m *Model, ref *reference) {
	t.Helper()
	c := m.Config
	hidden := map[int][]float32{}
	router := map[int][]float32{}
	chosen := map[int][]int32{}
	hooks := &Hooks{
		Hidden: func(i int, h []float32) { hidden[i] = append([]float32(nil), h...) },
		Routing: func(layer int, logits []float32, experts []int32, _ []float32) {
			router[layer] = append([]float32(nil), logits...)
			chosen[layer] = append([]int32(nil), experts...)
		},
	}
	logits, err := m.Logits(context.Background(), &Batch{Seqs: ref.ids}, hooks)
	if err != nil {
		t.Fatal(err)
	}
	// Logits: ≤ 1e-4 × max|logit| over the whole batch.
	if d := relDiff(logits, ref.tensor["logits"]); d > 1e-4 {
		t.Errorf("logits: max |Δ| / max |ref| = %.3g > 1e-4", d)
	} else {
		t.Logf("logits: relative max diff %.3g", d)
	}
	for i := 0; i <= c.NumHiddenLayers; i++ {
		name := fmt.Sprintf("hidden_states.%d", i)
		want, ok := ref.tensor[name]
		if !ok {
			continue
		}
		if d := relDiff(hidden[i], want); d > 1e-4 {
			t.Errorf("%s: relative max diff %.3g > 1e-4", name, d)
		}
	}
	for k, layer := range c.MoELayers() {
		want := ref.tensor[fmt.Sprintf("router_logits.%d", k)]
		if d := relDiff(router[layer], want); d > 1e-4 {
			t.Errorf("router_logits.%d: relative max diff %.3g > 1e-4", k, d)
		}
		E, K := c.NumExperts, c.NumExpertsPerTok
		for tok := 0; tok < len(want)/E; tok++ {
			wantTop := topK(want[tok*E:(tok+1)*E], K)
			got := make([]int, K)
			for j := range got {
				got[j] = int(chosen[layer][tok*K+j])
			}
			if diff := cmp.Diff(wantTop, got); diff != "" {
				t.Errorf("layer %d token %d: expert choice differs (-ref +got):\n%s", layer, tok, diff)
			}
		}
	}
	V := c.VocabSize
	wantNLL := ref.tensor["nll"]
	row := 0
	for b, ids := range ref.ids {
		nll := NextTokenNLL(logits[row*V:(row+len(ids))*V], V, ids)
		for i, v := range nll {
			if w := float64(wantNLL[b*(len(ids)-1)+i]); math.Abs(v-w) > 1e-4 {
				t.Errorf("nll[%d][%d] = %.6f, want %.6f", b, i, v, w)
			}
		}
		row += len(ids)
	}
}

func TestParityWithTransformers(t *testing.T) {
	cases := []struct{ fixture, ref string }{
		{"qwen2_dense_tiny", "reference.safetensors"},
		{"qwen2_moe_tiny", "reference.safetensors"},
		{"qwen2_moe_tiny", "reference_long.safetensors"},
		{"qwen2_moe_tiny_sharded", "reference.safetensors"},
		{"mixtral_tiny", "reference.safetensors"},
	}
	for _, c := range cases {
		t.Run(c.fixture+"/"+c.ref, func(t *testing.T) {
			dir := fixturetest.Dir(t, "fixtures/"+c.fixture)
			_, m := openModel(t, filepath.Join(dir, "model"))
			checkParity(t, m, loadReference(t, filepath.Join(dir, c.ref)))
		})
	}
}
