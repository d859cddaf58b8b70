package gemm

// Hessian accumulates H = Σ XᵀX (float64, k×k) over batches of rows of X.
// Small batches are buffered (up to bufRows rows) and folded into H by one
// SyrkAdd, since every SyrkAdd reads and writes all k² entries of H: for an
// MoE expert that sees a few tokens per batch that traffic, not the
// arithmetic, would dominate.
type Hessian struct {
	k       int
	h       []float64
	buf     []float32 // pending rows, [pending, k]
	pending int
	rows    int
	bufRows int
}

// NewHessian returns an empty accumulator for k features that buffers up to
// bufRows rows (≤ 0: 2048, or fewer so that the buffer stays under 32 MB).
func NewHessian(k, bufRows int) *Hessian {
	if bufRows <= 0 {
		bufRows = max(64, min(2048, (8<<20)/max(k, 1)))
	}
	return &Hessian{k: k, h: make([]float64, k*k), bufRows: bufRows}
}

// Add accumulates the n rows of x [n, k].
func (a *Hessian) Add(x []float32, n int) {
	if n == 0 {
		return
	}
	k := a.k
	x = x[:n*k]
	a.rows += n
	if a.pending == 0 && n >= a.bufRows {
		SyrkAdd(a.h, x, n, k)
		return
	}
	for len(x) > 0 {
		take := min(a.bufRows-a.pending, len(x)/k)
		if a.buf == nil {
			a.buf = make([]float32, a.bufRows*k)
		}
		copy(a.buf[a.pending*k:], x[:take*k])
		a.pending += take
		x = x[take*k:]
		if a.pending == a.bufRows {
			a.flush()
		}
	}
}

func (a *Hessian) flush() {
	if a.pending > 0 {
		SyrkAdd(a.h, a.buf, a.pending, a.k)
		a.pending = 0
	}
}

// H folds in the buffered rows and returns the accumulated k×k matrix (both
// triangles). The slice is the accumulator's own: later Adds keep adding to it.
func (a *Hessian) H() []float64 {
	a.flush()
	return a.h
}

// Rows returns how many rows have been added.
func (a *Hessian) Rows() int { return a.rows }

// K returns the number of features.
func (a *Hessian) K() int { return a.k }
