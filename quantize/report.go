package quantize

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/moeforge/moeforge/formats/gptq"
)

// Method is how a module was quantized.
type Method string

// Quantization methods.
const (
	MethodGPTQ Method = "gptq"
	MethodRTN  Method = "rtn"
)

// Fallback is what happens to a routed expert that saw fewer calibration
// tokens than the threshold.
type Fallback string

// Expert fallbacks.
const (
	// FallbackRTN rounds the expert's weights to nearest.
	FallbackRTN Fallback = "rtn"
	// FallbackAllTokens runs GPTQ with the expert's Hessian augmented by
	// every calibration token of the layer (routed or not).
	FallbackAllTokens Fallback = "all-tokens"
)

// ModuleReport is what happened to one quantized linear layer.
type ModuleReport struct {
	Name   string `json:"name"`
	Layer  int    `json:"layer"`
	Expert int    `json:"expert"` // routed expert index, -1 otherwise
	Group  int    `json:"group"`  // true-sequential group (1-based, see GroupNames; 0: lm_head)
	Out    int    `json:"out"`
	In     int    `json:"in"`
	// Bits and GroupSize are the module's settings (after dynamic rules).
	Bits      int `json:"bits"`
	GroupSize int `json:"group_size"`
	// Method is gptq, rtn, or gptq+all-tokens (an expert fallback).
	Method string `json:"method"`
	// Tokens is the number of calibration tokens the module's inputs came
	// from (for a routed expert: tokens routed to it).
	Tokens int `json:"tokens"`
	// Fallback is set when the module did not get plain GPTQ because its
	// expert saw fewer than MinTokens tokens.
	Fallback  Fallback `json:"fallback,omitempty"`
	MinTokens int      `json:"min_tokens,omitempty"`
	// Loss is GPTQ's error estimate Σ (w−q)²/(2·Hinv_ii²) (0 for RTN).
	Loss       float64 `json:"loss"`
	Damp       float64 `json:"damp,omitempty"`
	DampRaises int     `json:"damp_raises,omitempty"`
	Dead       int     `json:"dead_inputs,omitempty"`
	// ZeroShifted counts group grids whose asymmetric zero of 0 the v1
	// layout cannot store (shifted to zero 1; gptq_v2 stores them).
	ZeroShifted int     `json:"zero_shifted,omitempty"`
	Seconds     float64 `json:"seconds"`

	order int // position in the layer's forward order
}

// StarvedExpert is a routed expert below the token threshold of some of its
// projections (the threshold depends on a module's input width by default).
type StarvedExpert struct {
	Layer     int      `json:"layer"`
	Expert    int      `json:"expert"`
	Tokens    int      `json:"tokens"`
	MinTokens int      `json:"min_tokens"` // the largest threshold among Modules
	Fallback  Fallback `json:"fallback"`
	Modules   []string `json:"modules"` // projections that fell back
}

// Calibration describes the calibration data.
type Calibration struct {
	Source    string `json:"source"`
	Sequences int    `json:"sequences"`
	SeqLen    int    `json:"seqlen"`
	Tokens    int    `json:"tokens"`
}

// Totals sums the per-module figures.
type Totals struct {
	Modules       int     `json:"modules"`
	GPTQ          int     `json:"gptq"`
	RTN           int     `json:"rtn"`
	AllTokens     int     `json:"all_tokens"`
	StarvedExpert int     `json:"starved_experts"`
	DampRaised    int     `json:"damp_raised"`
	Loss          float64 `json:"loss"`
	Seconds       float64 `json:"seconds"`
}

// Report is the record of a whole-model quantization (--report).
type Report struct {
	Input           string   `json:"input"`
	Output          string   `json:"output"`
	Method          Method   `json:"method"`
	Bits            int      `json:"bits"`
	GroupSize       int      `json:"group_size"`
	Sym             bool     `json:"sym"`
	DescAct         bool     `json:"desc_act"`
	StaticGroups    bool     `json:"static_groups"`
	Damp            float64  `json:"damp_percent"`
	TrueSequential  bool     `json:"true_sequential"`
	MinExpertTokens string   `json:"min_expert_tokens"`
	ExpertFallback  Fallback `json:"expert_fallback"`
	MoECalib        string   `json:"moe_calib"`
	// CheckpointFormat is gptq (v1) or gptq_v2; Dynamic lists the
	// per-module rules ("+:REGEX {bits 8}"); LMHead: lm_head quantized.
	CheckpointFormat string          `json:"checkpoint_format"`
	Dynamic          []string        `json:"dynamic,omitempty"`
	LMHead           bool            `json:"lm_head"`
	Calibration      *Calibration    `json:"calibration,omitempty"`
	GroupNames       []string        `json:"group_names"`
	Modules          []ModuleReport  `json:"modules"`
	Starved          []StarvedExpert `json:"starved_experts"`
	Notices          []string        `json:"notices,omitempty"`
	Totals           Totals          `json:"totals"`
	Seconds          float64         `json:"seconds"`
	// ResumedLayers is the number of layers taken from a resume state.
	ResumedLayers int `json:"resumed_layers,omitempty"`
	// Phases splits Seconds by kind of work with the FLOPs counted in each.
	Phases []Phase `json:"phases,omitempty"`
}

