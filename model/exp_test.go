package model

import (
	"math"
	"testing"
)

// TestExp32 checks exp32 against math.Exp over the whole float32 range that
// does not overflow or flush: relative error below 1.2e-7 (two ulp), and the
// edge cases.
func TestExp32(t *testing.T) {
	var worst float64
	for x := -87.3; x < 88.72; x += 1e-3 {
		xf := float32(x)
		want := math.Exp(float64(xf))
		if e := math.Abs(float64(exp32(xf))-want) / want; e > worst {
			worst = e
		}
	}
	if worst > 1.2e-7 {
		t.Errorf("max relative error %.3g > 1.2e-7", worst)
	}
	t.Logf("max relative error %.3g", worst)
	for _, c := range []struct{ x, want float32 }{
		{0, 1}, {-100, 0}, {89, float32(math.Inf(1))}, {float32(math.Inf(-1)), 0}, {float32(math.Inf(1)), float32(math.Inf(1))},
	} {
		if got := exp32(c.x); got != c.want {
			t.Errorf("exp32(%g) = %g, want %g", c.x, got, c.want)
		}
	}
	if nan := exp32(float32(math.NaN())); nan == nan {
		t.Errorf("exp32(NaN) = %g, want NaN", nan)
	}
	if got := silu(-200); got != 0 || math.IsNaN(float64(got)) {
		t.Errorf("silu(-200) = %g, want 0", got)
	}
}
