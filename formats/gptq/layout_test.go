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
		{4, "", ""}, {4, "gptq", ""}, {2, "gptq", ""}, {3, "gptq", ""}, {8, "gptq", ""}, {3, "gptq_v2", ""},
		{5, "gptq", "bits=5 is not supported"}, {16, "gptq", "bits=16"}, {0, "gptq", "bits=0"},
		{4, "awq", `checkpoint_format="awq" is not supported`},
	} {
		l, err := LayoutOf(tc.bits, tc.format)
		wantL := Layout{Bits: tc.bits, Format: tc.format}
		if tc.format == "" {
			wantL.Format = FormatV1
		}
		switch {
		case tc.want == "" && (err != nil || l != wantL):
			t.Errorf("LayoutOf(%d, %q) = %v, %v; want %v", tc.bits, tc.format, l, err, wantL)
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

// TestPackWidths: codes and zero points survive a round trip at every
// width and both zero conventions, and the shapes are in·bits/32 words.
func TestPackWidths(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, bits := range Widths {
		for _, format := range []string{FormatV1, FormatV2} {
			lay := Layout{Bits: bits, Format: format}
			out, in, groups := 64, 96, 3
			codes := make([]uint8, in*out)
			for i := range codes {
				codes[i] = uint8(r.IntN(lay.MaxQ() + 1))
			}
			lo, hi := lay.ZeroRange()
			zeros := make([]uint8, groups*out)
			for i := range zeros {
				zeros[i] = uint8(lo + r.IntN(hi-lo+1))
			}
			zeros[0], zeros[1] = uint8(lo), uint8(hi)
			qw, qz := lay.PackCodes(codes, out, in), lay.PackZeros(zeros, out, groups)
			if len(qw) != in*bits/32*out || len(qz) != groups*out*bits/32 {
				t.Fatalf("%v: %d qweight words, %d qzeros words", lay, len(qw), len(qz))
			}
			gotC, gotZ := make([]uint8, len(codes)), make([]uint8, len(zeros))
			lay.UnpackCodes(gotC, qw, out, in)
			lay.UnpackZeros(gotZ, qz, out, groups)
			if !slices.Equal(codes, gotC) || !slices.Equal(zeros, gotZ) {
				t.Errorf("%v: round trip differs", lay)
			}
			// Input 1 of output 0 sits in bits [bits, 2·bits) of word 0.
			if got := uint8(uint32(qw[0]) >> uint(bits) & uint32(lay.MaxQ())); got != codes[out] {
				t.Errorf("%v: code of input 1, output 0 = %d, want %d", lay, got, codes[out])
			}
		}
	}
}

// TestAlign: a layer's dimensions must be whole words of codes.
func TestAlign(t *testing.T) {
	for bits, want := range map[int]int{2: 16, 3: 32, 4: 8, 8: 4} {
		if got := (Layout{Bits: bits, Format: FormatV1}).Align(); got != want {
			t.Errorf("%d bits: Align %d, want %d", bits, got, want)
		}
	}
	if err := (Layout{Bits: 3, Format: FormatV1}).CheckDims(32, 48); err == nil {
		t.Error("3 bits accepted 48 inputs (not a multiple of 32)")
	}
}

// TestAutoGPTQGolden compares the packing with words produced by
// testdata/autogptq_pack.py, which runs AutoGPTQ's QuantLinear.pack loops
// (qweight along inputs; qzeros along outputs, zero−1) on a known 64×32
// matrix of codes and 2 groups of zeros.
func TestAutoGPTQGolden(t *testing.T) {
	golden := map[int]struct{ col0, col5, zrow1 []int32 }{
		2: {[]int32{-229051816, -229051816, -229051816, -229051816},
			[]int32{-1684300901, -1684300901, -1684300901, -1684300901},
			[]int32{-1313754703, -1313754703}},
		3: {[]int32{1417437808, 1651568171, -299150212, 1417437808, 1651568171, -299150212},
			[]int32{2009429111, 1954006388, -982222907, 2009429111, 1954006388, -982222907},
			[]int32{-983687995, 482696732, 1578943838}},
		4: {[]int32{1057362272, 2067946924, -1215391256, -204810972, 1057362272, 2067946924, -1215391256, -204810972},
			[]int32{-374363673, 1764698471, -374363673, 1764698471, -374363673, 1764698471, -374363673, 1764698471},
			[]int32{666987269, -1354112115, 666987269, -1354112115}},
		8: {[]int32{554763776, -1821421514, 1428023996, 1729877138, -915861832, 2064095278, 2113237748, -818701302, 1908479600, 1671421990, -1513227732, 927687810, 421076520, 1261905950, -844791196, -1620890374},
			[]int32{-1973867001, 2117728959, -1033300281, 1458143775, 985218759, 1859734207, -230054393, -972467553, -367440249, 1585027775, 573126215, 908665375, -1703322041, 1310321343, 1376372359, -1505103201},
			[]int32{639307781, 1380400177, 2121492573, -1432382327, -691289931, 66579681, 790894862, 1531987258}},
	}
	const in, out = 64, 32
	for _, bits := range Widths {
		lay := Layout{Bits: bits, Format: FormatV1}
		maxq := lay.MaxQ()
		codes := make([]uint8, in*out)
		for i := 0; i < in; i++ {
			for c := 0; c < out; c++ {
				codes[i*out+c] = uint8(((i*i*5 + i*7 + c*3 + i*c*13) >> 1) % (maxq + 1))
			}
		}
		zmod := maxq + 1
		if bits == 8 {
			zmod = 255
		}
		zeros := make([]uint8, 2*out)
		for g := 0; g < 2; g++ {
			for c := 0; c < out; c++ {
				zeros[g*out+c] = uint8(1 + (g*5+c*11)%zmod)
			}
		}
		qw, qz := lay.PackCodes(codes, out, in), lay.PackZeros(zeros, out, 2)
		rows := in * bits / 32
		col := func(c int) []int32 {
			v := make([]int32, rows)
			for r := range v {
				v[r] = qw[r*out+c]
			}
			return v
		}
		g := golden[bits]
		w := out * bits / 32
		if diff := cmp.Diff(g.col0, col(0)); diff != "" {
			t.Errorf("%d bits: qweight column 0 (-autogptq +moeforge):\n%s", bits, diff)
		}
		if diff := cmp.Diff(g.col5, col(5)); diff != "" {
			t.Errorf("%d bits: qweight column 5 (-autogptq +moeforge):\n%s", bits, diff)
		}
		if diff := cmp.Diff(g.zrow1, qz[w:2*w]); diff != "" {
			t.Errorf("%d bits: qzeros row 1 (-autogptq +moeforge):\n%s", bits, diff)
		}
	}
}

// TestCheckZeros: v1 cannot store an asymmetric zero of 0 and says to use v2;
// v2 can.
func TestCheckZeros(t *testing.T) {
	z := []uint8{3, 0, 5, 7}
	err := Layout{Bits: 3, Format: FormatV1}.CheckZeros(z, 4)
	if err == nil || !strings.Contains(err.Error(), "gptq_v2") {
		t.Errorf("v1 zero 0: %v, want a refusal pointing to gptq_v2", err)
	}
	if err := (Layout{Bits: 3, Format: FormatV2}).CheckZeros(z, 4); err != nil {
		t.Errorf("v2 zero 0: %v", err)
	}
	if err := (Layout{Bits: 3, Format: FormatV2}).CheckZeros([]uint8{8}, 1); err == nil {
		t.Error("v2 3-bit zero 8 accepted")
	}
}

// TestCheckSymZeros: symmetric zeros of the other convention are refused
// naming it; the layout's own, or other values, pass.
func TestCheckSymZeros(t *testing.T) {
	for _, bits := range Widths {
		v1, v2 := Layout{Bits: bits, Format: FormatV1}, Layout{Bits: bits, Format: FormatV2}
		const out, groups = 32, 2
		sym := make([]uint8, out*groups)
		for i := range sym {
			sym[i] = uint8((v1.MaxQ() + 1) / 2)
		}
		asV1, asV2 := v1.PackZeros(sym, out, groups), v2.PackZeros(sym, out, groups)
		if err := v1.CheckSymZeros(asV1, out, groups); err != nil {
			t.Errorf("%d bits: v1 zeros read as v1: %v", bits, err)
		}
		if err := v2.CheckSymZeros(asV2, out, groups); err != nil {
			t.Errorf("%d bits: v2 zeros read as v2: %v", bits, err)
		}
		if err := v1.CheckSymZeros(asV2, out, groups); err == nil || !strings.Contains(err.Error(), "written as gptq_v2") {
			t.Errorf("%d bits: v2 zeros read as v1: %v", bits, err)
		}
		if err := v2.CheckSymZeros(asV1, out, groups); err == nil || !strings.Contains(err.Error(), "written as gptq") {
			t.Errorf("%d bits: v1 zeros read as v2: %v", bits, err)
		}
		if err := v1.CheckSymZeros(asV1[:1], out, groups); err == nil {
			t.Errorf("%d bits: short qzeros accepted", bits)
		}
	}
}