// finish computes the totals and sorts the lists.
func (r *Report) finish() {
	sort.SliceStable(r.Modules, func(a, b int) bool {
		ma, mb := r.Modules[a], r.Modules[b]
		if ma.Layer != mb.Layer {
			return ma.Layer < mb.Layer
		}
		return ma.order < mb.order
	})
	sort.Slice(r.Starved, func(a, b int) bool {
		sa, sb := r.Starved[a], r.Starved[b]
		if sa.Layer != sb.Layer {
			return sa.Layer < sb.Layer
		}
		return sa.Expert < sb.Expert
	})
	t := Totals{StarvedExpert: len(r.Starved)}
	shifted, modules := 0, 0
	for _, m := range r.Modules {
		t.Modules++
		switch {
		case m.Fallback == FallbackAllTokens:
			t.AllTokens++
		case m.Method == string(MethodRTN):
			t.RTN++
		default:
			t.GPTQ++
		}
		if m.DampRaises > 0 {
			t.DampRaised++
		}
		t.Loss += m.Loss
		t.Seconds += m.Seconds
		shifted += m.ZeroShifted
		if m.ZeroShifted > 0 {
			modules++
		}
	}
	r.Totals = t
	if shifted > 0 {
		r.Notices = append(r.Notices, fmt.Sprintf("%d group grids in %d modules had an asymmetric zero of 0, which the gptq v1 layout cannot store (it stores zero−1): they use zero 1 and a coarser scale; --format gptq_v2 stores them exactly", shifted, modules))
	}
}

