//go:build !amd64 || purego

package gemm

func archKernels() []*kernel { return nil }

// peakLoop runs n iterations of a register-resident multiply-add loop and
// returns the floating-point operations it performed.
func peakLoop(n int) float64 { return peakGo(n) }
