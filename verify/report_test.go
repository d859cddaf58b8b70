package verify

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// sampleReport is a failing per-layer report with made-up numbers.
func sampleReport(t *testing.T) *Report {
	t.Helper()
	split := 0.9
	in := Inputs{Ref: "ref", Candidate: "cand", Source: "text", File: "corpus.txt", SplitAt: &split, Sequences: 16, SeqLen: 256, Batch: 4}
	res := Result{
		Metrics: Metrics{Positions: 4096, MaxAbsLogitDiff: 0.75, MaxRelLogitDiff: 0.031, MeanKL: 0.0042, MaxKL: 0.31,
			Top1Agreement: 0.9487, PPLRef: 34.0101, PPLCand: 34.2552, PPLRatio: 1.00721},
		Layers: []LayerResult{
			{Layer: 0, MaxAbsDiff: 0, RelError: 0, Routing: &Routing{Experts: 16, TopK: 4, SetAgreement: 1, MeanOverlap: 1}},
			{Layer: 1, MaxAbsDiff: 0.5, RelError: 0.02, Routing: &Routing{Experts: 16, TopK: 4, SetAgreement: 1, MeanOverlap: 1}},
			{Layer: 2, MaxAbsDiff: 0.9, RelError: 0.05},
		},
	}
	th := Thresholds{MaxRelLogit: ptr(1e-4), MaxKL: ptr(0.02), MinTop1: ptr(0.9), MaxPPLRatio: ptr(1.1)}
	r, err := NewReport(in, res, th)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", name, diff)
	}
}

func TestReportRendering(t *testing.T) {
	r := sampleReport(t)
	if r.Pass || !cmp.Equal(r.Failed, []string{NameMaxRelLogit}) || r.Divergence.Layer != 1 {
		t.Fatalf("pass=%v failed=%v divergence=%+v", r.Pass, r.Failed, r.Divergence)
	}
	var text, md, js bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	enc := json.NewEncoder(&js)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "report.txt", text.Bytes())
	checkGolden(t, "report.md", md.Bytes())
	checkGolden(t, "report.json", js.Bytes())
}

// TestReportJSONSchema pins the top-level keys docs/verify.md documents.
func TestReportJSONSchema(t *testing.T) {
	keys := func(r *Report) []string {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		var ks []string
		for _, k := range []string{"pass", "failed", "metrics", "thresholds", "checks", "inputs", "layers", "divergence"} {
			if _, ok := m[k]; ok {
				ks = append(ks, k)
			}
		}
		if len(ks) != len(m) {
			t.Errorf("undocumented keys in %s", b)
		}
		return ks
	}
	full := sampleReport(t)
	if diff := cmp.Diff([]string{"pass", "failed", "metrics", "thresholds", "checks", "inputs", "layers", "divergence"}, keys(full)); diff != "" {
		t.Errorf("per-layer report keys (-want +got):\n%s", diff)
	}
	plain, err := NewReport(Inputs{Source: "random"}, Result{Metrics: Metrics{PPLRatio: 1}}, Thresholds{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"pass", "failed", "metrics", "thresholds", "checks", "inputs"}, keys(plain)); diff != "" {
		t.Errorf("plain report keys (-want +got):\n%s", diff)
	}
	b, _ := json.Marshal(plain)
	var back struct {
		Pass   bool     `json:"pass"`
		Failed []string `json:"failed"`
		Checks []Check  `json:"checks"`
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	// Empty lists are [] (not null), so that scripts can iterate them.
	if !back.Pass || back.Failed == nil || back.Checks == nil || plain.Verdict() != "PASS (no thresholds set: measured only)" {
		t.Errorf("plain report: %s, verdict %q", b, plain.Verdict())
	}
}

func TestFmtG(t *testing.T) {
	tests := map[float64]string{0: "0", 3.2e-7: "3.2e-07", 0.0123: "0.0123", 12.5: "12.5", 1.0001: "1", 2e6: "2e+06"}
	for v, want := range tests {
		if got := fmtG(v); got != want {
			t.Errorf("fmtG(%g) = %q, want %q", v, got, want)
		}
	}
}
