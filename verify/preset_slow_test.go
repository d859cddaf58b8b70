//go:build slow

package verify

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moeforge/moeforge/corpus"

	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/internal/fixture"
	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
	"github.com/moeforge/moeforge/internal/gemm"
	"github.com/moeforge/moeforge/internal/half"
	"github.com/moeforge/moeforge/model"
	"github.com/moeforge/moeforge/tokenizer"
)

// fakeQuant rounds w to a symmetric grid of the given bits per group of
// inputs (fp16 scales, as GPTQ files store them) and returns the dequantized
// weights. zeroShift adds to the zero point: 1 reproduces a checkpoint whose
// zeros were written as true zeros where the v1 format wants zero − 1.
func fakeQuant(w gemm.Matrix, bits, group int, zeroShift float64) gemm.F32 {
	n, k := w.Rows(), w.Cols()
	d := make([]float32, n*k)
	w.Widen(d, k, 0, n, 0, k)
	maxq := float64(int(1)<<bits - 1)
	z := math.Floor((maxq + 1) / 2)
	for r := 0; r < n; r++ {
		for g := 0; g < k; g += group {
			row := d[r*k+g : r*k+min(g+group, k)]
			a := 0.0
			for _, v := range row {
				a = math.Max(a, math.Abs(float64(v)))
			}
			if a == 0 {
				a = 1
			}
			s := float64(half.F16ToF32(half.F32ToF16(float32(2 * a / maxq))))
			for i, v := range row {
				q := math.Max(0, math.Min(maxq, math.Round(float64(v)/s)+z))
				row[i] = float32(s * (q - z - zeroShift))
			}
		}
	}
	return gemm.F32{Data: d, N: n, K: k}
}

// quantizable: what GPTQ checkpoints quantize (not the router, the shared
// expert gate or lm_head).
func quantizable(l *model.Linear) bool {
	return l.Spec.Kind != hf.KindLMHead && !strings.HasSuffix(l.Name, ".mlp.gate") && !strings.HasSuffix(l.Name, "shared_expert_gate")
}

// TestQuantizedPreset measures the "quantized" preset on the shared trained
// models with the §4 protocol windows: round-to-nearest int4 (group 128,
// symmetric; GPTQ does better) must pass it, and a zero-point bug in one
// layer or a 3- or 2-bit grid must fail it. Run with
// go test -tags slow ./verify -run QuantizedPreset -v to see the numbers.
func TestQuantizedPreset(t *testing.T) {
	root, err := fixture.Root()
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(filepath.Join(root, "tinyshakespeare.txt"))
	if err != nil {
		t.Fatal(err)
	}
	_, eval, _ := corpus.SplitText(string(text), 0.9)
	preset := mustPreset(t, "quantized")
	variants := []struct {
		name      string
		bits      int
		zeroLayer int // layer whose zero points are off by one; -1 none
		pass      bool
	}{
		{"int4 rtn", 4, -1, true},
		{"int4 rtn, layer 1 zero point off by one", 4, 1, false},
		{"int3 rtn", 3, -1, false},
		{"int2 rtn", 2, -1, false},
	}
	for _, rel := range []string{"models/qwen2_dense_small", "models/qwen2_moe_small", "models/qwen2_moe_a60"} {
		dir := fixturetest.Dir(t, rel)
		ck, err := hf.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer ck.Close()
		ref, err := model.Load(ck)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := tokenizer.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		seqs, err := corpus.EvalWindows(tok.Encode(eval), 16, 256)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range variants {
			cand, err := model.Load(ck)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range cand.Linears() {
				if quantizable(l) {
					shift := 0.0
					if l.Spec.Layer == v.zeroLayer {
						shift = 1
					}
					l.W = fakeQuant(l.W, v.bits, 128, shift)
				}
			}
			res, err := Run(context.Background(), ref, cand, seqs, Options{BatchSize: 4})
			if err != nil {
				t.Fatal(err)
			}
			rep, err := NewReport(Inputs{}, res, preset)
			if err != nil {
				t.Fatal(err)
			}
			m := res.Metrics
			t.Logf("%s, %s: mean KL %.4f, top-1 %.4f, ppl ratio %.4f, failed %v", rel, v.name, m.MeanKL, m.Top1Agreement, m.PPLRatio, rep.Failed)
			if rep.Pass != v.pass {
				t.Errorf("%s, %s: pass=%v, want %v (failed %v)", rel, v.name, rep.Pass, v.pass, rep.Failed)
			}
		}
	}
}
