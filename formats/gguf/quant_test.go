package gguf

import (
	"bytes"
	"encoding/binary"
	"flag"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/moeforge/moeforge/internal/judge"
)

var updateInput = flag.Bool("update-quant-input", false, "rewrite testdata/quant/input.f32 (then rerun judges/llamacpp/quant_goldens.sh)")

const goldenRow = 128

// quantInput is the input the quantizer goldens were made from: random rows
// of several scales, plus blocks built to hit the reference code's edge
// cases (ties of roundf and of the +8.5 truncation, zeros, a positive and a
// negative extreme, f16 subnormal scales, values that round to the clamp).
func quantInput() []float32 {
	r := rand.New(rand.NewPCG(13, 32))
	var x []float32
	for row := 0; row < 24; row++ {
		scale := float32(math.Pow(10, float64(row%6)-3))
		for j := 0; j < goldenRow; j++ {
			x = append(x, float32(r.NormFloat64())*scale)
		}
	}
	block := func(f func(j int) float32) {
		for j := 0; j < QK; j++ {
			x = append(x, f(j))
		}
	}
	block(func(j int) float32 { return 0 }) // all zero: d = 0
	block(func(j int) float32 {             // Q8_0: max 127 → d = 1, then ties of roundf
		if j == 0 {
			return 127
		}
		return float32(j-16) + 0.5
	})
	block(func(j int) float32 { return -8 + float32(j)/2 })                 // Q4_0: max −8 → d = 1, halves
	block(func(j int) float32 { return 8 - float32(j)/2 })                  // positive max
	block(func(j int) float32 { return float32(j%5-2) * 127 / 4 })          // Q8_0: exact quarters of 127
	block(func(j int) float32 { return float32(j+1) * 1e-9 })               // d below f16's normal range
	block(func(j int) float32 { return float32(math.Pow(-1, float64(j))) }) // ±1: max is the first 1
	block(func(j int) float32 { return float32(j) * 1e4 })                  // large
	for len(x)%goldenRow != 0 {
		x = append(x, float32(len(x)%7)-3)
	}
	return x
}