// WriteSummary prints the human summary: settings, per-layer figures, every
// starved expert with its token count and fallback, raised damping, totals.
func (r *Report) WriteSummary(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "quantized %s → %s\n", r.Input, r.Output)
	group := fmt.Sprint(r.GroupSize)
	if r.Method == MethodRTN {
		fmt.Fprintf(&b, "method rtn, %d-bit, group %s, sym %v\n", r.Bits, group, r.Sym)
	} else {
		fmt.Fprintf(&b, "method %s, %d-bit, group %s, sym %v, desc_act %v, static_groups %v, damp %g, true_sequential %v\n",
			r.Method, r.Bits, group, r.Sym, r.DescAct, r.StaticGroups, r.Damp, r.TrueSequential)
	}
	fmt.Fprintf(&b, "checkpoint_format %s, lm_head %v", r.CheckpointFormat, r.LMHead)
	if r.Method != MethodRTN {
		fmt.Fprintf(&b, ", moe_calib %s", r.MoECalib)
	}
	b.WriteString("\n")
	for _, d := range r.Dynamic {
		fmt.Fprintf(&b, "dynamic %s\n", d)
	}
	if r.ResumedLayers > 0 {
		fmt.Fprintf(&b, "resumed: layers 0-%d from the interrupted run's state\n", r.ResumedLayers-1)
	}
	if c := r.Calibration; c != nil {
		fmt.Fprintf(&b, "calibration: %d sequences × %d tokens (%d tokens) from %s\n", c.Sequences, c.SeqLen, c.Tokens, c.Source)
	}
	// One row per module, except routed experts: one row per layer and
	// projection summing them (their starved members are listed below).
	type expertSum struct {
		n, fallbacks       int
		loss, secs, damp   float64
		minTok, maxTok     int
		layer              int
		proj, method, name string
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "layer\tmodule\tmethod\ttokens\tGPTQ loss\tdamp\tseconds\t")
	var pending []*expertSum
	flush := func() {
		for _, e := range pending {
			method := e.method
			if e.fallbacks > 0 {
				method = fmt.Sprintf("%s, %d fallback", method, e.fallbacks)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d–%d\t%.4g\t%g\t%.2f\t\n", e.layer, e.name, method, e.minTok, e.maxTok, e.loss, e.damp, e.secs)
		}
		pending = nil
	}
	last := -1
	for _, m := range r.Modules {
		if m.Layer != last {
			flush()
			last = m.Layer
		}
		prefix := fmt.Sprintf("model.layers.%d.", m.Layer)
		name := strings.TrimPrefix(m.Name, prefix)
		if m.Expert < 0 {
			damp := "-"
			if m.Method != string(MethodRTN) {
				damp = fmt.Sprint(m.Damp)
			}
			tokens, loss := "-", "-"
			if m.Method != string(MethodRTN) {
				tokens, loss = fmt.Sprint(m.Tokens), fmt.Sprintf("%.4g", m.Loss)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%.2f\t\n", m.Layer, name, m.Method, tokens, loss, damp, m.Seconds)
			continue
		}
		proj := name[strings.LastIndex(name, ".")+1:]
		var e *expertSum
		for _, p := range pending {
			if p.proj == proj {
				e = p
			}
		}
		if e == nil {
			gen := strings.Replace(name, fmt.Sprintf(".%d.", m.Expert), ".*.", 1)
			e = &expertSum{layer: m.Layer, proj: proj, name: gen, minTok: m.Tokens, maxTok: m.Tokens, method: string(MethodGPTQ)}
			pending = append(pending, e)
		}
		e.n++
		e.loss += m.Loss
		e.secs += m.Seconds
		e.damp = max(e.damp, m.Damp)
		e.minTok, e.maxTok = min(e.minTok, m.Tokens), max(e.maxTok, m.Tokens)
		if m.Fallback != "" {
			e.fallbacks++
		}
		if m.Method == string(MethodRTN) && m.Fallback == "" {
			e.method = string(MethodRTN)
		}
	}
	flush()
	tw.Flush()
	if len(r.Starved) > 0 {
		fmt.Fprintf(&b, "\n%d experts saw too few calibration tokens (fallback):\n", len(r.Starved))
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "layer\texpert\ttokens\tthreshold\tfallback\tprojections\t")
		for _, s := range r.Starved {
			fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%s\t%s\t\n", s.Layer, s.Expert, s.Tokens, s.MinTokens, s.Fallback, strings.Join(s.Modules, ","))
		}
		tw.Flush()
	}
	for _, m := range r.Modules {
		if m.DampRaises > 0 {
			fmt.Fprintf(&b, "damping raised to %g for %s (Cholesky failed %d times)\n", m.Damp, m.Name, m.DampRaises)
		}
	}
	for _, n := range r.Notices {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	t := r.Totals
	fmt.Fprintf(&b, "\ntotal: %d modules (%d GPTQ, %d RTN, %d GPTQ with all-token Hessian), %d starved experts, damping raised for %d; GPTQ loss %.4g; %.1f s quantizing, %.1f s in all\n",
		t.Modules, t.GPTQ, t.RTN, t.AllTokens, t.StarvedExpert, t.DampRaised, t.Loss, t.Seconds, r.Seconds)
	if len(r.Phases) > 0 {
		b.WriteString("\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "phase\tseconds\tGFLOP\tGFLOPS\t")
		for _, p := range r.Phases {
			gf, rate := "-", "-"
			if p.GFLOP > 0 {
				gf, rate = fmt.Sprintf("%.0f", p.GFLOP), fmt.Sprintf("%.1f", p.GFLOPS)
			}
			fmt.Fprintf(tw, "%s\t%.1f\t%s\t%s\t\n", p.Name, p.Seconds, gf, rate)
		}
		tw.Flush()
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// describeDynamic writes each dynamic rule as its key and settings.
func describeDynamic(d gptq.Dynamic) []string {
	var out []string
	for _, r := range d {
		var set []string
		if r.Bits != nil {
			set = append(set, fmt.Sprintf("bits %d", *r.Bits))
		}
		if r.GroupSize != nil {
			set = append(set, fmt.Sprintf("group_size %d", *r.GroupSize))
		}
		if r.Sym != nil {
			set = append(set, fmt.Sprintf("sym %v", *r.Sym))
		}
		if r.DescAct != nil {
			set = append(set, fmt.Sprintf("desc_act %v", *r.DescAct))
		}
		if r.Skip {
			set = append(set, "not quantized")
		}
		out = append(out, r.Key()+" → "+strings.Join(set, ", "))
	}
	return out
}
