package quantize

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/moeforge/moeforge/corpus"
	"github.com/moeforge/moeforge/internal/gemm"
	"github.com/moeforge/moeforge/model"
	"github.com/moeforge/moeforge/verify"
)

// TestStagedMatchesLegacy quantizes the tiny fixtures with seqLayer (every
// intermediate computed once) and with the legacy schedule (every stage
// reruns the layer from its input with the earlier groups quantized): both
// quantize each module from the same inputs up to float rounding (Hessians
// summed in a different order), so the codes must agree almost everywhere,
// the GPTQ losses closely, and the two quantized models must predict the
// same distributions.
func TestStagedMatchesLegacy(t *testing.T) {
	for _, tc := range []struct {
		fixture string
		bits    int
		lmHead  bool
	}{{"qwen2_moe_tiny", 4, false}, {"mixtral_tiny", 4, false}, {"qwen2_dense_tiny", 4, false}, {"qwen2_moe_tiny", 3, true}, {"mixtral_tiny", 8, true}} {
		fixture := tc.fixture
		t.Run(fmt.Sprintf("%s/%dbit/lmhead=%v", fixture, tc.bits, tc.lmHead), func(t *testing.T) {
			src := tinyModel(t, fixture)
			ck := openCheckpoint(t, src)
			calib := corpus.RandomIDs(6, 40, ck.Config.VocabSize, 5)
			opt := defaultOptions()
			opt.ExpertFallback = FallbackAllTokens
			opt.Config.Bits, opt.Config.LMHead = tc.bits, tc.lmHead
			a, ra, la := quantizeTo(t, src, calib, opt)
			legacy := opt
			legacy.legacySchedule = true
			b, rb, lb := quantizeTo(t, src, calib, legacy)
			var same, total int
			for name, x := range la {
				y := lb[name]
				if y == nil {
					t.Fatalf("%s missing from the legacy run", name)
				}
				for k := range x.Codes {
					if x.Codes[k] == y.Codes[k] {
						same++
					}
				}
				total += len(x.Codes)
			}
			if frac := float64(same) / float64(total); frac < 0.995 {
				t.Errorf("%.4f of the codes agree, want ≥ 0.995", frac)
			}
			if d := math.Abs(ra.Totals.Loss-rb.Totals.Loss) / rb.Totals.Loss; d > 1e-2 {
				t.Errorf("GPTQ loss %g vs legacy %g (relative %g, want ≤ 1e-2)", ra.Totals.Loss, rb.Totals.Loss, d)
			}
			if len(ra.Starved) != len(rb.Starved) {
				t.Errorf("%d starved experts, legacy %d", len(ra.Starved), len(rb.Starved))
			}
			ma, err := model.Load(openCheckpoint(t, a))
			if err != nil {
				t.Fatal(err)
			}
			mb, err := model.Load(openCheckpoint(t, b))
			if err != nil {
				t.Fatal(err)
			}
			met, err := verify.Compare(context.Background(), mb, ma, corpus.RandomIDs(2, 24, ck.Config.VocabSize, 99), 2, nil)
			if err != nil {
				t.Fatal(err)
			}
			if met.MeanKL > 1e-3 {
				t.Errorf("mean KL(legacy‖staged) = %g, want ≤ 1e-3", met.MeanKL)
			}
			t.Logf("codes agree %d/%d, loss %g vs %g, KL %g, top-1 %.3f", same, total, ra.Totals.Loss, rb.Totals.Loss, met.MeanKL, met.Top1Agreement)
		})
	}
}

// TestThreadsSameOutput: the output checkpoint does not depend on the number
// of goroutines (the expert pipeline's workers, the gathers and output sums
// split over them, the products' tiles, GPTQ's column split): 1 and 3 give
// the same bytes, with starved experts taking the all-tokens paths.
func TestThreadsSameOutput(t *testing.T) {
	defer gemm.SetThreads(0)
	src := tinyModel(t, "qwen2_moe_tiny")
	ck := openCheckpoint(t, src)
	calib := corpus.RandomIDs(6, 40, ck.Config.VocabSize, 5)
	opt := defaultOptions()
	opt.ExpertFallback = FallbackAllTokens
	opt.MinExpertTokens = 60 // about half the experts starved
	var outs []string
	for _, th := range []int{1, 3} {
		gemm.SetThreads(th)
		dir, rep, _ := quantizeTo(t, src, calib, opt)
		if len(rep.Starved) == 0 {
			t.Fatal("no starved expert: the all-tokens paths are not exercised")
		}
		t.Logf("threads %d: %d starved experts", th, len(rep.Starved))
		outs = append(outs, dir)
	}
	for _, name := range []string{"model.safetensors", "config.json"} {
		a, err := os.ReadFile(filepath.Join(outs[0], name))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(outs[1], name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between 1 and 3 threads", name)
		}
	}
}
