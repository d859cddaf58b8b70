package gemm

// DotRows sets s[j] = Σ_i q[i]·k[j·ldk + i] for j < len(s), i < len(q): one
// query against len(s) key rows ldk apart (attention scores over a KV cache
// whose rows hold every head). SIMD where the active implementation has it.
func DotRows(s, q, k []float32, ldk int) {
	if len(s) == 0 {
		return
	}
	_ = k[(len(s)-1)*ldk+len(q)-1]
	if f := active.Load().dotRows; f != nil {
		f(s, q, k, ldk)
		return
	}
	dotRowsGo(s, q, k, ldk)
}

// AxpyRows adds Σ_j p[j]·v[j·ldv + i] to o[i] for j < len(p), i < len(o):
// the probability-weighted sum of value rows ldv apart.
func AxpyRows(o, p, v []float32, ldv int) {
	if len(p) == 0 || len(o) == 0 {
		return
	}
	_ = v[(len(p)-1)*ldv+len(o)-1]
	if f := active.Load().axpyRows; f != nil {
		f(o, p, v, ldv)
		return
	}
	axpyRowsGo(o, p, v, ldv)
}

func dotRowsGo(s, q, k []float32, ldk int) {
	for j := range s {
		s[j] = dotGo(q, k[j*ldk:j*ldk+len(q)])
	}
}

func axpyRowsGo(o, p, v []float32, ldv int) {
	for j, w := range p {
		x := v[j*ldv : j*ldv+len(o)]
		for i := range o {
			o[i] += w * x[i]
		}
	}
}
