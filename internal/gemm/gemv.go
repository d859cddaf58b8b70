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
		v := newInt4Vec(a, m)
		rows = func(ws *workspace, r0, r1 int) {
			gemvInt4(k, ws, c, v, m, r0, r1, acc)
		}
	case GPTQ:
		mustCheckGPTQ(m)
		rows = func(ws *workspace, r0, r1 int) {
			gemvGPTQ(c, a, m, r0, r1, acc)
		}
	case Affine:
		if m.Check() != nil {
			return false
		}
		// As MLX's own kernels: per group, scale·Σ a·q + bias·Σ a, the
		// sums of a taken once for all rows.
		groups := kk / m.Group
		asum := make([]float32, groups)
		for g := range asum {
			var t float32
			for _, x := range a[g*m.Group : (g+1)*m.Group] {
				t += x
			}
			asum[g] = t
		}
		rows = func(_ *workspace, r0, r1 int) {
			for j := r0; j < r1; j++ {
				store(j, affineDot(a, asum, m, j))
			}
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
func gemvInt4(k *kernel, ws *workspace, c []float32, v *int4Vec, m Int4, r0, r1 int, acc bool) {
	const chunk = 512 // outputs per pass: accumulators and tables stay in L1/L2
	for q0 := r0; q0 < r1; q0 += chunk {
		q1 := min(q0+chunk, r1)
		cols := q1 - q0
		sc, zs := ws.int4Tables(&m, q0, q1)
		ws.ct = grow(ws.ct, cols)
		y := ws.ct
		clear(y)
		if v.rowGroup != nil && k.int4Sorted != nil {
			ws.zsc = grow(ws.zsc, len(sc))
			for i, s := range sc {
				ws.zsc[i] = s * float32(zs[i])
			}
			k.int4Sorted(y, v, q0, sc, zs, ws.zsc, cols)
		} else {
			k.int4Rows(y, v.a, m.QWeight, m.N, q0, m.GIdx, sc, zs, cols)
		}
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

// int4Vec is the vector side of an int4 matrix-vector product. When the 8
// inputs of every QWeight word belong to one group (g_idx without act-order
// and groups of a multiple of 8), rowGroup holds that group per word row and
// asum the sum of the word's 8 inputs of a, so that the scale and zero can be
// applied once per word.
type int4Vec struct {
	a        []float32
	qw       []int32
	n        int
	gidx     []int32
	rowGroup []int32
	asum     []float32
}

func newInt4Vec(a []float32, m Int4) *int4Vec {
	v := &int4Vec{a: a, qw: m.QWeight, n: m.N, gidx: m.GIdx}
	rows := m.K / 8
	rg := make([]int32, rows)
	for r := range rg {
		g := m.GIdx[8*r : 8*r+8]
		for _, x := range g[1:] {
			if x != g[0] {
				return v
			}
		}
		rg[r] = g[0]
	}
	v.rowGroup = rg
	v.asum = make([]float32, rows)
	for r := range v.asum {
		var s float32
		for _, x := range a[8*r : 8*r+8] {
			s += x
		}
		v.asum[r] = s
	}
	return v
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

// gemvGPTQ computes outputs [r0, r1) of c (+)= W·a for a GPTQ matrix of any
// width: for every input the codes of consecutive outputs are read from one
// word row, summed against a per group, and each group's sum is scaled and
// offset once: y[c] = Σ_g s[g,c]·(Σ_{i∈g} a[i]·q[i,c] − z[g,c]·Σ_{i∈g} a[i]).
func gemvGPTQ(c, a []float32, m GPTQ, r0, r1 int, acc bool) {
	cols := r1 - r0
	zw := m.N * m.Bits / 32
	y := make([]float32, cols)
	dot := make([]float32, cols)
	sc := make([]float32, cols)
	widen := active.Load().widenF16
	bits, mask := m.Bits, uint32(1)<<uint(m.Bits)-1
	cur, asum := int32(-1), float32(0)
	flush := func() {
		if cur < 0 {
			return
		}
		g := int(cur)
		widen(sc, m.Scales[g*m.N+r0:g*m.N+r1])
		zrow := m.QZeros[g*zw : (g+1)*zw]
		for j := range dot {
			z := float32(field(zrow, 1, r0+j, bits) + m.ZeroOffset)
			y[j] += sc[j] * (dot[j] - z*asum)
			dot[j] = 0
		}
		asum = 0
	}
	for i := 0; i < m.K; i++ {
		if g := m.GIdx[i]; g != cur {
			flush()
			cur = g
		}
		// 8 bits: a whole word (4 inputs of one group) at once.
		if bits == 8 && i%4 == 0 && i+4 <= m.K && m.GIdx[i+1] == cur && m.GIdx[i+2] == cur && m.GIdx[i+3] == cur {
			a0, a1, a2, a3 := a[i], a[i+1], a[i+2], a[i+3]
			asum += a0 + a1 + a2 + a3
			row := m.QWeight[(i/4)*m.N+r0 : (i/4)*m.N+r1]
			d := dot[:len(row)]
			for j, x := range row {
				u := uint32(x)
				d[j] += a0*float32(u&255) + a1*float32(u>>8&255) + a2*float32(u>>16&255) + a3*float32(u>>24)
			}
			i += 3
			continue
		}
		ai := a[i]
		asum += ai
		b := i * bits
		w, sh := b>>5, uint(b&31)
		row := m.QWeight[w*m.N+r0 : w*m.N+r1]
		d := dot[:len(row)]
		if int(sh)+bits <= 32 {
			for j, x := range row {
				d[j] += ai * float32(uint32(x)>>sh&mask)
			}
			continue
		}
		next := m.QWeight[(w+1)*m.N+r0 : (w+1)*m.N+r1]
		for j, x := range row {
			d[j] += ai * float32((uint32(x)>>sh|uint32(next[j])<<(32-sh))&mask)
		}
	}
	flush()
	for j, v := range y {
		if acc {
			c[r0+j] += v
		} else {
			c[r0+j] = v
		}
	}
}

// mustCheckGPTQ panics on a malformed GPTQ matrix (the products index its
// tables by g_idx).
func mustCheckGPTQ(m GPTQ) {
	if err := m.Check(); err != nil {
		panic("gemm: " + err.Error())
	}
}

// affineDot is row j of an Affine matrix times a, with asum the per-group
// sums of a.
func affineDot(a, asum []float32, m Affine, j int) float32 {
	per := 32 / m.Bits
	mask := uint32(1)<<m.Bits - 1
	wpg := m.Group / per // words per group
	groups := m.K / m.Group
	words := m.Weight[j*(m.K/per) : (j+1)*(m.K/per)]
	var total float32
	for g := 0; g < groups; g++ {
		var dot float32
		x := a[g*m.Group : (g+1)*m.Group]
		ws := words[g*wpg : (g+1)*wpg]
		if m.Bits == 4 {
			var d0, d1 float32
			for w, word := range ws {
				xs := x[w*8 : w*8+8 : w*8+8]
				d0 += xs[0]*float32(word&15) + xs[2]*float32(word>>8&15) + xs[4]*float32(word>>16&15) + xs[6]*float32(word>>24&15)
				d1 += xs[1]*float32(word>>4&15) + xs[3]*float32(word>>12&15) + xs[5]*float32(word>>20&15) + xs[7]*float32(word>>28)
			}
			dot = d0 + d1
		} else {
			for w, word := range ws {
				xs := x[w*per : (w+1)*per]
				for i := range xs {
					dot += xs[i] * float32(word>>(uint(i)*uint(m.Bits))&mask)
				}
			}
		}
		total += float32(m.Scales[j*groups+g]*dot) + m.Biases[j*groups+g]*asum[g]
	}
	return total
}
