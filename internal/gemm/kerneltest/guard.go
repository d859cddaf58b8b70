// Package kerneltest holds the test and benchmark helpers that gemm and
// linalg share; only their tests import it. Guard bands (New, Buffer) place a
// kernel's destination between sentinels, in the manner of gonum's
// internal/asm tests, and report any element a kernel stored past what its
// contract allows; Impls runs a benchmark with each kernel implementation and
// reports GFLOPS.
package kerneltest

import "fmt"

// Band is how many elements each guard band holds.
const Band = 32

// Sentinel is the value the bands hold: no kernel computes it from test data.
const Sentinel = -7.25e29

// Buffer is a guarded destination slice of length n and capacity n+slack with guard
// bands of Band elements before it and after its capacity.
type Buffer[T ~float32 | ~float64] struct {
	all   []T
	slack int
	// S is the destination: len n, cap n+slack, every element Sentinel.
	S []T
}

// New returns a guarded destination of n elements with slack spare capacity.
func New[T ~float32 | ~float64](n, slack int) *Buffer[T] {
	all := make([]T, Band+n+slack+Band)
	for i := range all {
		all[i] = Sentinel
	}
	return &Buffer[T]{all: all, slack: slack, S: all[Band : Band+n : Band+n+slack]}
}

// Check returns an error naming the first overwritten guard element, if any.
func (b *Buffer[T]) Check() error {
	n := len(b.S)
	for i := 0; i < Band; i++ {
		if v := b.all[i]; v != Sentinel {
			return fmt.Errorf("wrote %v at %d elements before the destination", v, Band-i)
		}
	}
	for i := Band + n + b.slack; i < len(b.all); i++ {
		if v := b.all[i]; v != Sentinel {
			return fmt.Errorf("wrote %v at %d elements past the destination's capacity (len %d, slack %d)", v, i-Band-n-b.slack, n, b.slack)
		}
	}
	return nil
}
