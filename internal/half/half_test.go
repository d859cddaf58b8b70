package half

import (
	"math"
	"testing"
)

// roundToF16 is a slow, obviously-correct reference: it scans every finite
// binary16 value of the same sign for the nearest one (distances computed
// exactly in float64), ties to the even pattern, Inf from 65520 up.
func roundToF16(f float32) uint16 {
	sign := uint16(0)
	if math.Signbit(float64(f)) {
		sign = 0x8000
	}
	a := math.Abs(float64(f))
	if a >= 65520 {
		return sign | 0x7c00
	}
	best, bestDist := uint16(0), math.Inf(1)
	for h := uint16(0); h < 0x7c00; h++ {
		d := math.Abs(a - float64(F16ToF32(h)))
		if d < bestDist || (d == bestDist && h&1 == 0) {
			best, bestDist = h, d
		}
	}
	return sign | best
}

func TestF16RoundTripAllHalves(t *testing.T) {
	for h := 0; h < 0x10000; h++ {
		f := F16ToF32(uint16(h))
		if math.IsNaN(float64(f)) {
			if g := F32ToF16(f); g&0x7c00 != 0x7c00 || g&0x3ff == 0 {
				t.Fatalf("NaN %#04x → %#04x is not NaN", h, g)
			}
			continue
		}
		if g := F32ToF16(f); g != uint16(h) {
			t.Fatalf("F16 %#04x → %v → %#04x", h, f, g)
		}
	}
}

func TestF32ToF16RoundsToNearestEven(t *testing.T) {
	cases := []float32{0, 1, -1, 65504, 65519, 65520, 1e6, 5.96e-8, 2.98e-8, 2.99e-8, 1e-9, 6.1e-5, 6.09e-5,
		1.0009765625, 1.00048828125, 1.000732421875, 3.14159265, -2.718281828, 1.5e-7, 3e-5}
	for i := 0; i < 2000; i++ {
		cases = append(cases, math.Float32frombits(uint32(i)*2147483+12345))
	}
	for _, f := range cases {
		if math.IsNaN(float64(f)) {
			continue
		}
		if got, want := F32ToF16(f), roundToF16(f); got != want {
			t.Errorf("F32ToF16(%v) = %#04x, want %#04x", f, got, want)
		}
	}
}

func TestBF16(t *testing.T) {
	cases := []struct {
		f    float32
		want uint16
	}{
		{1, 0x3f80},
		{math.Float32frombits(0x3f808000), 0x3f80}, // tie → even (down)
		{math.Float32frombits(0x3f818000), 0x3f82}, // tie → even (up)
		{math.Float32frombits(0x3f808001), 0x3f81}, // above tie
		{math.Float32frombits(0x7f7fffff), 0x7f80}, // overflow to Inf
		{float32(math.Inf(-1)), 0xff80},
	}
	for _, c := range cases {
		if got := F32ToBF16(c.f); got != c.want {
			t.Errorf("F32ToBF16(%#08x) = %#04x, want %#04x", math.Float32bits(c.f), got, c.want)
		}
	}
	if g := F32ToBF16(float32(math.NaN())); g&0x7f80 != 0x7f80 || g&0x7f == 0 {
		t.Errorf("NaN → %#04x", g)
	}
	for h := 0; h < 0x10000; h++ {
		f := BF16ToF32(uint16(h))
		if math.IsNaN(float64(f)) {
			continue
		}
		if F32ToBF16(f) != uint16(h) {
			t.Fatalf("bf16 %#04x does not round-trip", h)
		}
	}
}

func BenchmarkWidenBF16(b *testing.B) {
	src := make([]uint16, 1<<16)
	dst := make([]float32, len(src))
	b.SetBytes(int64(2 * len(src)))
	for b.Loop() {
		WidenBF16(dst, src)
	}
}
