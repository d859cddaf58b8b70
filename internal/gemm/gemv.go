package gemm

import "sync"

// gemv computes c[n] (+)= B·a for a single row a (m = 1), reading B once, and
// reports whether it handled b's type.
func gemv(k *kernel, c, a []float32, b Matrix, acc bool) bool {
	var rows func(ws *workspace, r0, r1 int)
	n, kk := b.Rows(), b.Cols()
	store := func(j int, v float32) {
		if acc {
			c[j] += v
		} else {
			c[j] = v
		}
	}
	switch m := b.(type) {
	case F32:
		rows = func(_ *workspace, r0, r1 int) {
			for j := r0; j < r1; j++ {
				store(j, k.dot(a, m.Data[j*kk:(j+1)*kk]))
			}
		}
	case BF16:
		rows = func(_ *workspace, r0, r1 int) {
			for j := r0; j < r1; j++ {
				store(j, k.dotBF16(a, m.Data[j*kk:(j+1)*kk]))
			}
		}
	case F16:
		rows = func(ws *workspace, r0, r1 int) {
			const chunk = 1024
			tmp := ws.tmp[:min(chunk, kk)]
			for j := r0; j < r1; j++ {
				var s float32
				for p := 0; p < kk; p += chunk {
					e := min(p+chunk, kk)
					k.widenF16(tmp[:e-p], m.Data[j*kk+p:j*kk+e])
					s += k.dot(a[p:e], tmp[:e-p])
				}
				store(j, s)
			}
		}
	case Int4:
		if m.N%8 != 0 || m.K%8 != 0 {
			return false
		}
		mustCheck(m)
		rows = func(ws *workspace, r0, r1 int) {
			gemvInt4(k, ws, c, a, m, r0, r1, acc)
		}
	default:
		return false
	}
	// Split the outputs in blocks of 64 (a multiple of 8 for Int4's zeros).
	const block = 64
	blocks := ceilDiv(n, block)
	workers := min(Threads(), blocks)
	if n*kk < 1<<15 {
		workers = 1
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		b0, b1 := w*blocks/workers, (w+1)*blocks/workers
		r0, r1 := b0*block, min(b1*block, n)
		work := func() {
			ws, _ := workspaces.Get().(*workspace)
			if ws == nil {
				ws = new(workspace)
			}
			ws.tmp = grow(ws.tmp, 1024)
			rows(ws, r0, r1)
			workspaces.Put(ws)
		}
		if workers == 1 {
			work()
			break
		}
		wg.Add(1)
		go func() { defer wg.Done(); work() }()
	}
	wg.Wait()
	return true
}

// gemvInt4 computes outputs [r0, r1) (r0 a multiple of 8) of c (+)= W·a for a
// GPTQ matrix, dequantizing on the fly: for every input i the codes of
// consecutive outputs are consecutive words of QWeight.
func gemvInt4(k *kernel, ws *workspace, c, a []float32, m Int4, r0, r1 int, acc bool) {
	const chunk = 512 // outputs per pass: accumulators and tables stay in L1/L2
	for q0 := r0; q0 < r1; q0 += chunk {
		q1 := min(q0+chunk, r1)
		cols := q1 - q0
		sc, zs := ws.int4Tables(&m, q0, q1)
		ws.ct = grow(ws.ct, cols)
		y := ws.ct
		clear(y)
		k.int4Rows(y, a, m.QWeight, m.N, q0, m.GIdx, sc, zs, cols)
		dst := c[q0:q1]
		if acc {
			for j, v := range y {
				dst[j] += v
			}
		} else {
			copy(dst, y)
		}
	}
}

// int4RowsGo adds Σ_i a[i]·W[q0+j, i] to y[j] for j < cols, with the group
// tables sc, zs laid out [group][cols].
func int4RowsGo(y, a []float32, qw []int32, n, q0 int, gidx []int32, sc []float32, zs []int32, cols int) {
	int4RowsGoRange(y, a, qw, n, q0, gidx, sc, zs, cols, 0, cols)
}

// int4RowsGoRange is int4RowsGo for the outputs j in [c0, c1).
func int4RowsGoRange(y, a []float32, qw []int32, n, q0 int, gidx []int32, sc []float32, zs []int32, cols, c0, c1 int) {
	yy := y[c0:c1]
	for r := 0; r < len(gidx)/8; r++ {
		words := qw[r*n+q0+c0 : r*n+q0+c1]
		for j := 0; j < 8; j++ {
			i := 8*r + j
			ai := a[i]
			g := int(gidx[i])
			s := sc[g*cols+c0 : g*cols+c1]
			z := zs[g*cols+c0 : g*cols+c1]
			shift := uint(j) * 4
			for c, w := range words {
				yy[c] += ai * (s[c] * float32(int32(uint32(w)>>shift&15)-z[c]))
			}
		}
	}
}
