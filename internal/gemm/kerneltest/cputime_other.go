//go:build !unix

package kerneltest

import "time"

// CPUTime is 0 here: the benchmarks report only GFLOPS over wall time.
func CPUTime() time.Duration { return 0 }
