package convert

import (
	"fmt"
	"math"
	"slices"

	"github.com/moeforge/moeforge/internal/gemm"
)

// pickShared chooses the shared expert's S neurons from the contributions
// c [N, F]: the neurons with the largest total contribution, or (by
// frequency) those most often among a token's MarkerSize largest
// contributions (ties: larger total contribution, then lower index). It
// returns the shared and the routed neurons, each in increasing order.
func (r *carveRecipe) pickShared(c []float32, N int) (shared, routed []int32) {
	F, m := r.F, r.co.MarkerSize
	count := make([]int, F)
	mass := make([]float64, F)
	scratch := make([]float32, F)
	for t := 0; t < N; t++ {
		row := c[t*F : (t+1)*F]
		copy(scratch, row)
		thr := kthLargest(scratch, m)
		for n, v := range row {
			mass[n] += float64(v)
			if v >= thr {
				count[n]++
			}
		}
	}
	order := make([]int, F)
	for i := range order {
		order[i] = i
	}
	byFreq := r.co.SharedBy == CarveByFrequency
	slices.SortFunc(order, func(a, b int) int {
		if byFreq && count[a] != count[b] {
			return count[b] - count[a]
		}
		if d := cmpDesc(mass[a], mass[b]); d != 0 {
			return d
		}
		return a - b
	})
	for i, n := range order {
		if i < r.S {
			shared = append(shared, int32(n))
		} else {
			routed = append(routed, int32(n))
		}
	}
	slices.Sort(shared)
	slices.Sort(routed)
	return shared, routed
}

// kthLargest returns the k-th largest value of v (1-based), reordering v.
func kthLargest(v []float32, k int) float32 {
	lo, hi, want := 0, len(v)-1, k-1
	for lo < hi {
		p := v[(lo+hi)/2]
		i, j := lo, hi
		for i <= j {
			for v[i] > p {
				i++
			}
			for v[j] < p {
				j--
			}
			if i <= j {
				v[i], v[j] = v[j], v[i]
				i++
				j--
			}
		}
		switch {
		case want <= j:
			hi = j
		case want >= i:
			lo = i
		default:
			return v[want]
		}
	}
	return v[want]
}

// maxClusterTokens caps the tokens whose activations describe a neuron for
// clustering (evenly strided over the calibration tokens).
const maxClusterTokens = 8192

