package gptq

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/internal/gemm"
	"github.com/moeforge/moeforge/internal/half"
)

// randomLayer fills a layer with random codes, zeros in [1, 16], positive
// scales and the given g_idx.
func randomLayer(rng *rand.Rand, out, in, groups int, gidx []int32) *Layer {
	l := NewLayer(out, in, groups)
	for i := range l.Codes {
		l.Codes[i] = uint8(rng.IntN(16))
	}
	for i := range l.Zeros {
		l.Zeros[i] = uint8(1 + rng.IntN(16))
		l.Scales[i] = half.F32ToF16(0.001 + rng.Float32()*0.1)
	}
	copy(l.GIdx, gidx)
	return l
}

func TestNumGroupsAndGroupIndex(t *testing.T) {
	perm := []int{3, 0, 2, 1, 7, 6, 5, 4}
	tests := []struct {
		name      string
		in, group int
		perm      []int
		groups    int
		gidx      []int32
	}{
		{"one group (-1)", 8, -1, nil, 1, []int32{0, 0, 0, 0, 0, 0, 0, 0}},
		{"in equal to group", 8, 8, nil, 1, []int32{0, 0, 0, 0, 0, 0, 0, 0}},
		{"in below group", 8, 128, nil, 1, []int32{0, 0, 0, 0, 0, 0, 0, 0}},
		{"natural", 8, 4, nil, 2, []int32{0, 0, 0, 0, 1, 1, 1, 1}},
		{"partial last group", 10, 4, nil, 3, []int32{0, 0, 0, 0, 1, 1, 1, 1, 2, 2}},
		// perm[j] is the j-th quantized input: inputs 3, 0, 2, 1 form group 0.
		{"act-order", 8, 4, perm, 2, []int32{0, 0, 0, 0, 1, 1, 1, 1}},
		{"act-order interleaved", 8, 2, perm, 4, []int32{0, 1, 1, 0, 3, 3, 2, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if g := NumGroups(tc.in, tc.group); g != tc.groups {
				t.Errorf("NumGroups(%d, %d) = %d, want %d", tc.in, tc.group, g, tc.groups)
			}
			if diff := cmp.Diff(tc.gidx, GroupIndex(tc.in, tc.group, tc.perm)); diff != "" {
				t.Errorf("GroupIndex (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPackBits checks the packed words against the layout written out by
// hand: nibble k of qweight[r, c] is the code of input 8r+k, output c;
// nibble k of qzeros[g, c] is zero−1 of output 8c+k.
func TestPackBits(t *testing.T) {
	l := NewLayer(8, 16, 2)
	for i := 0; i < 16; i++ {
		for c := 0; c < 8; c++ {
			l.Codes[i*8+c] = uint8((i + 3*c) % 16)
		}
		l.GIdx[i] = int32(i / 8)
	}
	for c := 0; c < 8; c++ {
		l.Zeros[c] = 8                // symmetric: stored 7
		l.Zeros[8+c] = uint8(1 + 2*c) // stored 0, 2, 4, ..., 14
		l.Scales[c], l.Scales[8+c] = half.F32ToF16(1), half.F32ToF16(0.5)
	}
	qw, qz, err := l.Pack()
	if err != nil {
		t.Fatal(err)
	}
	// Column 0: codes of inputs 0..7 are 0..7 → 0x76543210; inputs 8..15 → 0xfedcba98.
	// Column 1: codes (i+3) % 16 → inputs 0..7 = 3..10 → 0xa9876543.
	want := map[[2]int]uint32{{0, 0}: 0x76543210, {1, 0}: 0xfedcba98, {0, 1}: 0xa9876543, {1, 1}: 0x210fedcb}
	for rc, w := range want {
		if got := uint32(qw[rc[0]*8+rc[1]]); got != w {
			t.Errorf("qweight[%d, %d] = %#08x, want %#08x", rc[0], rc[1], got, w)
		}
	}
	if got := uint32(qz[0]); got != 0x77777777 {
		t.Errorf("symmetric qzeros word = %#08x, want 0x77777777", got)
	}
	if got := uint32(qz[1]); got != 0xeca86420 {
		t.Errorf("qzeros[1, 0] = %#08x, want 0xeca86420", got)
	}
	m := int4Matrix(t, l)
	dst := make([]float32, 8*16)
	m.Widen(dst, 16, 0, 8, 0, 16)
	// W[1, 9] = 0.5 · (code (9+3) − zero 3) = 4.5
	if dst[1*16+9] != 4.5 {
		t.Errorf("dequantized W[1, 9] = %v, want 4.5", dst[1*16+9])
	}
}

// TestPackRoundTrip packs random layers (several shapes, one or many groups,
// natural and act-order g_idx) and checks that unpacking gives the same
// layer and that the forward pass's int4 matrix dequantizes to exactly the
// same weights (tolerance 0: both compute scale·(q−z) in float32).
func TestPackRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name           string
		out, in, group int
		actOrder       bool
	}{
		{"8x8 one group", 8, 8, -1, false},
		{"64x32 group 32", 64, 32, 32, false},
		{"32x96 group 32", 32, 96, 32, false},
		{"40x104 partial group", 40, 104, 32, false},
		{"32x128 act-order group 32", 32, 128, 32, true},
		{"24x64 act-order one group", 24, 64, -1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var perm []int
			if tc.actOrder {
				perm = rng.Perm(tc.in)
			}
			groups := NumGroups(tc.in, tc.group)
			l := randomLayer(rng, tc.out, tc.in, groups, GroupIndex(tc.in, tc.group, perm))
			qw, qz, err := l.Pack()
			if err != nil {
				t.Fatal(err)
			}
			if len(qw) != tc.in/8*tc.out || len(qz) != groups*tc.out/8 {
				t.Fatalf("packed sizes %d, %d; want %d, %d", len(qw), len(qz), tc.in/8*tc.out, groups*tc.out/8)
			}
			back, err := Unpack(tc.out, tc.in, qw, qz, l.Scales, l.GIdx)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(l, back); diff != "" {
				t.Fatalf("unpacked layer differs (-want +got):\n%s", diff)
			}
			m := int4Matrix(t, l)
			got := make([]float32, tc.out*tc.in)
			m.Widen(got, tc.in, 0, tc.out, 0, tc.in)
			want := l.Dequantize()
			for c := 0; c < tc.out; c++ {
				for i := 0; i < tc.in; i++ {
					if got[c*tc.in+i] != want[c*tc.in+i] || want[c*tc.in+i] != l.Value(c, i) {
						t.Fatalf("W[%d, %d]: int4 matrix %v, Dequantize %v, Value %v", c, i, got[c*tc.in+i], want[c*tc.in+i], l.Value(c, i))
					}
				}
			}
		})
	}
}

func TestLayerCheckErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(l *Layer)
		want string
	}{
		{"zero point 0", func(l *Layer) { l.Zeros[3] = 0 }, "zero point 0"},
		{"code 16", func(l *Layer) { l.Codes[5] = 16 }, "code 16"},
		{"g_idx out of range", func(l *Layer) { l.GIdx[2] = 2 }, "g_idx[2] = 2"},
		{"infinite scale", func(l *Layer) { l.Scales[0] = 0x7c00 }, "scale of group 0"},
		{"odd shape", func(l *Layer) { l.Out = 12 }, "multiples of 8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := randomLayer(rand.New(rand.NewPCG(3, 4)), 16, 16, 2, GroupIndex(16, 8, nil))
			tc.edit(l)
			_, _, err := l.Pack()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Pack error = %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := Unpack(16, 16, make([]int32, 32), make([]int32, 3), make([]uint16, 16), make([]int32, 16)); err == nil {
		t.Error("Unpack accepted qzeros of the wrong size")
	}
}

func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	c := NewConfig(128, true, false, false, true, 0.01)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteFile(dir); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"bits": 4.0, "group_size": 128.0, "damp_percent": 0.01, "desc_act": false, "static_groups": false,
		"sym": true, "true_sequential": true, "lm_head": false, "model_name_or_path": nil,
		"model_file_base_name": "model", "quant_method": "gptq", "checkpoint_format": "gptq",
	}
	if diff := cmp.Diff(want, raw); diff != "" {
		t.Errorf("quantize_config.json (-want +got):\n%s", diff)
	}
	back, err := ReadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	c.ModulesInBlock = [][]string{{"self_attn.q_proj"}}
	qb, err := c.MarshalQuantizationConfig()
	if err != nil {
		t.Fatal(err)
	}
	var q map[string]any
	if err := json.Unmarshal(qb, &q); err != nil {
		t.Fatal(err)
	}
	wantQ := map[string]any{
		"bits": 4.0, "group_size": 128.0, "damp_percent": 0.01, "desc_act": false, "static_groups": false,
		"sym": true, "true_sequential": true, "quant_method": "gptq", "checkpoint_format": "gptq",
		"modules_in_block_to_quantize": []any{[]any{"self_attn.q_proj"}},
	}
	if diff := cmp.Diff(wantQ, q); diff != "" {
		t.Errorf("quantization_config (-want +got):\n%s", diff)
	}
	for _, bad := range []Config{
		NewConfig(0, true, false, false, true, 0.01),
		NewConfig(128, true, false, false, true, 1.5),
		{Bits: 5, GroupSize: 128, DampPercent: 0.01, QuantMethod: "gptq", CheckpointFormat: "gptq"},
		{Bits: 4, GroupSize: 128, DampPercent: 0.01, QuantMethod: "gptq", CheckpointFormat: "marlin"},
	} {
		if bad.Validate() == nil {
			t.Errorf("Validate accepted %+v", bad)
		}
	}
}

// int4Matrix is the forward pass's int4 matrix built from the packed layer,
// as model does.
func int4Matrix(t *testing.T, l *Layer) gemm.Int4 {
	t.Helper()
	p, err := l.Packed()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewPacked(p.Layout, p.Out, p.In, p.QWeight, p.QZeros, p.Scales, p.GIdx); err != nil {
		t.Fatal(err)
	}
	return gemm.Int4{QWeight: p.QWeight, QZeros: p.QZeros, Scales: p.Scales, GIdx: p.GIdx, N: p.Out, K: p.In}
}
