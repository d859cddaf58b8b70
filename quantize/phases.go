package quantize

import (
	"sync"
	"time"
)

// Phase is the time and counted arithmetic of one kind of work of a run.
//
// FLOPs are counted, not measured: a product of x [n, in] with W [out, in]ᵀ
// is 2·n·in·out; attention over a sequence of T tokens adds 2·T²·width
// (QKᵀ and PV over the causal half); a Hessian update Σxxᵀ over n rows of
// width k is n·k² (both triangles' worth of multiply-adds over one); GPTQ
// on W [out, in] is out·in² (the error propagation) + ⅔·in³ (Cholesky and
// triangular inverse, once per Hessian: modules sharing one count it once).
//
// Seconds is wall time. Where workers run different phases at once (the
// routed-expert pipeline), each worker's time in a phase counts 1/workers,
// so the phases' seconds add up to the run's wall time spent in them.
type Phase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
	GFLOP   float64 `json:"gflop"`
	GFLOPS  float64 `json:"gflops"`
}

// Phase names.
const (
	PhaseForward  = "forward"  // the layer's products, attention and norms with its current weights
	PhaseHessian  = "hessian"  // Σxxᵀ accumulation
	PhaseQuantize = "quantize" // GPTQ (or RTN) on each module
	PhaseOther    = "other"    // embedding, activation stores, spilling, writing, checkpoints
)

var phaseOrder = []string{PhaseForward, PhaseHessian, PhaseQuantize, PhaseOther}

// clock accumulates phases; safe for concurrent use.
type clock struct {
	mu    sync.Mutex
	secs  map[string]float64
	flops map[string]float64
}

func newClock() *clock { return &clock{secs: map[string]float64{}, flops: map[string]float64{}} }

// add records d (scaled by weight) and flops for a phase.
func (c *clock) add(phase string, d time.Duration, weight, flops float64) {
	c.mu.Lock()
	c.secs[phase] += d.Seconds() * weight
	c.flops[phase] += flops
	c.mu.Unlock()
}

// timed runs f and records its wall time (scaled by weight) and flops.
func (c *clock) timed(phase string, weight, flops float64, f func()) {
	t := time.Now()
	f()
	c.add(phase, time.Since(t), weight, flops)
}

// phases lists the phases with their GFLOPS; total is the run's wall time,
// whose unaccounted rest is PhaseOther.
func (c *clock) phases(total float64) []Phase {
	c.mu.Lock()
	defer c.mu.Unlock()
	var sum float64
	for _, n := range phaseOrder {
		if n != PhaseOther {
			sum += c.secs[n]
		}
	}
	var out []Phase
	for _, n := range phaseOrder {
		s := c.secs[n]
		if n == PhaseOther {
			s += max(0, total-sum)
		}
		if s == 0 && c.flops[n] == 0 {
			continue
		}
		p := Phase{Name: n, Seconds: s, GFLOP: c.flops[n] / 1e9}
		if s > 0 {
			p.GFLOPS = p.GFLOP / s
		}
		out = append(out, p)
	}
	return out
}

// linearFlops is the count of one product of rows inputs with l's weight.
func linearFlops(rows, in, out int) float64 { return 2 * float64(rows) * float64(in) * float64(out) }

// hessianFlops is the count of one Hessian update.
func hessianFlops(rows, k int) float64 { return float64(rows) * float64(k) * float64(k) }

// gptqFlops is the count of GPTQ on one [out, in] matrix, with the
// factorization of its Hessian when factor is set.
func gptqFlops(out, in int, factor bool) float64 {
	f := float64(out) * float64(in) * float64(in)
	if factor {
		f += 2 * float64(in) * float64(in) * float64(in) / 3
	}
	return f
}