// cluster splits the routed neurons into E clusters of exactly I neurons
// each, grouping neurons that are active on the same tokens: balanced
// k-means on each neuron's features over the calibration tokens (see
// CarveOptions.Features), seeded k-means++ start, capacity-constrained
// assignment (greedy by distance, then improving swaps). It returns each
// routed neuron's cluster and the number of iterations run.
func (r *carveRecipe) cluster(layer int, c []float32, N int, routed []int32) ([]int, int) {
	F, R, E, I := r.F, len(routed), r.E, r.I
	D := min(N, maxClusterTokens)
	f := make([]float32, R*D)
	for j := 0; j < D; j++ {
		t := j * N / D
		row := c[t*F : (t+1)*F]
		switch r.co.Features {
		case CarveBinary:
			thr := kthLargest(slices.Clone(row), r.co.MarkerSize)
			for k, n := range routed {
				if row[n] >= thr {
					f[k*D+j] = 1
				}
			}
		default:
			for k, n := range routed {
				f[k*D+j] = row[n]
			}
		}
	}
	for k := 0; k < R && r.co.Features == CarveUnit; k++ {
		v := f[k*D : (k+1)*D]
		var ss float64
		for _, x := range v {
			ss += float64(x) * float64(x)
		}
		if ss > 0 {
			inv := float32(1 / math.Sqrt(ss))
			for i := range v {
				v[i] *= inv
			}
		}
	}
	norms := make([]float64, R)
	for k := range norms {
		norms[k] = sqNorm(f[k*D : (k+1)*D])
	}
	rng := newRNG(r.opts.Seed, fmt.Sprintf("carve/kmeans/%d", layer))

	// k-means++ start.
	mu := make([]float32, E*D)
	d2 := make([]float64, R)
	for k := range d2 {
		d2[k] = math.Inf(1)
	}
	pick := intN(rng, R)
	for e := 0; e < E; e++ {
		copy(mu[e*D:(e+1)*D], f[pick*D:(pick+1)*D])
		var sum float64
		for k := 0; k < R; k++ {
			d := sqDist(f[k*D:(k+1)*D], mu[e*D:(e+1)*D])
			d2[k] = math.Min(d2[k], d)
			sum += d2[k]
		}
		if e == E-1 {
			break
		}
		target := uniform(rng) * sum
		pick = R - 1
		for k := 0; k < R; k++ {
			target -= d2[k]
			if target < 0 {
				pick = k
				break
			}
		}
	}

	assign := make([]int, R)
	for k := range assign {
		assign[k] = -1
	}
	dot := make([]float32, R*E)
	dist := make([]float64, R*E)
	it := 0
	for it < r.co.Iterations {
		it++
		gemm.MulT(dot, f, gemm.F32{Data: mu, N: E, K: D}, R, false)
		for e := 0; e < E; e++ {
			me := sqNorm(mu[e*D : (e+1)*D])
			for k := 0; k < R; k++ {
				dist[k*E+e] = norms[k] - 2*float64(dot[k*E+e]) + me
			}
		}
		next := balancedAssign(dist, R, E, I)
		improveSwaps(next, dist, R, E)
		same := slices.Equal(next, assign)
		assign = next
		// Centroids: the mean of each cluster's members.
		clear(mu)
		for k, e := range assign {
			m := mu[e*D : (e+1)*D]
			for j, v := range f[k*D : (k+1)*D] {
				m[j] += v
			}
		}
		for i := range mu {
			mu[i] /= float32(I)
		}
		if same {
			break
		}
	}
	return assign, it
}

func sqNorm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return s
}

func sqDist(a, b []float32) float64 {
	var s float64
	for i, x := range a {
		d := float64(x) - float64(b[i])
		s += d * d
	}
	return s
}

// balancedAssign gives each of R items one of E clusters, exactly cap items
// per cluster (R = E·cap), greedily by increasing distance dist [R, E]
// (ties: lower item, then lower cluster).
func balancedAssign(dist []float64, R, E, cap int) []int {
	pairs := make([]int, R*E)
	for i := range pairs {
		pairs[i] = i
	}
	slices.SortFunc(pairs, func(a, b int) int {
		if d := dist[a] - dist[b]; d != 0 {
			if d < 0 {
				return -1
			}
			return 1
		}
		return a - b
	})
	assign := make([]int, R)
	for i := range assign {
		assign[i] = -1
	}
	fill := make([]int, E)
	left := R
	for _, p := range pairs {
		k, e := p/E, p%E
		if assign[k] >= 0 || fill[e] == cap {
			continue
		}
		assign[k] = e
		fill[e]++
		if left--; left == 0 {
			break
		}
	}
	return assign
}

// improveSwaps exchanges the clusters of two items while that lowers the
// total distance (keeps the cluster sizes), in deterministic sweeps.
func improveSwaps(assign []int, dist []float64, R, E int) {
	for sweep := 0; sweep < 8; sweep++ {
		changed := false
		for a := 0; a < R; a++ {
			for b := a + 1; b < R; b++ {
				ea, eb := assign[a], assign[b]
				if ea == eb {
					continue
				}
				gain := dist[a*E+ea] + dist[b*E+eb] - dist[a*E+eb] - dist[b*E+ea]
				if gain > 1e-12 {
					assign[a], assign[b] = eb, ea
					changed = true
				}
			}
		}
		if !changed {
			return
		}
	}
}
