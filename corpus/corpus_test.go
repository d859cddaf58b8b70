package corpus

import (
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestWindows(t *testing.T) {
	toks := make([]int, 100)
	for i := range toks {
		toks[i] = i
	}
	w, err := EvalWindows(toks, 3, 30)
	if err != nil || len(w) != 3 || w[2][0] != 60 || len(w[2]) != 30 {
		t.Fatalf("%v %v", w, err)
	}
	if _, err := EvalWindows(toks, 4, 30); err == nil {
		t.Error("too few tokens accepted")
	}
	r1, _ := RandomWindows(toks, 5, 10, 7)
	r2, _ := RandomWindows(toks, 5, 10, 7)
	r3, _ := RandomWindows(toks, 5, 10, 8)
	if !cmp.Equal(r1, r2) || cmp.Equal(r1, r3) {
		t.Error("random windows not reproducible per seed")
	}
	calib, eval, _ := SplitText("0123456789", 0.9)
	if calib != "012345678" || eval != "9" {
		t.Errorf("split: %q %q", calib, eval)
	}
}

func TestEvalAndCalibration(t *testing.T) {
	// One token per character: the windows are the characters' codes.
	encode := func(s string) []int {
		out := make([]int, len(s))
		for i := range s {
			out[i] = int(s[i])
		}
		return out
	}
	text := "abcdefghijklmnopqrstuvwxyz0123456789"
	w, err := Eval(text, encode, 0.5, 2, 4)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]int{encode("stuv"), encode("wxyz")}
	if diff := cmp.Diff(want, w); diff != "" {
		t.Errorf("eval windows (-want +got):\n%s", diff)
	}
	c, err := Calibration(text, encode, 0.5, 8, 5, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, win := range c {
		if len(win) != 5 || win[4] > int('r') {
			t.Errorf("calibration window %v leaves the first half", win)
		}
	}
	if _, err := Calibration(text, encode, 0.1, 1, 5, 1); err == nil {
		t.Error("a calibration part shorter than one window was accepted")
	}
}

// TestCheckSplit: fractions outside [0, 1], NaN included, are refused
// before any slicing (a NaN once panicked in SplitText).
func TestCheckSplit(t *testing.T) {
	for _, at := range []float64{-0.1, 1.5, math.NaN(), math.Inf(1)} {
		if err := CheckSplit(at); err == nil {
			t.Errorf("CheckSplit(%g) accepted", at)
		}
		if _, _, err := SplitText("abc", at); err == nil {
			t.Errorf("SplitText at %g accepted", at)
		}
	}
	for _, at := range []float64{0, 0.9, 1} {
		if err := CheckSplit(at); err != nil {
			t.Errorf("CheckSplit(%g): %v", at, err)
		}
	}
}