func readF32(t *testing.T, path string) []float32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, len(b)/4)
	for i := range x {
		x[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return x
}

var goldenTypes = []Type{F16, BF16, Q8_0, Q4_0}

func goldenName(t Type) string { return "testdata/quant/" + t.String() + ".bin" }

// TestQuantizeGolden checks Encode byte for byte against what llama.cpp's
// own ggml_quantize_chunk / ggml_fp32_to_*_row produced from the same input
// (judges/llamacpp/quant_goldens.sh).
func TestQuantizeGolden(t *testing.T) {
	x := quantInput()
	if *updateInput {
		if err := os.WriteFile("testdata/quant/input.f32", float32Bytes(x), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := readF32(t, "testdata/quant/input.f32"); !bytes.Equal(float32Bytes(got), float32Bytes(x)) {
		t.Fatal("testdata/quant/input.f32 differs from quantInput(): run with -update-quant-input and regenerate the goldens")
	}
	for _, ty := range goldenTypes {
		want, err := os.ReadFile(goldenName(ty))
		if err != nil {
			t.Fatal(err)
		}
		checkEncode(t, ty, x, want)
	}
}

func checkEncode(t *testing.T, ty Type, x []float32, want []byte) {
	t.Helper()
	n, _ := EncodedSize(ty, len(x))
	got := make([]byte, n)
	if err := Encode(ty, got, x); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d bytes, llama.cpp wrote %d", ty, len(got), len(want))
	}
	bb := ty.BlockBytes()
	bad := 0
	for i := 0; i < len(got); i += bb {
		if !bytes.Equal(got[i:i+bb], want[i:i+bb]) {
			if bad < 3 {
				t.Errorf("%s block %d (elements %d..): got % x, llama.cpp % x", ty, i/bb, i/bb*ty.BlockSize(), got[i:i+bb], want[i:i+bb])
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d blocks differ from llama.cpp", ty, bad, len(got)/bb)
	}
}

// TestQuantizeLive runs llama.cpp's libggml-base (from the judge) on fresh
// random input and compares. It needs the judge and a C compiler.
func TestQuantizeLive(t *testing.T) {
	dir := judge.Dir(t, "llamacpp")
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler to build judges/llamacpp/quantize.c")
	}
	libs, _ := filepath.Glob(filepath.Join(dir, "node_modules/@node-llama-cpp/linux-x64/bins/*/libggml-base.so"))
	if len(libs) != 1 {
		t.Fatalf("libggml-base.so not found in the judge (%v)", libs)
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "quantize")
	if out, err := exec.Command(cc, "-O0", "-o", bin, filepath.Join(dir, "quantize.c"), "-ldl").CombinedOutput(); err != nil {
		t.Fatalf("building quantize.c: %v\n%s", err, out)
	}
	r := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, 64*goldenRow)
	for i := range x {
		x[i] = float32(r.NormFloat64() * math.Exp(r.NormFloat64()*3))
		if i%97 == 0 {
			x[i] = float32(math.Round(float64(x[i]*4))) / 4
		}
	}
	in := filepath.Join(tmp, "in.f32")
	if err := os.WriteFile(in, float32Bytes(x), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, ty := range goldenTypes {
		out := filepath.Join(tmp, ty.String())
		if b, err := exec.Command(bin, libs[0], strconv.Itoa(int(ty)), strconv.Itoa(goldenRow), in, out).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", ty, err, b)
		}
		want, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		checkEncode(t, ty, x, want)
	}
}

// TestDecodeInverse: dequantizing a quantized block reproduces each element
// within half a quantization step (Q4_0: the clamp at 15 allows a whole step
// for the element opposite the signed max), and exactly for F32.
func TestDecodeInverse(t *testing.T) {
	x := quantInput()
	for _, ty := range []Type{F32, F16, BF16, Q8_0, Q4_0} {
		n, _ := EncodedSize(ty, len(x))
		enc := make([]byte, n)
		if err := Encode(ty, enc, x); err != nil {
			t.Fatal(err)
		}
		y := make([]float32, len(x))
		if err := Decode(ty, y, enc); err != nil {
			t.Fatal(err)
		}
		for b := 0; b < len(x)/QK; b++ {
			var amax float64
			for _, v := range x[b*QK : (b+1)*QK] {
				amax = math.Max(amax, math.Abs(float64(v)))
			}
			var tol float64
			switch ty {
			case F16:
				tol = amax*1.0/2048 + 6e-8
			case BF16:
				tol = amax / 256
			case Q8_0:
				tol = amax/127*(0.5+127.0/2048) + 127*0x1p-25 // d is rounded to f16
			case Q4_0:
				tol = amax/8*(1+8.0/2048) + 8*0x1p-25
			}
			for j := b * QK; j < (b+1)*QK; j++ {
				if ty == F16 && math.Abs(float64(x[j])) > 65504 {
					continue // overflows to Inf, as llama.cpp's does (the golden checks that)
				}
				if d := math.Abs(float64(y[j] - x[j])); d > tol {
					t.Fatalf("%s element %d: %g → %g (|Δ| %g > %g)", ty, j, x[j], y[j], d, tol)
				}
			}
		}
	}
}

func TestEncodeErrors(t *testing.T) {
	if err := Encode(Q4_0, make([]byte, 18), make([]float32, 31)); err == nil {
		t.Error("31 values accepted as Q4_0")
	}
	if err := Encode(Q8_0, make([]byte, 10), make([]float32, 32)); err == nil {
		t.Error("short destination accepted")
	}
	if err := Encode(Q4_K, make([]byte, 144), make([]float32, 256)); err == nil {
		t.Error("Q4_K encoding claimed")
	}
	if err := Decode(Type(99), make([]float32, 1), make([]byte, 4)); err == nil {
		t.Error("unknown type decoded")
	}
}

func BenchmarkQuantize(b *testing.B) {
	x := make([]float32, 1<<20)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	for _, ty := range []Type{F16, BF16, Q8_0, Q4_0} {
		n, _ := EncodedSize(ty, len(x))
		dst := make([]byte, n)
		b.Run("encode/"+ty.String(), func(b *testing.B) {
			b.SetBytes(int64(4 * len(x))) // MB/s of float32 input
			for b.Loop() {
				Encode(ty, dst, x)
			}
		})
		y := make([]float32, len(x))
		b.Run("decode/"+ty.String(), func(b *testing.B) {
			b.SetBytes(int64(4 * len(x))) // MB/s of float32 output
			for b.Loop() {
				Decode(ty, y, dst)
			}
		})
	}
}

// TestBlockMatrixWiden: any block of a BlockMatrix widens to what Decode
// gives for the whole matrix.
func TestBlockMatrixWiden(t *testing.T) {
	x := quantInput()[:8*96]
	for _, ty := range []Type{Q8_0, Q4_0} {
		n, _ := EncodedSize(ty, len(x))
		enc := make([]byte, n)
		Encode(ty, enc, x)
		all := make([]float32, len(x))
		Decode(ty, all, enc)
		m := BlockMatrix{Type: ty, Data: enc, N: 8, K: 96}
		for _, b := range [][4]int{{0, 8, 0, 96}, {1, 3, 5, 70}, {7, 8, 31, 33}, {2, 5, 64, 96}} {
			r0, r1, c0, c1 := b[0], b[1], b[2], b[3]
			ld := c1 - c0 + 3
			dst := make([]float32, (r1-r0)*ld)
			m.Widen(dst, ld, r0, r1, c0, c1)
			for r := r0; r < r1; r++ {
				for c := c0; c < c1; c++ {
					if dst[(r-r0)*ld+c-c0] != all[r*96+c] {
						t.Fatalf("%s [%d, %d] of block %v: %g, want %g", ty, r, c, b, dst[(r-r0)*ld+c-c0], all[r*96+c])
					}
				}
			}
		}
	}
}
