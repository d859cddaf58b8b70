package verify

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// Inputs describe what was compared.
type Inputs struct {
	// Ref and Candidate are the checkpoint directories.
	Ref       string `json:"ref"`
	Candidate string `json:"candidate"`
	// Source is "text", "ids" or "random".
	Source string `json:"source"`
	// File is the --text or --ids file.
	File string `json:"file,omitempty"`
	// SplitAt is the character fraction where the evaluation part of the
	// text starts (source "text").
	SplitAt *float64 `json:"split_at,omitempty"`
	// Seed draws the random ids (source "random").
	Seed *uint64 `json:"seed,omitempty"`
	// Sequences × SeqLen tokens were run through both models.
	Sequences int `json:"sequences"`
	SeqLen    int `json:"seqlen"`
	// Batch is the number of sequences run together.
	Batch int `json:"batch"`
}

// Report is the outcome of a verification: the JSON document that
// `moeforge verify --json` prints, and the source of the text and Markdown
// renderings. docs/verify.md documents its schema.
type Report struct {
	// Pass is true when every check passed.
	Pass bool `json:"pass"`
	// Failed names the thresholds that failed (empty when Pass).
	Failed     []string   `json:"failed"`
	Metrics    Metrics    `json:"metrics"`
	Thresholds Thresholds `json:"thresholds"`
	Checks     []Check    `json:"checks"`
	Inputs     Inputs     `json:"inputs"`
	// Layers and Divergence are present with the per-layer comparison.
	Layers     []LayerResult `json:"layers,omitempty"`
	Divergence *Divergence   `json:"divergence,omitempty"`
}

// NewReport evaluates the thresholds on a result.
func NewReport(in Inputs, res Result, th Thresholds) (*Report, error) {
	checks, err := th.Evaluate(res.Metrics, res.Layers)
	if err != nil {
		return nil, err
	}
	r := &Report{
		Metrics: res.Metrics, Thresholds: th.clone(), Checks: checks,
		Inputs: in, Layers: res.Layers,
	}
	if checks == nil {
		r.Checks = []Check{}
	}
	r.Failed = Failed(checks)
	r.Pass = len(r.Failed) == 0
	if len(res.Layers) > 0 {
		d := FirstDivergence(res.Layers, th.hiddenLimit())
		r.Divergence = &d
	}
	return r, nil
}

// row is one line of the metrics table.
type row struct {
	label, value string
	check        *Check
}

func (r *Report) rows() []row {
	m := r.Metrics
	byName := map[string]*Check{}
	for i := range r.Checks {
		byName[r.Checks[i].Name] = &r.Checks[i]
	}
	rows := []row{
		{"max |Δlogit|", fmtG(m.MaxAbsLogitDiff), nil},
		{"max |Δlogit| / max |logit|", fmtG(m.MaxRelLogitDiff), byName[NameMaxRelLogit]},
		{"mean KL(ref‖cand), nats", fmtG(m.MeanKL), byName[NameMaxKL]},
		{"max KL(ref‖cand), nats", fmtG(m.MaxKL), byName[NameMaxTokenKL]},
		{"top-1 agreement", fmtPct(m.Top1Agreement), byName[NameMinTop1]},
		{"perplexity, reference", fmt.Sprintf("%.4f", m.PPLRef), nil},
		{"perplexity, candidate", fmt.Sprintf("%.4f", m.PPLCand), nil},
		{"perplexity ratio", fmt.Sprintf("%.5f", m.PPLRatio), byName[NameMaxPPLRatio]},
	}
	if c := byName[NameMaxRelHidden]; c != nil {
		rows = append(rows, row{"worst layer |Δh| / max |h|", fmtG(c.Value), c})
	}
	return rows
}

func limitText(c *Check) string {
	if c == nil {
		return ""
	}
	op := "≤"
	v := fmtG(c.Limit)
	if c.Op == ">=" {
		op = "≥"
		if c.Name == NameMinTop1 {
			v = fmtPct(c.Limit)
		}
	}
	return op + " " + v
}

func resultText(c *Check) string {
	switch {
	case c == nil:
		return ""
	case c.Pass:
		return "PASS"
	}
	return "FAIL"
}

// Verdict is the one-line outcome: "PASS" or "FAIL: name, name".
func (r *Report) Verdict() string {
	switch {
	case !r.Pass:
		return "FAIL: " + strings.Join(r.Failed, ", ")
	case len(r.Checks) == 0:
		return "PASS (no thresholds set: measured only)"
	}
	return "PASS"
}

func (r *Report) inputsLine() string {
	in := r.Inputs
	src := in.Source
	switch in.Source {
	case "text":
		src = "text " + in.File
		if in.SplitAt != nil {
			src += fmt.Sprintf(", evaluation part after %g%% of the characters", 100**in.SplitAt)
		}
	case "ids":
		src = "ids " + in.File
	case "random":
		if in.Seed != nil {
			src = fmt.Sprintf("random ids, seed %d", *in.Seed)
		}
	}
	return fmt.Sprintf("%d sequences × %d tokens (%s)", in.Sequences, in.SeqLen, src)
}

