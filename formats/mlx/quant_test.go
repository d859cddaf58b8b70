package mlx

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestQuantizeDefinition checks hand-computed groups against MLX's affine
// rule (docs/mlx.md): the edge of larger magnitude is represented exactly
// (code 0), the scale is negative when that edge is the maximum.
func TestQuantizeDefinition(t *testing.T) {
	p := Params{GroupSize: 4, Bits: 2} // small enough to compute by hand
	for _, tc := range []struct {
		w           []float32
		codes       []uint8
		scale, bias float32
		dequantized []float32
	}{
		// w_min −3 dominates: scale (1.5−(−3))/3 = 1.5, q0 = round(−3/1.5) = −2, scale −3/−2, bias −3.
		{[]float32{-3, -1, 0, 1.5}, []uint8{0, 1, 2, 3}, 1.5, -3, []float32{-3, -1.5, 0, 1.5}},
		// w_max 3 dominates: scale −2.5/3, q0 = round(−3.6) = −4, scale 3/−4 = −0.75, bias 3.
		{[]float32{0.5, 1, 2, 3}, []uint8{3, 3, 1, 0}, -0.75, 3, []float32{0.75, 0.75, 2.25, 3}},
		// a zero group: scale eps, q0 = 0, bias 0.
		{[]float32{0, 0, 0, 0}, []uint8{0, 0, 0, 0}, -1e-7, 0, []float32{0, 0, 0, 0}},
	} {
		codes, s, b := Quantize(tc.w, 1, 4, p)
		if diff := cmp.Diff(tc.codes, codes); diff != "" {
			t.Errorf("w %v: codes (-want +got):\n%s", tc.w, diff)
		}
		if s[0] != tc.scale || b[0] != tc.bias {
			t.Errorf("w %v: scale %g bias %g, want %g %g", tc.w, s[0], b[0], tc.scale, tc.bias)
		}
		for i, q := range codes {
			if got := float32(s[0]*float32(q)) + b[0]; got != tc.dequantized[i] {
				t.Errorf("w %v: dequantized[%d] = %g, want %g", tc.w, i, got, tc.dequantized[i])
			}
		}
	}
}

// TestQuantizeError: on random rows every weight dequantizes within one step
// (half a step of rounding, and at the far end of the group up to half a
// step more: scale = edge/q0 may shrink the grid so that it clips) and the
// edge of larger magnitude exactly.
func TestQuantizeError(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, p := range []Params{{32, 4}, {64, 4}, {128, 8}, {64, 2}} {
		out, in := 8, 256
		w := make([]float32, out*in)
		for i := range w {
			w[i] = float32(r.NormFloat64()) * 0.05
		}
		codes, s, b := Quantize(w, out, in, p)
		groups := in / p.GroupSize
		for row := 0; row < out; row++ {
			for j := 0; j < groups; j++ {
				g := row*groups + j
				vals := w[row*in+j*p.GroupSize : row*in+(j+1)*p.GroupSize]
				edge := vals[0]
				for _, v := range vals {
					if math.Abs(float64(v)) > math.Abs(float64(edge)) {
						edge = v
					}
				}
				for i, v := range vals {
					q := codes[row*in+j*p.GroupSize+i]
					if int(q) > p.MaxQ() {
						t.Fatalf("code %d > %d", q, p.MaxQ())
					}
					got := float32(s[g]*float32(q)) + b[g]
					if d := math.Abs(float64(got - v)); d > math.Abs(float64(s[g]))*1.0001+1e-7 {
						t.Fatalf("%+v: row %d group %d: %g dequantizes to %g (step %g)", p, row, j, v, got, s[g])
					}
					if v == edge && got != edge {
						t.Fatalf("%+v: edge %g dequantizes to %g", p, edge, got)
					}
				}
			}
		}
	}
}

func TestPackLSBFirst(t *testing.T) {
	p := Params{GroupSize: 32, Bits: 4}
	codes := make([]uint8, 16)
	for i := range codes {
		codes[i] = uint8(i)
	}
	words := Pack(codes, 2, 8, p)
	if diff := cmp.Diff([]uint32{0x76543210, 0xfedcba98}, words); diff != "" {
		t.Errorf("words (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(codes, Unpack(words, 2, 8, p)); diff != "" {
		t.Errorf("unpack (-want +got):\n%s", diff)
	}
	p8 := Params{GroupSize: 32, Bits: 8}
	if w := Pack([]uint8{1, 2, 3, 4}, 1, 4, p8); w[0] != 0x04030201 {
		t.Errorf("8-bit word %#x", w[0])
	}
}

func TestParseQuantization(t *testing.T) {
	q, err := ParseQuantization([]byte(`{"group_size": 64, "bits": 4, "mode": "affine",
		"model.layers.0.mlp.gate": {"group_size": 64, "bits": 8}, "lm_head": false, "model.embed_tokens": true}`))
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := q.Lookup("model.layers.0.mlp.gate", false); !ok || p != (Params{64, 8}) {
		t.Errorf("router override: %+v %v", p, ok)
	}
	if _, ok := q.Lookup("lm_head", true); ok {
		t.Error("lm_head: false override ignored")
	}
	if p, ok := q.Lookup("model.layers.0.self_attn.q_proj", true); !ok || p != (Params{64, 4}) {
		t.Errorf("default: %+v %v", p, ok)
	}
	if _, ok := q.Lookup("model.layers.0.self_attn.q_proj", false); ok {
		t.Error("no scales, no override: must be float")
	}
	again, err := ParseQuantization(must(q.MarshalJSON()))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(q, again); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	for _, bad := range []string{`[]`, `{"group_size": 48, "bits": 4}`, `{"group_size": 64, "bits": 3}`,
		`{"group_size": 64, "bits": 4, "mode": "mxfp4"}`, `{"group_size": 64, "bits": 4, "x": {"bits": 5, "group_size": 64}}`, `{"group_size": "64", "bits": 4}`} {
		if _, err := ParseQuantization([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func FuzzParseQuantization(f *testing.F) {
	f.Add([]byte(`{"group_size": 64, "bits": 4, "mode": "affine", "a.b": {"group_size": 32, "bits": 8}, "c": false}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		q, err := ParseQuantization(data)
		if err != nil {
			return
		}
		b, err := q.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		q2, err := ParseQuantization(b)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", b, err)
		}
		if diff := cmp.Diff(q, q2); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s", diff)
		}
	})
}
