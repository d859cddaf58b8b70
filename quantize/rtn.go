package quantize

import (
	"fmt"

	"github.com/moeforge/moeforge/formats/gptq"
	"github.com/moeforge/moeforge/internal/gemm"
)

// RTN quantizes w [out, in] by rounding every weight to the nearest point of
// its group's grid (the grid rule of GPTQ, computed from the original
// weights of the natural input groups; no error feedback, no act-order). It
// is the baseline GPTQ is measured against and the fallback for experts
// that saw too few calibration tokens.
func RTN(w []float32, out, in int, cfg gptq.Config) (*Result, error) {
	cfg.DescAct, cfg.StaticGroups = false, false
	if cfg.DampPercent == 0 {
		cfg.DampPercent = 0.01 // unused; keeps checkConfig happy
	}
	if err := checkConfig(cfg, out, in); err != nil {
		return nil, err
	}
	if len(w) != out*in {
		return nil, fmt.Errorf("weight has %d values, want %d×%d", len(w), out, in)
	}
	if i := nonFinite32(w); i >= 0 {
		return nil, fmt.Errorf("weight [%d, %d] is %v", i/in, i%in, w[i])
	}
	wt := transpose(w, out, in)
	gw := groupWidth(cfg, in)
	groups := gptq.NumGroups(in, cfg.GroupSize)
	layer := gptq.NewLayer(out, in, groups)
	sf := make([]float32, groups*out)
	for g := 0; g < groups; g++ {
		if err := findParams(wt, out, g*gw, min((g+1)*gw, in), 0, out, cfg.Sym, layer.Scales[g*out:], sf[g*out:], layer.Zeros[g*out:]); err != nil {
			return nil, err
		}
	}
	for i := 0; i < in; i++ {
		g := i / gw
		s, z := sf[g*out:(g+1)*out], layer.Zeros[g*out:(g+1)*out]
		row := wt[i*out : (i+1)*out]
		codes := layer.Codes[i*out : (i+1)*out]
		for c, v := range row {
			codes[c] = code(v, s[c], z[c])
		}
	}
	layer.GIdx = gptq.GroupIndex(in, cfg.GroupSize, nil)
	return &Result{Layer: layer}, nil
}

// Hessian accumulates Σ xxᵀ over calibration input rows x of one linear
// layer (in float64, through gemm.SyrkAdd). Matrix returns H = 2/n·Σ xxᵀ,
// the reference's running average: the scale does not change GPTQ's result
// but keeps H comparable across layers.
type Hessian struct {
	Dim  int
	Rows int // rows added so far (n)
	sum  []float64
}

// NewHessian returns an empty accumulator for inputs of dim features. Its
// dim² storage is allocated on the first Add.
func NewHessian(dim int) *Hessian { return &Hessian{Dim: dim} }

// Add accumulates x [rows, Dim].
func (h *Hessian) Add(x []float32, rows int) {
	if rows == 0 {
		return
	}
	if h.sum == nil {
		h.sum = make([]float64, h.Dim*h.Dim)
	}
	gemm.SyrkAdd(h.sum, x, rows, h.Dim)
	h.Rows += rows
}

// AddHessian accumulates the rows of o (same Dim) into h.
func (h *Hessian) AddHessian(o *Hessian) {
	if o.Rows == 0 {
		return
	}
	if h.sum == nil {
		h.sum = make([]float64, h.Dim*h.Dim)
	}
	for i, v := range o.sum {
		h.sum[i] += v
	}
	h.Rows += o.Rows
}

// Matrix returns 2/n·Σ xxᵀ [Dim, Dim] (all zeros when no row was added).
func (h *Hessian) Matrix() []float64 {
	m := make([]float64, h.Dim*h.Dim)
	if h.Rows == 0 {
		return m
	}
	f := 2 / float64(h.Rows)
	for i, v := range h.sum {
		m[i] = f * v
	}
	return m
}
