package gptq

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/moeforge/moeforge/formats/safetensors"
)

func TestLayoutOf(t *testing.T) {
	for _, tc := range []struct {
		bits   int
		format string
		want   string // error substring, "" = accepted
	}{
		{4, "", ""}, {4, "gptq", ""},
		{8, "gptq", "bits=8 is not supported"}, {3, "gptq", "bits=3"},
		{4, "gptq_v2", `checkpoint_format="gptq_v2" is not supported`},
	} {
		l, err := LayoutOf(tc.bits, tc.format)
		switch {
		case tc.want == "" && (err != nil || l != V1Int4):
			t.Errorf("LayoutOf(%d, %q) = %v, %v; want V1Int4", tc.bits, tc.format, l, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("LayoutOf(%d, %q) error = %v, want %q", tc.bits, tc.format, err, tc.want)
		}
	}
}

func TestLayoutTensors(t *testing.T) {
	want := []safetensors.Info{
		{Name: "m.qweight", DType: safetensors.I32, Shape: []int{8, 16}},
		{Name: "m.qzeros", DType: safetensors.I32, Shape: []int{2, 2}},
		{Name: "m.scales", DType: safetensors.F16, Shape: []int{2, 16}},
		{Name: "m.g_idx", DType: safetensors.I32, Shape: []int{64}},
	}
	if diff := cmp.Diff(want, V1Int4.Tensors("m", 16, 64, 2)); diff != "" {
		t.Errorf("Tensors (-want +got):\n%s", diff)
	}
	var suffixes []string
	for _, in := range want {
		suffixes = append(suffixes, strings.TrimPrefix(in.Name, "m"))
	}
	if !slices.Equal(suffixes, Suffixes) {
		t.Errorf("Suffixes %v, tensors %v", Suffixes, suffixes)
	}
}

// TestPackWidths: the packing methods are written for any width dividing 32
// (AutoGPTQ packs 2 and 8 bits the way it packs 4); codes and zero points
// survive a round trip at each, though only 4 bits is read and written
// today (LayoutOf).
func TestPackWidths(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, bits := range []int{2, 4, 8} {
		lay := Layout{Bits: bits, Format: FormatV1}
		out, in, groups := 32, 64, 3
		codes := make([]uint8, in*out)
		for i := range codes {
			codes[i] = uint8(r.IntN(lay.MaxQ() + 1))
		}
		lo, hi := lay.ZeroRange()
		zeros := make([]uint8, groups*out)
		for i := range zeros {
			zeros[i] = uint8(lo + r.IntN(hi-lo+1))
		}
		qw, qz := lay.PackCodes(codes, out, in), lay.PackZeros(zeros, out, groups)
		if len(qw) != in*bits/32*out || len(qz) != groups*out*bits/32 {
			t.Fatalf("%d bits: %d qweight words, %d qzeros words", bits, len(qw), len(qz))
		}
		gotC, gotZ := make([]uint8, len(codes)), make([]uint8, len(zeros))
		lay.UnpackCodes(gotC, qw, out, in)
		lay.UnpackZeros(gotZ, qz, out, groups)
		if !slices.Equal(codes, gotC) || !slices.Equal(zeros, gotZ) {
			t.Errorf("%d bits: round trip differs", bits)
		}
		// Input 1 of output 0 sits in bits [bits, 2·bits) of word 0.
		if got := uint8(uint32(qw[0]) >> uint(bits) & uint32(lay.MaxQ())); got != codes[out] {
			t.Errorf("%d bits: code of input 1, output 0 = %d, want %d", bits, got, codes[out])
		}
	}
}
