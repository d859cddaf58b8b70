//go:build amd64 && !purego

package linalg

import (
	"golang.org/x/sys/cpu"

	"github.com/moeforge/moeforge/internal/gemm/panel"
)

func archKernels() []*kernel {
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		return []*kernel{{name: "avx2", mr: 6, nr: 8, kc: 256, mc: 96, micro: kern6x8AVX2, packRows: packRowsAVX2}}
	}
	return nil
}

// packRowsAVX2 is packRowsGo with 4×4 register transposes.
func packRowsAVX2(dst, src []float64, ld, w, kc int) {
	panel.Pack(transpose4AVX2, 4, panel.Strided[float64], dst, src, ld, w, kc)
}
