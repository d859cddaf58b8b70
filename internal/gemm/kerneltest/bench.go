package kerneltest

import (
	"testing"
	"time"
)

// Impl names a sub-benchmark and the kernel implementation it selects.
type Impl struct{ Sub, Name string }

// Impls runs op as sub-benchmark "impl=SUB" for each implementation, selected
// with set (and reset with set("") after), and reports GFLOPS (over wall time)
// and GFLOPS/cpu (over the CPU time the process used: the rate per busy core,
// which other load on the machine disturbs less) for flops per op.
func Impls(b *testing.B, impls []Impl, set func(string) error, flops float64, op func(b *testing.B)) {
	for _, im := range impls {
		b.Run("impl="+im.Sub, func(b *testing.B) {
			if err := set(im.Name); err != nil {
				b.Fatal(err)
			}
			defer set("")
			cpu0 := CPUTime()
			for b.Loop() {
				op(b)
			}
			ReportFlops(b, flops, cpu0)
		})
	}
}

// ReportFlops reports GFLOPS and GFLOPS/cpu for b.N operations of the given
// size, cpu0 being CPUTime() before the loop.
func ReportFlops(b *testing.B, flops float64, cpu0 time.Duration) {
	total := flops * float64(b.N)
	b.ReportMetric(total/b.Elapsed().Seconds()/1e9, "GFLOPS")
	if cpu := CPUTime() - cpu0; cpu > 0 {
		b.ReportMetric(total/cpu.Seconds()/1e9, "GFLOPS/cpu")
	}
}
