//go:build slow

package export

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/moeforge/moeforge/corpus"
	"github.com/moeforge/moeforge/formats/gguf"
	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/internal/fixture"
	"github.com/moeforge/moeforge/internal/judge"
	"github.com/moeforge/moeforge/model"
	"github.com/moeforge/moeforge/quantize"
	"github.com/moeforge/moeforge/tokenizer"
)

// TestGGUFQ4_0Quality measures goal 5 of issue #13 with llama.cpp on both
// files: GPTQ (group 32) repacked into Q4_0 against llama.cpp's own
// round-to-nearest Q4_0 of the same matrices, as mean KL(float ‖ quantized)
// over the evaluation protocol's 16 × 256 held-out tokens of
// qwen2_moe_small. Goal: GPTQ's KL ≤ 0.4 × RTN's.
//
//	go test -tags slow -run TestGGUFQ4_0Quality -v ./export
func TestGGUFQ4_0Quality(t *testing.T) {
	jd := judge.Dir(t, "llamacpp")
	dir := materialized(t, "models/qwen2_moe_small")
	root, _ := fixture.Root()
	text, err := os.ReadFile(filepath.Join(root, "tinyshakespeare.txt"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	eval, err := corpus.Eval(string(text), tok.Encode, corpus.DefaultSplitAt, corpus.DefaultWindows, corpus.DefaultSeqLen)
	if err != nil {
		t.Fatal(err)
	}
	gptq := func(nsamples int) string {
		calib, err := corpus.Calibration(string(text), tok.Encode, corpus.DefaultSplitAt, nsamples, 256, 0)
		if err != nil {
			t.Fatal(err)
		}
		ck, err := hf.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer ck.Close()
		out := filepath.Join(t.TempDir(), "gptq32")
		mkdir(out)
		opt := quantize.DefaultOptions()
		opt.Config.GroupSize = 32
		if _, err := quantize.Run(context.Background(), ck, out, calib, opt); err != nil {
			t.Fatal(err)
		}
		return out
	}
	gptqDir := gptq(128)

	floatFile, _ := exportFile(t, dir, GGUFOptions{Type: gguf.F32, TypeSet: true})
	rtnFile, rtnSum := exportFile(t, dir, GGUFOptions{Type: gguf.Q4_0, TypeSet: true})
	gptqFile, gptqSum := exportFile(t, gptqDir, GGUFOptions{})
	t.Logf("RTN Q4_0: %v; GPTQ Q4_0: %v (%d repacked)", rtnSum.TensorTypes, gptqSum.TensorTypes, gptqSum.Repacked)

	ref := llamaLogits(t, jd, floatFile, eval)
	vocab := len(ref) / (len(eval) * len(eval[0]))
	rtn := llamaLogits(t, jd, rtnFile, eval)
	gq := llamaLogits(t, jd, gptqFile, eval)
	klR, topR := meanKL(ref, rtn, vocab)
	klG, topG := meanKL(ref, gq, vocab)
	t.Logf("llama.cpp, qwen2_moe_small, 16×256 tokens: KL(float‖RTN Q4_0) %.3g top-1 %.2f%%; KL(float‖GPTQ g32 Q4_0, 128×256 calibration) %.3g top-1 %.2f%%; ratio %.3f",
		klR, 100*topR, klG, 100*topG, klG/klR)
	g512File, _ := exportFile(t, gptq(512), GGUFOptions{})
	kl512, top512 := meanKL(ref, llamaLogits(t, jd, g512File, eval), vocab)
	t.Logf("llama.cpp: KL(float‖GPTQ g32 Q4_0, 512×256 calibration) %.3g top-1 %.2f%%; ratio %.3f", kl512, 100*top512, kl512/klR)

	// moeforge's own forward pass on the GPTQ checkpoint, against llama.cpp
	// on the repacked file (llama.cpp quantizes activations to 8 bits for
	// Q4_0 products, so this is not float parity).
	ours := moeforgeLogits(t, gptqDir, eval)
	rel, top1 := logitStats(gq, ours, vocab)
	klM, _ := meanKL(ours, gq, vocab)
	t.Logf("llama.cpp (GPTQ→Q4_0 GGUF) vs moeforge (GPTQ checkpoint): max rel Δlogit %.3g, top-1 %.2f%%, KL %.5f", rel, 100*top1, klM)
	if klG > 0.4*klR {
		t.Errorf("GPTQ KL %.5f > 0.4 × RTN KL %.5f", klG, klR)
	}
}

// meanKL returns the mean KL(p ‖ q) over positions of two [N, vocab] logit
// sets and the fraction of positions with the same argmax.
func meanKL(p, q []float32, vocab int) (kl, top1 float64) {
	n := len(p) / vocab
	agree := 0
	for r := 0; r < n; r++ {
		lp := model.LogSoftmax(p[r*vocab : (r+1)*vocab])
		lq := model.LogSoftmax(q[r*vocab : (r+1)*vocab])
		bp, bq := 0, 0
		for i := range lp {
			kl += exp(lp[i]) * (lp[i] - lq[i])
			if lp[i] > lp[bp] {
				bp = i
			}
			if lq[i] > lq[bq] {
				bq = i
			}
		}
		if bp == bq {
			agree++
		}
	}
	return kl / float64(n), float64(agree) / float64(n)
}

func exp(x float64) float64 { return math.Exp(x) }
