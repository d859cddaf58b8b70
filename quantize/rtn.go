package quantize

import (
	"fmt"
	"sync"

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
	gr := gridOf(cfg)
	layer.Layout = gr.layout
	sf := make([]float32, groups*out)
	shifted := 0
	for g := 0; g < groups; g++ {
		n, err := findParams(wt, out, g*gw, min((g+1)*gw, in), 0, out, gr, layer.Scales[g*out:], sf[g*out:], layer.Zeros[g*out:])
		shifted += n
		if err != nil {
			return nil, err
		}
	}
	for i := 0; i < in; i++ {
		g := i / gw
		s, z := sf[g*out:(g+1)*out], layer.Zeros[g*out:(g+1)*out]
		row := wt[i*out : (i+1)*out]
		codes := layer.Codes[i*out : (i+1)*out]
		for c, v := range row {
			codes[c] = code(v, s[c], z[c], gr.maxq)
		}
	}
	layer.GIdx = gptq.GroupIndex(in, cfg.GroupSize, nil)
	return &Result{Layer: layer, ZeroShifted: shifted}, nil
}

// Hessian accumulates Σ xxᵀ over calibration input rows x of one linear
// layer (in float64, through gemm.SyrkAdd). Matrix returns H = 2/n·Σ xxᵀ,
// the reference's running average: the scale does not change GPTQ's result
// but keeps H comparable across layers.
type Hessian struct {
	Dim  int
	Rows int // rows added so far (n)
	sum  []float64

	mu     sync.Mutex // the GPTQ factor, shared by the modules of one input
	fac    *factor
	facKey factorKey
}

// factorKey is what of a module's settings the factor depends on.
type factorKey struct {
	descAct bool
	damp    float64
}

// factor returns GPTQ's factor of the Hessian, computed once for the
// modules quantized with it (q, k and v; gate and up) when their settings
// agree on act-order and damping (dynamic rules may differ per module),
// else afresh.
func (h *Hessian) factor(cfg gptq.Config) (*factor, error) {
	key := factorKey{cfg.DescAct, cfg.DampPercent}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fac != nil && h.facKey == key {
		return h.fac, nil
	}
	f, err := newFactor(h.Matrix(), h.Dim, cfg)
	if err != nil {
		return nil, err
	}
	if h.fac == nil {
		h.fac, h.facKey = f, key
	}
	return f, nil
}

// release drops the sums and the factor once every module using them is
// quantized.
func (h *Hessian) release() { h.sum, h.fac = nil, nil }

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
