// Package panel packs row-major operands into the column panels that the
// register-tile micro-kernels of gemm (float32) and linalg (float64) read,
// with a register-transposing assembly loop for whole blocks of steps: the
// one loop around those transposes for every element type.
package panel

// Transpose is an nb×nb packing transpose in assembly: for b < blocks and
// p < nb it stores widen(src[offs[r]+nb·b+p]) for r < nb at dst[(nb·b+p)·w],
// one vector of nb elements per step, in increasing order of p (so with
// w < nb a store spills into the next step, which a later store
// overwrites). offs[:nb] are element offsets into src.
type Transpose[S, D any] func(dst *D, w int, src *S, offs [8]int, blocks int)

// Tail writes d[i] = widen(s[i·ld]) for i < len(d): one step of a panel
// past the last whole block.
type Tail[S, D any] func(d []D, s []S, ld int)

// Pack packs a full panel: panel[p·w+i] = widen(src[i·ld+p]) for i < w,
// p < kc, by tr (which moves nb×nb blocks) for the steps up to the last
// multiple of nb and by tail for the rest. Row groups of nb go from the last
// (possibly partial, whose stores spill into the next step) to the first, so
// that every spill is overwritten; the last store may write up to nb−1
// elements past the panel's length, within its capacity.
func Pack[S, D any](tr Transpose[S, D], nb int, tail Tail[S, D], panel []D, src []S, ld, w, kc int) {
	if nb > 8 {
		panic("panel: blocks wider than 8")
	}
	blocks := kc / nb
	if blocks > 0 {
		_ = src[(w-1)*ld+kc-1]
		_ = panel[:cap(panel)][(blocks*nb-1)*w+((w-1)/nb)*nb+nb-1]
		var offs [8]int
		for g := (w - 1) / nb * nb; g >= 0; g -= nb {
			rows := min(nb, w-g)
			for r := range nb {
				offs[r] = (g + min(r, rows-1)) * ld
			}
			tr(&panel[g], w, &src[0], offs, blocks)
		}
	}
	for p := blocks * nb; p < kc; p++ {
		tail(panel[p*w:p*w+w], src[p:], ld)
	}
}

// Strided is the Tail of a packing without conversion.
func Strided[T any](d, s []T, ld int) {
	for i := range d {
		d[i] = s[i*ld]
	}
}

// Scatter writes row i of a panel of width w: panel[p·w+i] = src[p] for
// p < len(src).
func Scatter[T any](panel, src []T, i, w int) {
	if len(src) == 0 {
		return
	}
	_ = panel[(len(src)-1)*w+i]
	j := i
	for _, v := range src {
		panel[j] = v
		j += w
	}
}

// PackGo is Pack without assembly: panel[p·w+i] = src[i·ld+p] for i < w,
// p < kc, a row at a time.
func PackGo[T any](panel, src []T, ld, w, kc int) {
	for i := 0; i < w; i++ {
		Scatter(panel, src[i*ld:i*ld+kc], i, w)
	}
}
