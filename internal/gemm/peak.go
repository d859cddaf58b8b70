package gemm

import (
	"runtime"
	"sync"
	"time"
)

// PeakGFLOPS measures the float32 multiply-add throughput of this machine:
// threads goroutines (each locked to an OS thread) run a register-resident
// loop of independent FMA chains (the widest vectors the CPU has: zmm with
// AVX-512, ymm with AVX2) for about d, and the total rate is returned in
// GFLOPS (an FMA counts as 2 operations). threads ≤ 0 means Threads().
// Without SIMD assembly (other architectures, purego) it times a scalar Go
// loop instead, which is no hardware peak.
func PeakGFLOPS(threads int, d time.Duration) float64 {
	if threads <= 0 {
		threads = Threads()
	}
	const iters = 1 << 16
	peakLoop(iters) // warm up the vector units
	flops := make([]float64, threads)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for t := 0; t < threads; t++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			for {
				flops[t] += peakLoop(iters)
				if !time.Now().Before(deadline) {
					break
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	total := 0.0
	for _, f := range flops {
		total += f
	}
	return total / elapsed / 1e9
}

// peakGo is a portable stand-in for the FMA loop: 8 independent chains of
// scalar multiply-adds.
func peakGo(n int) float64 {
	var a0, a1, a2, a3, a4, a5, a6, a7 float32
	x, y := float32(0.5), float32(0.25)
	for i := 0; i < n; i++ {
		a0 = a0*x + y
		a1 = a1*x + y
		a2 = a2*x + y
		a3 = a3*x + y
		a4 = a4*x + y
		a5 = a5*x + y
		a6 = a6*x + y
		a7 = a7*x + y
	}
	sink = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7
	return float64(n) * 16
}

var sink float32