// WriteText writes the human-readable report: inputs, the metrics table
// with each threshold and PASS/FAIL, the per-layer table when present, and
// the verdict.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "reference: %s\ncandidate: %s\ninputs:    %s\n\n", r.Inputs.Ref, r.Inputs.Candidate, r.inputsLine())
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "metric\tvalue\tthreshold\tresult")
	for _, row := range r.rows() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", row.label, row.value, limitText(row.check), resultText(row.check))
	}
	tw.Flush()
	if len(r.Layers) > 0 {
		b.WriteString("\n")
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "layer\t|Δh| / max |h|\tmax |Δh|\tsame experts\texpert overlap\t")
		for _, l := range r.Layers {
			same, ov := "-", "-"
			if l.Routing != nil {
				same, ov = fmtPct(l.Routing.SetAgreement), fmtPct(l.Routing.MeanOverlap)
			}
			mark := ""
			if r.Divergence != nil && r.Divergence.Layer == l.Layer {
				mark = "← first divergent"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", l.Layer, fmtG(l.RelError), fmtG(l.MaxAbsDiff), same, ov, mark)
		}
		tw.Flush()
		b.WriteString(r.divergenceLine() + "\n")
	}
	fmt.Fprintf(&b, "\n%s\n", r.Verdict())
	_, err := io.WriteString(w, trimLines(b.String()))
	return err
}

// trimLines drops the spaces tabwriter leaves after a row's last cell.
func trimLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n")
}

func (r *Report) divergenceLine() string {
	d := r.Divergence
	if d == nil {
		return ""
	}
	switch {
	case d.Layer < 0 && d.Rule == "threshold":
		return fmt.Sprintf("no layer diverges: every |Δh| / max |h| ≤ %s", fmtG(*d.Threshold))
	case d.Layer < 0:
		return "no layer diverges: hidden states are identical"
	}
	e := r.Layers[0].RelError
	for _, l := range r.Layers {
		if l.Layer == d.Layer {
			e = l.RelError
		}
	}
	if d.Rule == "threshold" {
		return fmt.Sprintf("first divergent layer: %d (|Δh| / max |h| = %s > %s)", d.Layer, fmtG(e), fmtG(*d.Threshold))
	}
	return fmt.Sprintf("first divergent layer: %d (largest increase of |Δh| / max |h|, to %s; no threshold in effect)", d.Layer, fmtG(e))
}

// WriteMarkdown writes the report as Markdown, for a CI job summary
// ($GITHUB_STEP_SUMMARY) or a pull-request comment.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	icon := "✅"
	if !r.Pass {
		icon = "❌"
	}
	fmt.Fprintf(&b, "### %s moeforge verify: %s\n\n", icon, mdEscape(r.Verdict()))
	fmt.Fprintf(&b, "- reference: `%s`\n- candidate: `%s`\n- inputs: %s\n\n", r.Inputs.Ref, r.Inputs.Candidate, mdEscape(r.inputsLine()))
	b.WriteString("| metric | value | threshold | result |\n| --- | ---: | ---: | :---: |\n")
	for _, row := range r.rows() {
		res := resultText(row.check)
		switch res {
		case "PASS":
			res = "✅ PASS"
		case "FAIL":
			res = "❌ FAIL"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", mdEscape(row.label), row.value, limitText(row.check), res)
	}
	if len(r.Layers) > 0 {
		b.WriteString("\n| layer | \\|Δh\\| / max \\|h\\| | max \\|Δh\\| | same experts | expert overlap |\n| ---: | ---: | ---: | ---: | ---: |\n")
		for _, l := range r.Layers {
			same, ov := "–", "–"
			if l.Routing != nil {
				same, ov = fmtPct(l.Routing.SetAgreement), fmtPct(l.Routing.MeanOverlap)
			}
			layer := fmt.Sprint(l.Layer)
			if r.Divergence != nil && r.Divergence.Layer == l.Layer {
				layer = "**" + layer + "** ⚠"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", layer, fmtG(l.RelError), fmtG(l.MaxAbsDiff), same, ov)
		}
		fmt.Fprintf(&b, "\n%s\n", mdEscape(r.divergenceLine()))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", "\\|", "*", "\\*", "_", "\\_").Replace(s)
}

// fmtG prints a metric compactly: 0, 3.2e-07, 0.0123, 12.5.
func fmtG(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v == math.MaxFloat64:
		return "inf"
	case math.Abs(v) < 1e-3 || math.Abs(v) >= 1e6:
		return fmt.Sprintf("%.3g", v)
	}
	return fmt.Sprintf("%.4g", v)
}

func fmtPct(v float64) string { return fmt.Sprintf("%.2f%%", 100*v) }
