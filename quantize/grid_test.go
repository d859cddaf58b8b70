package quantize

import (
	"strings"
	"testing"

	"github.com/moeforge/moeforge/formats/gptq"
)

// TestV2ZeroZero: a non-negative weight under an asymmetric grid gets zero
// 0 in gptq_v2 (stored as 0, read back as 0), zero 1 in v1; both pack and
// widen to exactly the layer's weights, and v2's error is no larger.
func TestV2ZeroZero(t *testing.T) {
	const out, in = 32, 64
	w := make([]float32, out*in)
	for i := range w {
		w[i] = float32((i*37)%101) / 100 // in [0, 1]
	}
	errOf := map[string]float64{}
	for _, format := range []string{gptq.FormatV1, gptq.FormatV2} {
		cfg := gptq.Config{Bits: 3, GroupSize: 32, Sym: false, DampPercent: 0.01, CheckpointFormat: format}
		res, err := RTN(w, out, in, cfg)
		if err != nil {
			t.Fatal(err)
		}
		wantZero := uint8(1)
		if format == gptq.FormatV2 {
			wantZero = 0
		}
		for i, z := range res.Layer.Zeros {
			if z != wantZero {
				t.Fatalf("%s: zero %d of %d = %d, want %d", format, i, len(res.Layer.Zeros), z, wantZero)
			}
		}
		checkPacked(t, res.Layer)
		q := res.Layer.Dequantize()
		for i := range q {
			d := float64(q[i] - w[i])
			errOf[format] += d * d
		}
	}
	if !(errOf[gptq.FormatV2] <= errOf[gptq.FormatV1]) {
		t.Errorf("squared error v2 %.4g > v1 %.4g", errOf[gptq.FormatV2], errOf[gptq.FormatV1])
	}
	t.Logf("squared error: v1 %.4g, v2 %.4g", errOf[gptq.FormatV1], errOf[gptq.FormatV2])
}

// TestZeroShiftNotice: RTN in v1 counts the groups it shifted, and a run's
// report says so, pointing to gptq_v2.
func TestZeroShiftNotice(t *testing.T) {
	const out, in = 32, 64
	w := make([]float32, out*in)
	for i := range w {
		w[i] = float32((i*37)%101) / 100
	}
	res, err := RTN(w, out, in, gptq.Config{Bits: 3, GroupSize: 32, DampPercent: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	if res.ZeroShifted != 2*out {
		t.Errorf("ZeroShifted %d, want %d (every group)", res.ZeroShifted, 2*out)
	}
	rep := &Report{Modules: []ModuleReport{{Name: "a", ZeroShifted: 3}, {Name: "b"}}}
	rep.finish()
	if len(rep.Notices) != 1 || !strings.Contains(rep.Notices[0], "3 group grids in 1 modules") || !strings.Contains(rep.Notices[0], "gptq_v2") {
		t.Errorf("notices %q", rep.Notices)
	}
}
