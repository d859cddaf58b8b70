package gptq

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzUnpack reads arbitrary words as the packed tensors of a layer whose
// shape and groups come from the input. NewPacked and Unpack must never
// panic; whatever they accept must pack back to the same words (the packing
// is a bijection on valid layers), and a product could index it safely
// (every g_idx names a group, every length matches).
func FuzzUnpack(f *testing.F) {
	f.Add(uint8(1), uint8(1), uint8(1), make([]byte, 4*(8+1)+2*8+4*8))
	f.Add(uint8(2), uint8(1), uint8(2), []byte{0xff, 0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe})
	f.Add(uint8(1), uint8(2), uint8(3), make([]byte, 300))
	f.Fuzz(func(t *testing.T, outW, inW, groups uint8, data []byte) {
		out, in := 8*int(outW%4), 8*int(inW%4)
		g := int(groups%4) + 1
		// Lengths are taken from the layout when data is long enough, else
		// what is there (so that wrong lengths are exercised too).
		take := func(n int) []byte {
			n = min(n, len(data))
			b := data[:n]
			data = data[n:]
			return b
		}
		words := func(n int) []int32 {
			b := take(4 * n)
			w := make([]int32, len(b)/4)
			for i := range w {
				w[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
			}
			return w
		}
		qw := words(in / 8 * out)
		qz := words(g * out / 8)
		sb := take(2 * g * out)
		sc := make([]uint16, len(sb)/2)
		for i := range sc {
			sc[i] = binary.LittleEndian.Uint16(sb[2*i:]) & 0x3bff // finite float16
		}
		gi := words(in)
		for i := range gi {
			gi[i] = gi[i] % int32(g+1) // mostly in range, sometimes one past
		}
		p, err := NewPacked(V1Int4, out, in, qw, qz, sc, gi)
		if err != nil {
			return
		}
		l, err := p.Unpack()
		if err != nil {
			t.Fatalf("NewPacked accepted what Unpack rejects: %v", err)
		}
		back, err := l.Packed()
		if err != nil {
			t.Fatalf("unpacked layer does not pack: %v", err)
		}
		if diff := cmp.Diff(p, back); diff != "" {
			t.Fatalf("pack(unpack(x)) != x (-x +got):\n%s", diff)
		}
	})
}

// FuzzUnpackLayouts is FuzzUnpack over every width and both zero
// conventions (the layout comes from the input): what NewPacked accepts
// unpacks (except an 8-bit v1 stored zero of 255, a true zero of 256, which
// Unpack refuses by name) and packs back to the same words.
func FuzzUnpackLayouts(f *testing.F) {
	f.Add(uint8(1), uint8(0), uint8(1), uint8(1), uint8(1), make([]byte, 4*(8+1)+2*8+4*8))
	f.Add(uint8(1), uint8(1), uint8(1), uint8(1), uint8(2), make([]byte, 4*(96+3)+2*64+4*32))
	f.Add(uint8(3), uint8(0), uint8(2), uint8(1), uint8(1), []byte{0xff, 0xff, 0xff, 0xff, 0x10, 0x32, 0x54, 0x76})
	f.Fuzz(func(t *testing.T, bitsW, formatW, outW, inW, groups uint8, data []byte) {
		lay := Layout{Bits: Widths[int(bitsW)%len(Widths)], Format: []string{FormatV1, FormatV2}[formatW%2]}
		a := lay.Align()
		out, in := a*int(outW%3), a*int(inW%3)
		g := int(groups%4) + 1
		take := func(n int) []byte {
			n = min(n, len(data))
			b := data[:n]
			data = data[n:]
			return b
		}
		words := func(n int) []int32 {
			b := take(4 * n)
			w := make([]int32, len(b)/4)
			for i := range w {
				w[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
			}
			return w
		}
		qw := words(in * lay.Bits / 32 * out)
		qz := words(g * out * lay.Bits / 32)
		sb := take(2 * g * out)
		sc := make([]uint16, len(sb)/2)
		for i := range sc {
			sc[i] = binary.LittleEndian.Uint16(sb[2*i:]) & 0x3bff
		}
		gi := words(in)
		for i := range gi {
			gi[i] = gi[i] % int32(g+1)
		}
		p, err := NewPacked(lay, out, in, qw, qz, sc, gi)
		if err != nil {
			return
		}
		l, err := p.Unpack()
		if err != nil {
			if lay.Bits == 8 && lay.Format == FormatV1 {
				return
			}
			t.Fatalf("%v: NewPacked accepted what Unpack rejects: %v", lay, err)
		}
		back, err := l.Packed()
		if err != nil {
			t.Fatalf("%v: unpacked layer does not pack: %v", lay, err)
		}
		if diff := cmp.Diff(p, back); diff != "" {
			t.Fatalf("%v: pack(unpack(x)) != x (-x +got):\n%s", lay, diff)
		}
	})
}

// FuzzParseDynamic: ParseDynamic never panics, and what it accepts
// marshals to an object it reads back to the same rules.
func FuzzParseDynamic(f *testing.F) {
	f.Add([]byte(`{"-:model\\.layers\\.0\\..*": {}, "+:.*self_attn.*": {"bits": 8, "group_size": 64}, ".*": {"sym": false, "desc_act": true}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"+:(": {}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseDynamic(data)
		if err != nil {
			return
		}
		out, err := d.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseDynamic(out)
		if err != nil {
			t.Fatalf("re-reading %s: %v", out, err)
		}
		if len(back) != len(d) {
			t.Fatalf("%d rules, %d after a round trip", len(d), len(back))
		}
		for i := range d {
			if d[i].Key() != back[i].Key() || !cmp.Equal(d[i].Bits, back[i].Bits) || !cmp.Equal(d[i].GroupSize, back[i].GroupSize) ||
				!cmp.Equal(d[i].Sym, back[i].Sym) || !cmp.Equal(d[i].DescAct, back[i].DescAct) {
				t.Fatalf("rule %d: %s became %s", i, d[i].Key(), back[i].Key())
			}
		}
	})
}

// FuzzReadConfig feeds arbitrary quantize_config.json files to ReadConfig.
// It must never panic; what it accepts survives WriteFile and ReadConfig
// unchanged, and its checks and per-module lookups answer without
// panicking.
func FuzzReadConfig(f *testing.F) {
	f.Add([]byte(`{"bits": 4, "group_size": 128, "damp_percent": 0.01, "desc_act": false, "static_groups": false, "sym": true, "true_sequential": true, "lm_head": false, "model_name_or_path": null, "model_file_base_name": "model", "quant_method": "gptq", "checkpoint_format": "gptq"}`))
	f.Add([]byte(`{"bits": 8, "group_size": -1, "damp_percent": 0.1, "desc_act": true, "sym": false, "quant_method": "gptq", "checkpoint_format": "gptq_v2", "dynamic": {"-:model\\.layers\\.0\\..*": {}, "+:.*self_attn.*": {"bits": 4, "group_size": 64}}}`))
	f.Add([]byte(`{"bits": 3, "group_size": 0, "damp_percent": 1}`))
	f.Add([]byte(`null`))
	modules := []string{"model.layers.0.self_attn.q_proj", "model.layers.1.mlp.experts.3.down_proj", "lm_head"}
	in, out := f.TempDir(), f.TempDir() // rewritten by each input: a worker runs one at a time
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(filepath.Join(in, ConfigFile), data, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := ReadConfig(in)
		if err != nil {
			if !strings.Contains(err.Error(), ConfigFile) {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		c.Validate()
		c.Layout()
		for _, m := range modules {
			c.Module(m)
			c.LayoutFor(m)
		}
		first, err := c.Marshal()
		if err != nil {
			t.Fatalf("Marshal of an accepted config: %v", err)
		}
		if err := c.WriteFile(out); err != nil {
			t.Fatal(err)
		}
		back, err := ReadConfig(out)
		if err != nil {
			t.Fatalf("re-reading %s: %v", first, err)
		}
		second, err := back.Marshal()
		if err != nil || string(first) != string(second) {
			t.Fatalf("round trip changed the config (%v):\n%s\n%s", err, first, second)
		}
	})
}
