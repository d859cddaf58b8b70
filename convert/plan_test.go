package convert

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/formats/safetensors"
)

func TestParseLayerList(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr string
	}{
		{"0", []int{0}, ""},
		{"0,2, 5-7", []int{0, 2, 5, 6, 7}, ""},
		{"3-3", []int{3}, ""},
		{"", nil, "names no layer"},
		{"a", nil, `"a" is not a layer index`},
		{"4-2", nil, "a ≤ b"},
	}
	for _, tc := range tests {
		got, err := ParseLayerList(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseLayerList(%q) error %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParseLayerList(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		in   []int
		want string
	}{{nil, "none"}, {[]int{0, 1, 2, 3, 6, 8, 9}, "0-3,6,8-9"}, {[]int{5}, "5"}} {
		if got := FormatLayers(tc.in); got != tc.want {
			t.Errorf("FormatLayers(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestEncode(t *testing.T) {
	tests := []struct {
		dtype   safetensors.DType
		in      []float32
		want    []byte
		wantErr string
	}{
		{safetensors.F32, []float32{1, -2}, []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0}, ""},
		{safetensors.BF16, []float32{1, 1.00390625}, []byte{0x80, 0x3f, 0x80, 0x3f}, ""}, // 1 + 2^-8 ties to even: 1
		{safetensors.F16, []float32{1}, []byte{0, 0x3c}, ""},
		{safetensors.F16, []float32{1, 1e6}, nil, "value 1e+06 at element 1 overflows F16"},
		{safetensors.BF16, []float32{float32(math.Inf(1))}, []byte{0x80, 0x7f}, ""}, // infinity in, infinity out: not an overflow
		{safetensors.F64, []float32{1}, nil, "cannot write dtype F64"},
	}
	for _, tc := range tests {
		got, err := encode("w", tc.dtype, tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("encode(%s, %v) error %v, want %q", tc.dtype, tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("encode(%s, %v) (-want +got):\n%s", tc.dtype, tc.in, diff)
		}
	}
}

func TestParseDType(t *testing.T) {
	for in, want := range map[string]safetensors.DType{"": "", "f32": safetensors.F32, "bf16": safetensors.BF16, "float16": safetensors.F16} {
		if got, err := ParseDType(in); err != nil || got != want {
			t.Errorf("ParseDType(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseDType("int8"); err == nil {
		t.Errorf("ParseDType(int8) accepted")
	}
	for _, tc := range []struct {
		f    float64
		pow2 bool
	}{{1, true}, {2, true}, {0.5, true}, {8, true}, {3, false}, {6, false}, {0, false}} {
		if isPow2(tc.f) != tc.pow2 {
			t.Errorf("isPow2(%g) = %v", tc.f, !tc.pow2)
		}
	}
}

// TestRandom checks the seeded draws: permutations are permutations,
// normals have mean 0 and variance 1 (100k draws: tolerance 0.02 ≈ 6σ of
// the mean's and the variance's estimates), streams depend on their key.
func TestRandom(t *testing.T) {
	p := permutation(newRNG(1, "p"), 1000)
	s := slices.Clone(p)
	slices.Sort(s)
	for i, v := range s {
		if int(v) != i {
			t.Fatalf("permutation is not a permutation of [0, 1000)")
		}
	}
	if slices.Equal(p, permutation(newRNG(1, "q"), 1000)) || !slices.Equal(p, permutation(newRNG(1, "p"), 1000)) {
		t.Errorf("permutations do not depend on (seed, key) only")
	}
	r := newRNG(2, "n")
	const n = 100000
	var sum, sq float64
	for i := 0; i < n; i++ {
		v := normal(r)
		sum += v
		sq += v * v
	}
	mean, variance := sum/n, sq/n-(sum/n)*(sum/n)
	if math.Abs(mean) > 0.02 || math.Abs(variance-1) > 0.02 {
		t.Errorf("normal draws: mean %.4f, variance %.4f; want 0, 1 ± 0.02", mean, variance)
	}
	counts := make([]int, 3)
	for i := 0; i < 30000; i++ {
		counts[intN(r, 3)]++
	}
	for _, c := range counts {
		if c < 9500 || c > 10500 { // ±5σ (σ ≈ 82)
			t.Errorf("intN(3) counts %v, want about 10000 each", counts)
		}
	}
}

// TestWriteCancelled checks that a cancelled write stops with the context's error.
func TestWriteCancelled(t *testing.T) {
	p, err := Upcycle(openCheckpoint(t, denseTiny(t)), UpcycleOptions{Mode: VirtualGroup})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Write(ctx, t.TempDir(), WriteOptions{}); err != context.Canceled {
		t.Errorf("Write on a cancelled context: %v, want context.Canceled", err)
	}
}
