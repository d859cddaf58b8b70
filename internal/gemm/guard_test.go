package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/moeforge/moeforge/internal/gemm/kerneltest"
	"github.com/moeforge/moeforge/internal/half"
)

// Guard-band tests: every kernel entry point that stores through a pointer
// writes into a destination between sentinel bands (internal/gemm/kerneltest) with
// exactly the slack its contract allows, and must leave the bands, and the
// gaps between strided rows, as they were; the values it writes must match
// the portable kernel.

// guardKernels are the kernels to test: this machine's SIMD ones before the
// start-up self-check drops any (so that a broken AVX2 kernel fails here
// rather than silently falling back to Go) and the portable one. Only a
// kernel for an instruction set beyond AVX2 may be left out, with a log line.
func guardKernels(t *testing.T) []*kernel {
	var ks []*kernel
	for _, k := range archKernels() {
		if err := selfCheck(k); err != nil {
			if k.name == "avx2" {
				t.Fatalf("%s kernel: %v", k.name, err)
			}
			t.Logf("%s kernel not tested: %v", k.name, err)
			continue
		}
		ks = append(ks, k)
	}
	return append(ks, goKernel)
}

func TestGuardMicro(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, k := range guardKernels(t) {
		for _, kc := range []int{1, 3, 4, 5, 37} {
			for _, gap := range []int{0, 3} {
				for _, acc := range []bool{false, true} {
					ldc := k.nr + gap
					a, b := randF32(r, kc*k.mr), randF32(r, kc*k.nr)
					c := kerneltest.New[float32]((k.mr-1)*ldc+k.nr, 0)
					inTile := func(e int) bool { return e%ldc < k.nr }
					for e := range c.S {
						if acc && inTile(e) {
							c.S[e] = 1
						}
					}
					k.micro(kc, &a[0], &b[0], &c.S[0], ldc, acc)
					name := fmt.Sprintf("%s kc=%d ldc=%d acc=%v", k.name, kc, ldc, acc)
					if err := c.Check(); err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					for e, v := range c.S {
						i, j := e/ldc, e%ldc
						if !inTile(e) {
							if v != kerneltest.Sentinel {
								t.Fatalf("%s: wrote %v between rows at [%d,%d]", name, v, i, j)
							}
							continue
						}
						var want float64
						if acc {
							want = 1
						}
						for p := 0; p < kc; p++ {
							want += float64(a[p*k.mr+i]) * float64(b[p*k.nr+j])
						}
						if math.Abs(float64(v)-want) > 1e-4*(1+math.Abs(want)) {
							t.Fatalf("%s: C[%d,%d] = %v, want %v", name, i, j, v, want)
						}
					}
				}
			}
		}
	}
}

// packWidths are the panel widths the packing kernels are tried with: every
// register tile's, and others around the 8-wide stores.
func packWidths(k *kernel) []int { return []int{1, 3, 7, 8, 9, 13, k.mr, k.nr} }

var packDepths = []int{1, 5, 8, 13, 16, 37}

func TestGuardPackRows(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 1))
	type packer struct {
		name string
		pack func(panel []float32, ld, w, kc int)
		src  func(i int) float32
	}
	for _, k := range guardKernels(t) {
		for _, w := range packWidths(k) {
			for _, kc := range packDepths {
				ld := kc + 2
				f32 := randF32(r, w*ld)
				h := randHalf(r, w*ld, true)
				f := randHalf(r, w*ld, false)
				ps := []packer{{"packRows", func(p []float32, ld, w, kc int) { k.packRows(p, f32, ld, w, kc) },
					func(i int) float32 { return f32[i] }}}
				if k.packBF16 != nil {
					ps = append(ps, packer{"packBF16", func(p []float32, ld, w, kc int) { k.packBF16(p, h, ld, w, kc) },
						func(i int) float32 { return half.BF16ToF32(h[i]) }})
				}
				if k.packF16 != nil {
					ps = append(ps, packer{"packF16", func(p []float32, ld, w, kc int) { k.packF16(p, f, ld, w, kc) },
						func(i int) float32 { return half.F16ToF32(f[i]) }})
				}
				for _, pk := range ps {
					name := fmt.Sprintf("%s %s w=%d kc=%d", k.name, pk.name, w, kc)
					d := kerneltest.New[float32](w*kc, 8) // packing buffers have 8 floats of slack
					pk.pack(d.S, ld, w, kc)
					if err := d.Check(); err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					for p := 0; p < kc; p++ {
						for i := 0; i < w; i++ {
							if got, want := d.S[p*w+i], pk.src(i*ld+p); got != want {
								t.Fatalf("%s: panel[%d·w+%d] = %v, want %v", name, p, i, got, want)
							}
						}
					}
				}
			}
		}
	}
}

