package gemm

import "github.com/moeforge/moeforge/internal/gemm/panel"

// An operand is one factor of a product seen as rows × depth (the depth is the
// summed dimension). pack writes rows [r0, r1) × depth [p0, p1) as panels of w
// rows: panel q, at dst[q·w·(p1−p0):], holds for each depth step p the values
// of rows r0+q·w … r0+q·w+w−1, rows past r1 being zero.
type operand interface {
	pack(k *kernel, ws *workspace, dst []float32, r0, r1, p0, p1, w int)
}

// rowsF32 is a row-major float32 operand: element (r, p) at data[r·ld+p].
type rowsF32 struct {
	data []float32
	ld   int
}

func (o rowsF32) pack(k *kernel, _ *workspace, dst []float32, r0, r1, p0, p1, w int) {
	kc := p1 - p0
	for q := r0; q < r1; q += w {
		pl := dst[(q-r0)*kc : (q-r0)*kc+w*kc]
		rows := min(w, r1-q)
		if rows == w {
			k.packRows(pl, o.data[q*o.ld+p0:], o.ld, w, kc)
			continue
		}
		for i := 0; i < rows; i++ {
			panel.Scatter(pl, o.data[(q+i)*o.ld+p0:(q+i)*o.ld+p1], i, w)
		}
		zeroRows(pl, rows, w, kc)
	}
}

// colsF32 is a column-major float32 operand: element (r, p) at data[p·ld+r].
// Its panels are plain copies.
type colsF32 struct {
	data []float32
	ld   int
}

func (o colsF32) pack(k *kernel, _ *workspace, dst []float32, r0, r1, p0, p1, w int) {
	kc := p1 - p0
	full := (r1 - r0) / w // panels without padding
	if k.packCols != nil {
		k.packCols(dst, o.data[p0*o.ld+r0:], o.ld, w, kc, full)
		if full*w == r1-r0 {
			return
		}
		r0 += full * w
		dst = dst[full*w*kc:]
		full = 0
	}
	for p := 0; p < kc; p++ {
		src := o.data[(p0+p)*o.ld+r0 : (p0+p)*o.ld+r1]
		for q := 0; q < full; q++ {
			d := dst[q*w*kc+p*w : q*w*kc+p*w+w]
			for i, v := range src[q*w : q*w+w] {
				d[i] = v
			}
		}
		if rest := src[full*w:]; len(rest) > 0 {
			d := dst[full*w*kc+p*w : full*w*kc+p*w+w]
			copy(d, rest)
			clear(d[len(rest):])
		}
	}
}

// widened is an operand whose rows are first widened to float32 (w rows at a
// time, into the workspace) and then transposed into the panel.
type widened struct {
	m    Matrix
	kind int // widenBF16, widenF16 or widenAny
}

const (
	widenAny = iota
	widenBF16
	widenF16
)

func (o widened) pack(k *kernel, ws *workspace, dst []float32, r0, r1, p0, p1, w int) {
	kc := p1 - p0
	tmp := ws.tmp[:w*kc]
	for q := r0; q < r1; q += w {
		pl := dst[(q-r0)*kc : (q-r0)*kc+w*kc]
		rows := min(w, r1-q)
		if rows == w {
			switch {
			case o.kind == widenBF16 && k.packBF16 != nil:
				b := o.m.(BF16)
				k.packBF16(pl, b.Data[q*b.K+p0:], b.K, w, kc)
				continue
			case o.kind == widenF16 && k.packF16 != nil:
				b := o.m.(F16)
				k.packF16(pl, b.Data[q*b.K+p0:], b.K, w, kc)
				continue
			}
		}
		switch o.kind {
		case widenBF16:
			b := o.m.(BF16)
			for i := 0; i < rows; i++ {
				k.widenBF16(tmp[i*kc:(i+1)*kc], b.Data[(q+i)*b.K+p0:(q+i)*b.K+p1])
			}
		case widenF16:
			b := o.m.(F16)
			for i := 0; i < rows; i++ {
				k.widenF16(tmp[i*kc:(i+1)*kc], b.Data[(q+i)*b.K+p0:(q+i)*b.K+p1])
			}
		default:
			o.m.Widen(tmp, kc, q, q+rows, p0, p1)
		}
		if rows == w {
			k.packRows(pl, tmp, kc, w, kc)
			continue
		}
		for i := 0; i < rows; i++ {
			panel.Scatter(pl, tmp[i*kc:(i+1)*kc], i, w)
		}
		zeroRows(pl, rows, w, kc)
	}
}

// zeroRows clears rows [rows, w) of a panel of kc steps.
func zeroRows(pl []float32, rows, w, kc int) {
	if rows == w {
		return
	}
	for p := 0; p < kc; p++ {
		clear(pl[p*w+rows : p*w+w])
	}
}

// int4Op packs a GPTQ matrix straight from its nibbles: for an input p the
// codes of consecutive outputs are consecutive words of QWeight, which is the
// panel layout already.
type int4Op struct{ m Int4 }

func (o int4Op) pack(k *kernel, ws *workspace, dst []float32, r0, r1, p0, p1, w int) {
	m := &o.m
	kc := p1 - p0
	cols := r1 - r0
	sc, zs := ws.int4Tables(m, r0, r1)
	for q := r0; q < r1; q += w {
		pl := dst[(q-r0)*kc : (q-r0)*kc+w*kc]
		rows := min(w, r1-q)
		k.int4Panel(pl, w, m, q, rows, sc, zs, cols, q-r0, p0, p1)
		zeroRows(pl, rows, w, kc)
	}
}

// int4PanelGo is the portable kernel.int4Panel.
func int4PanelGo(d []float32, w int, m *Int4, q, rows int, sc []float32, zs []int32, ldt, t0, p0, p1 int) {
	for p := p0; p < p1; p++ {
		g := int(m.GIdx[p])
		words := m.QWeight[(p/8)*m.N+q : (p/8)*m.N+q+rows]
		shift := uint(p%8) * 4
		s := sc[g*ldt+t0 : g*ldt+t0+rows]
		z := zs[g*ldt+t0 : g*ldt+t0+rows]
		dd := d[(p-p0)*w : (p-p0)*w+rows]
		for i, wd := range words {
			dd[i] = s[i] * float32(int32(uint32(wd)>>shift&15)-z[i])
		}
	}
}

// mustCheck panics when an Int4 matrix is malformed (the SIMD paths index
// its tables by g_idx without bounds checks).
func mustCheck(m Int4) {
	if err := m.check(); err != nil {
		panic("gemm: " + err.Error())
	}
}

// operandOf returns the packing operand for a weight matrix.
func operandOf(b Matrix) operand {
	switch m := b.(type) {
	case F32:
		return rowsF32{m.Data, m.K}
	case *F32:
		return rowsF32{m.Data, m.K}
	case BF16:
		return widened{m, widenBF16}
	case *BF16:
		return widened{*m, widenBF16}
	case F16:
		return widened{m, widenF16}
	case *F16:
		return widened{*m, widenF16}
	case Int4:
		if m.N%8 == 0 && m.N > 0 {
			mustCheck(m)
			return int4Op{m}
		}
	case *Int4:
		if m.N%8 == 0 && m.N > 0 {
			mustCheck(*m)
			return int4Op{*m}
		}
	}
	return widened{b, widenAny}
}
