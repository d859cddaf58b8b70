// Package impl holds what the float32 products (internal/gemm) and the
// float64 ones (internal/linalg) share about their kernel implementations:
// the registry that lists them and selects one by name, and the portable
// micro-kernel's register tile.
package impl

import (
	"fmt"
	"sync/atomic"
)

// Registry lists a package's kernels, best first, and holds the one in use
// (Load; Store sets it, tests store kernels outside the list too).
type Registry[K any] struct {
	atomic.Pointer[K]
	pkg  string // for messages
	all  []*K
	name func(*K) string
}

// New returns a registry of the kernels all (best first, at least one) using
// the first.
func New[K any](pkg string, all []*K, name func(*K) string) *Registry[K] {
	r := &Registry[K]{pkg: pkg, all: all, name: name}
	r.Store(all[0])
	return r
}

// Names lists the kernels' names, best first.
func (r *Registry[K]) Names() []string {
	names := make([]string, len(r.all))
	for i, k := range r.all {
		names[i] = r.name(k)
	}
	return names
}

// Set selects a kernel by name; "" or "auto" picks the best one.
func (r *Registry[K]) Set(name string) error {
	if name == "" || name == "auto" {
		r.Store(r.all[0])
		return nil
	}
	for _, k := range r.all {
		if r.name(k) == name {
			r.Store(k)
			return nil
		}
	}
	return fmt.Errorf("%s implementation %q is not available here (have %v)", r.pkg, name, r.Names())
}

// Tile2x4 returns Σ_p a[p]ᵀ·b[p] over kc steps of a packed A micro-panel (2
// elements a step) and a packed B one (4 a step): the portable micro-kernel's
// register tile, with scalar accumulators that the Go compiler keeps in
// registers with the 4 values of B and 2 of A (a 4×4 tile spills and runs at
// 60% of this speed).
func Tile2x4[T float32 | float64](A, B []T) (c [2][4]T) {
	var c00, c01, c02, c03, c10, c11, c12, c13 T
	for p, q := 0, 0; p+2 <= len(A) && q+4 <= len(B); p, q = p+2, q+4 {
		ap := A[p : p+2 : p+2]
		bp := B[q : q+4 : q+4]
		a0, a1 := ap[0], ap[1]
		b0, b1, b2, b3 := bp[0], bp[1], bp[2], bp[3]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
	}
	return [2][4]T{{c00, c01, c02, c03}, {c10, c11, c12, c13}}
}