func TestGuardPackCols(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 1))
	for _, k := range guardKernels(t) {
		if k.packCols == nil {
			continue
		}
		for _, w := range packWidths(k) {
			for _, kc := range packDepths {
				for _, panels := range []int{1, 2, 3} {
					ld := panels*w + 5
					src := randF32(r, kc*ld)
					name := fmt.Sprintf("%s w=%d kc=%d panels=%d", k.name, w, kc, panels)
					d := kerneltest.New[float32](panels*w*kc, 8)
					k.packCols(d.S, src, ld, w, kc, panels)
					if err := d.Check(); err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					for q := 0; q < panels; q++ {
						for p := 0; p < kc; p++ {
							for i := 0; i < w; i++ {
								if got, want := d.S[(q*kc+p)*w+i], src[p*ld+q*w+i]; got != want {
									t.Fatalf("%s: dst[(%d·kc+%d)·w+%d] = %v, want %v", name, q, p, i, got, want)
								}
							}
						}
					}
				}
			}
		}
	}
}

func TestGuardTranspose(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 1))
	sizes := []int{1, 7, 8, 9, 17, 24}
	for _, k := range guardKernels(t) {
		for _, rows := range sizes {
			for _, cols := range sizes {
				lds, ldd := cols+1, rows+3
				src := randF32(r, rows*lds)
				d := kerneltest.New[float32]((cols-1)*ldd+rows, 0)
				k.transpose(d.S, ldd, src, lds, rows, cols)
				name := fmt.Sprintf("%s %dx%d", k.name, rows, cols)
				if err := d.Check(); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				for e, v := range d.S {
					j, i := e/ldd, e%ldd
					want := float32(kerneltest.Sentinel)
					if i < rows {
						want = src[i*lds+j]
					}
					if v != want {
						t.Fatalf("%s: dst[%d·ldd+%d] = %v, want %v", name, j, i, v, want)
					}
				}
			}
		}
	}
}

func TestGuardWiden(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 1))
	for _, k := range guardKernels(t) {
		for _, n := range []int{1, 7, 8, 9, 16, 33} {
			for _, bf := range []bool{true, false} {
				src := randHalf(r, n, bf)
				d := kerneltest.New[float32](n, 0)
				widen, conv := k.widenF16, half.F16ToF32
				if bf {
					widen, conv = k.widenBF16, half.BF16ToF32
				}
				widen(d.S, src)
				name := fmt.Sprintf("%s n=%d bf16=%v", k.name, n, bf)
				if err := d.Check(); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				for i, v := range d.S {
					if want := conv(src[i]); v != want && !(v != v && want != want) {
						t.Fatalf("%s: dst[%d] = %v, want %v", name, i, v, want)
					}
				}
			}
		}
	}
}

func TestGuardInt4Panel(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 1))
	const n, kdim, groups = 48, 64, 4
	m := randInt4(r, n, kdim, kdim/groups, true)
	for _, k := range guardKernels(t) {
		for _, rows := range []int{1, 15, 16, 17, 32, 48} {
			w := rows + 2
			sc := randF32(r, groups*rows)
			zs := make([]int32, groups*rows)
			for i := range zs {
				zs[i] = int32(r.IntN(16))
			}
			for _, pr := range [][2]int{{0, kdim}, {3, 3 + 1}, {5, 40}} {
				p0, p1 := pr[0], pr[1]
				q := n - rows
				d := kerneltest.New[float32]((p1-p0-1)*w+rows, 0)
				k.int4Panel(d.S, w, &m, q, rows, sc, zs, rows, 0, p0, p1)
				want := make([]float32, len(d.S))
				for i := range want {
					want[i] = kerneltest.Sentinel
				}
				int4PanelGo(want, w, &m, q, rows, sc, zs, rows, 0, p0, p1)
				name := fmt.Sprintf("%s rows=%d p=[%d,%d)", k.name, rows, p0, p1)
				if err := d.Check(); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				for i, v := range d.S {
					if v != want[i] {
						t.Fatalf("%s: d[%d] = %v, want %v", name, i, v, want[i])
					}
				}
			}
		}
	}
}
