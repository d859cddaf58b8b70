//go:build amd64 && !purego

package linalg

import "golang.org/x/sys/cpu"

func archKernels() []*kernel {
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		return []*kernel{{name: "avx2", mr: 6, nr: 8, kc: 256, mc: 96, micro: kern6x8AVX2, packRows: packRowsAVX2}}
	}
	return nil
}

// packRowsAVX2 is packRowsGo with 4×4 register transposes: row groups of 4
// from the last (possibly partial, whose stores spill into the next step) to
// the first, then the steps past the last multiple of 4.
func packRowsAVX2(panel, src []float64, ld, w, kc int) {
	blocks := kc / 4
	if blocks == 0 {
		packRowsGo(panel, src, ld, w, kc)
		return
	}
	_ = src[(w-1)*ld+kc-1]
	_ = panel[:cap(panel)][(blocks*4-1)*w+((w-1)/4)*4+3]
	var offs [4]int
	for g := (w - 1) / 4 * 4; g >= 0; g -= 4 {
		rows := min(4, w-g)
		for r := range offs {
			offs[r] = (g + min(r, rows-1)) * ld
		}
		transpose4AVX2(&panel[g], w, &src[0], &offs, blocks)
	}
	for p := blocks * 4; p < kc; p++ {
		d := panel[p*w : p*w+w]
		for i := range d {
			d[i] = src[i*ld+p]
		}
	}
}
