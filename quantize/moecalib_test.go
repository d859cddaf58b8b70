package quantize

import (
	"strings"
	"testing"

	"github.com/moeforge/moeforge/corpus"
	"github.com/moeforge/moeforge/formats/gptq"
)

func TestParseMoECalib(t *testing.T) {
	for s, want := range map[string]string{"": "routed", "routed": "routed", "all-experts": "all-experts", "top-k=8": "top-k=8"} {
		m, err := ParseMoECalib(s)
		if err != nil || m.String() != want {
			t.Errorf("%q: %v, %v; want %s", s, m, err, want)
		}
	}
	for _, s := range []string{"top-k=0", "top-k=x", "top-k", "all"} {
		if _, err := ParseMoECalib(s); err == nil || !strings.Contains(err.Error(), "moe-calib") {
			t.Errorf("%q accepted (%v)", s, err)
		}
	}
}

// TestMoECalibModes on qwen2_moe_tiny (16 experts, top-4):
//   - top-k=4 selects what the router selects, so every expert module gets
//     the routed token counts and the same codes as routed calibration;
//   - all-experts gives every expert every token (no expert starves);
//   - top-k=8 gives each expert at least its routed tokens and 2× the
//     routings in total;
//
// and each output passes the checks of TestRunTinyCheckpoints.
func TestMoECalibModes(t *testing.T) {
	src := tinyModel(t, "qwen2_moe_tiny")
	ck := openCheckpoint(t, src)
	calib := corpus.RandomIDs(4, 24, ck.Config.VocabSize, 7)
	run := func(mode string) (*Report, map[string][]uint8) {
		opt := defaultOptions()
		opt.ExpertFallback = FallbackAllTokens
		var err error
		if opt.MoECalib, err = ParseMoECalib(mode); err != nil {
			t.Fatal(err)
		}
		dir, rep, layers := quantizeTo(t, src, calib, opt)
		checkOutput(t, ck, dir, rep, layers, opt)
		codes := map[string][]uint8{}
		for n, l := range layers {
			codes[n] = l.Codes
		}
		return rep, codes
	}
	tokens := func(rep *Report) map[string]int {
		m := map[string]int{}
		for _, mr := range rep.Modules {
			m[mr.Name] = mr.Tokens
		}
		return m
	}
	routedRep, routedCodes := run("routed")
	topRep, topCodes := run("top-k=4")
	allRep, _ := run("all-experts")
	top8Rep, _ := run("top-k=8")
	rt, tt, at, t8 := tokens(routedRep), tokens(topRep), tokens(allRep), tokens(top8Rep)
	total := 4 * 24
	sumR, sum8 := 0, 0
	for _, mr := range routedRep.Modules {
		n := mr.Name
		if mr.Expert < 0 {
			continue
		}
		if tt[n] != rt[n] {
			t.Errorf("%s: top-k=4 %d tokens, routed %d", n, tt[n], rt[n])
		}
		if at[n] != total {
			t.Errorf("%s: all-experts %d tokens, want %d", n, at[n], total)
		}
		if t8[n] < rt[n] {
			t.Errorf("%s: top-k=8 %d tokens < routed %d", n, t8[n], rt[n])
		}
		sumR += rt[n]
		sum8 += t8[n]
	}
	if sum8 != 2*sumR {
		t.Errorf("top-k=8 routings %d, want 2× routed %d", sum8, sumR)
	}
	same, all := 0, 0
	for n, c := range routedCodes {
		for i := range c {
			all++
			if topCodes[n][i] == c[i] {
				same++
			}
		}
	}
	if float64(same) < 0.999*float64(all) {
		t.Errorf("top-k=4 codes equal routed codes for %d of %d weights", same, all)
	}
	if allRep.Totals.StarvedExpert != 0 || allRep.MoECalib != "all-experts" {
		t.Errorf("all-experts: %d starved experts, moe_calib %q", allRep.Totals.StarvedExpert, allRep.MoECalib)
	}
}

// TestDynamicSettings: dynamic rules change bits, group size, sym and
// act-order per module through GPTQ (every observed layer has its rule's
// layout and groups), and checkOutput's checks hold for the mixed output.
func TestDynamicSettings(t *testing.T) {
	src := tinyModel(t, "qwen2_moe_tiny")
	ck := openCheckpoint(t, src)
	opt := defaultOptions()
	d, err := gptq.ParseDynamic([]byte(`{"+:.*self_attn\\.(q|k)_proj": {"bits": 8, "group_size": 16, "desc_act": true},
		"+:.*shared_expert\\..*": {"bits": 3, "sym": false, "group_size": -1}, "+:.*\\.experts\\..*": {"bits": 2}}`))
	if err != nil {
		t.Fatal(err)
	}
	opt.Config.Dynamic = d
	dir, rep, layers := quantizeTo(t, src, corpus.RandomIDs(4, 24, ck.Config.VocabSize, 2), opt)
	checkOutput(t, ck, dir, rep, layers, opt)
	for name, l := range layers {
		bits, groups := 4, ck.Config.HiddenSize/32
		switch {
		case strings.Contains(name, "q_proj") || strings.Contains(name, "k_proj"):
			bits, groups = 8, ck.Config.HiddenSize/16
		case strings.Contains(name, "shared_expert."):
			bits, groups = 3, 1
		case strings.Contains(name, ".experts."):
			bits = 2
			if strings.HasSuffix(name, "down_proj") {
				groups = 1 // in = 32 ≤ group 32
			}
		}
		if l.Layout.Bits != bits || l.Groups != groups {
			t.Errorf("%s: %d-bit with %d groups, want %d-bit, %d", name, l.Layout.Bits, l.Groups, bits, groups)
		}
	}
}
