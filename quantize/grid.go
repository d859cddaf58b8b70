package quantize

import (
	"fmt"
	"math"

	"github.com/moeforge/moeforge/formats/gptq"
	"github.com/moeforge/moeforge/internal/half"
)

// checkGroupSize validates a group size: -1, a power of two from 8 to 64,
// or a multiple of 128, so that every group starts where all earlier
// columns' updates have been applied (see GPTQ).
func checkGroupSize(g int) error {
	switch {
	case g == -1:
		return nil
	case g >= 8 && g < blockSize && blockSize%g == 0 && g%8 == 0:
		return nil
	case g > 0 && g%blockSize == 0:
		return nil
	}
	return fmt.Errorf("group_size=%d: want -1, 8, 16, 32, 64 or a multiple of %d", g, blockSize)
}

// checkConfig validates the settings (zero fields take their defaults,
// gptq.Config.WithDefaults) for a matrix [out, in]: the group sizes GPTQ's
// blocked updates allow, what the checkpoint can hold
// (gptq.Config.Validate), and the shape.
func checkConfig(c gptq.Config, out, in int) error {
	c = c.WithDefaults()
	if err := checkGroupSize(c.GroupSize); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return err
	}
	lay, _ := c.Layout()
	if a := lay.Align(); out <= 0 || in <= 0 || out%a != 0 || in%a != 0 {
		return fmt.Errorf("matrix [%d, %d]: GPTQ %d-bit needs both dimensions to be positive multiples of %d", out, in, c.Bits, a)
	}
	return nil
}

// grid is the code grid of a module: its largest code, symmetric or not,
// and whether a zero point of 0 can be stored (gptq_v2).
type grid struct {
	maxq   int
	sym    bool
	zero0  bool
	layout gptq.Layout
}

// gridOf returns the grid of validated settings.
func gridOf(c gptq.Config) grid {
	lay, _ := c.WithDefaults().Layout()
	return grid{maxq: lay.MaxQ(), sym: c.Sym, zero0: lay.ZeroOffset() == 0, layout: lay}
}

// groupWidth is the number of inputs per group for a matrix with in inputs.
func groupWidth(c gptq.Config, in int) int {
	if c.GroupSize <= 0 || c.GroupSize >= in {
		return in
	}
	return c.GroupSize
}

// gridError reports a group whose scale cannot be stored as float16.
type gridError struct {
	output int
	scale  float32
}

func (e *gridError) Error() string {
	return fmt.Sprintf("output %d: scale %g overflows float16 (weights beyond about ±65504·2^(bits−1) cannot be stored in GPTQ)", e.output, e.scale)
}

// findParams computes the grid of one group for outputs [c0, c1) from the
// rows [r0, r1) of wt [in, out] (transposed weight: row i holds input i of
// every output). It writes float16 scales into sc, their float32 values
// into sf and zero points into zs, all indexed by output.
//
// The rule is ALGORITHMS.md §3 step 7 (AutoGPTQ's find_params with the range
// always including 0), with maxq = 2^bits − 1: symmetric s = 2·max|w|/maxq,
// z = (maxq+1)/2; asymmetric s = (max − min)/maxq, z = round(−min/s); an
// all-zero range uses [−1, 1]. The scale is rounded to float16 here, before
// any weight is quantized with it, so the stored grid is the grid GPTQ
// used. Two cases the reference leaves undefined are pinned down: a scale
// that rounds to float16 zero becomes the smallest subnormal (2⁻²⁴), and
// since the v1 layout stores zero−1 in bits bits an asymmetric zero of 0
// (min ≈ 0) is not representable there, so in v1 such a group uses z = 1
// and s = max/(maxq−1), whose grid [−s, (maxq−1)·s] still spans it; gptq_v2
// stores z = 0 as it is. It returns how many outputs got that v1 shift.
func findParams(wt []float32, out, r0, r1, c0, c1 int, gr grid, sc []uint16, sf []float32, zs []uint8) (int, error) {
	n := c1 - c0
	shifted := 0
	xmin := make([]float32, n)
	xmax := make([]float32, n)
	for r := r0; r < r1; r++ {
		row := wt[r*out+c0 : r*out+c1]
		for c, v := range row {
			if v < xmin[c] {
				xmin[c] = v
			}
			if v > xmax[c] {
				xmax[c] = v
			}
		}
	}
	for k := 0; k < n; k++ {
		c := c0 + k
		lo, hi := xmin[k], xmax[k]
		var s float32
		var z uint8
		maxq := float32(gr.maxq)
		if gr.sym {
			amax := max(-lo, hi)
			if amax == 0 {
				amax = 1
			}
			s = 2 * amax / maxq
			z = uint8((gr.maxq + 1) / 2)
		} else {
			if lo == 0 && hi == 0 {
				lo, hi = -1, 1
			}
			s = (hi - lo) / maxq
			zf := math.RoundToEven(float64(-lo / s))
			switch {
			case zf < 1 && !gr.zero0:
				z = 1
				s = hi / (maxq - 1)
				shifted++
			case zf < 1:
				z = 0
			case zf > float64(gr.maxq):
				z = uint8(gr.maxq)
			default:
				z = uint8(zf)
			}
		}
		h := half.F32ToF16(s)
		if h&0x7fff >= 0x7c00 {
			return shifted, &gridError{output: c, scale: s}
		}
		if h&0x7fff == 0 {
			h = 1
		}
		sc[c], sf[c], zs[c] = h, half.F16ToF32(h), z
	}
	return shifted, nil
}

// code quantizes w on the grid (s, z): clamp(round(w/s) + z, 0, maxq),
// with round half to even as torch.round.
func code(w, s float32, z uint8, maxq int) uint8 {
	r := math.RoundToEven(float64(w/s)) + float64(z)
	if r <= 0 {
		return 0
	}
	if r >= float64(maxq) {
		return uint8(maxq)
	}
	return uint8(r)
}
