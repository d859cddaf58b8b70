package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/moeforge/moeforge/internal/fixture"
	"github.com/moeforge/moeforge/verify"
)

// TestDemo runs the whole pipeline as `moeforge demo` does and requires every
// step to pass: exact upcycling and splitting, GPTQ within the quality bar.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the whole pipeline takes about half a minute")
	}
	root, err := fixture.Root()
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	res, err := Run(context.Background(), Options{Testdata: root, WorkDir: t.TempDir(), Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	res.WriteTable(&table)
	t.Log("\n" + table.String())
	if !res.Pass {
		t.Fatalf("demo failed:\n%s", table.String())
	}
	want := []string{"upcycle hybrid-exact", "split ×2", "quantize gptq", "quantize rtn", "eval float (bf16)", "eval rtn", "eval gptq"}
	if len(res.Steps) != len(want) {
		t.Fatalf("%d steps, want %d", len(res.Steps), len(want))
	}
	for i, s := range res.Steps {
		if s.Name != want[i] {
			t.Errorf("step %d is %q, want %q", i, s.Name, want[i])
		}
	}
	if !strings.Contains(log.String(), "[ok  ] eval gptq") {
		t.Errorf("progress log lacks the last step:\n%s", log.String())
	}
}

func TestDemoMissingTestdata(t *testing.T) {
	_, err := Run(context.Background(), Options{Testdata: t.TempDir(), WorkDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("err = %v", err)
	}
}

// TestCheckLabels: the CHECK column is written from verify's presets and
// the GPTQ bar, and reads as the table always has.
func TestCheckLabels(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{label(preset("exact")), "max rel Δlogit ≤ 1e-4"},
		{label(preset("quantized")), "KL ≤ 0.02, top-1 ≥ 90%, ppl ×≤1.10"},
		{fmt.Sprintf("KL ≤ %g×RTN, top-1 ≥ %.3g%%, ppl ±%.3g%%", gptqKLvsRTN, 100*gptqMinTop1, 100*(gptqMaxPPL-1)), "KL ≤ 0.4×RTN, top-1 ≥ 97%, ppl ±0.5%"},
	} {
		if tc.got != tc.want {
			t.Errorf("label %q, want %q", tc.got, tc.want)
		}
	}
	m := verify.Metrics{MaxRelLogitDiff: 2e-4}
	if check(preset("exact"), m) {
		t.Error("max rel logit 2e-4 passes the exact preset")
	}
}
