package convert

import (
	"hash/fnv"
	"math"
	"math/bits"
	"math/rand/v2"
)

// Every random draw of a conversion comes from a PCG generator seeded with
// (seed, hash of a key naming the draw), e.g. "router/3" or
// "reinit/model.layers.0.mlp.experts.5.up_proj". Draws therefore do not
// depend on the order tensors are produced in, and the same seed gives the
// same output. Only the generator's raw 64-bit output is used; the integer,
// uniform and normal draws below are defined here so that they cannot change
// with the Go release.

// newRNG returns the generator for one named draw.
func newRNG(seed uint64, key string) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(key))
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}

// uniform returns a float64 in [0, 1) with 53 random bits.
func uniform(r *rand.Rand) float64 { return float64(r.Uint64()>>11) * 0x1p-53 }

// intN returns an integer in [0, n) without bias (Lemire's method).
func intN(r *rand.Rand, n int) int {
	un := uint64(n)
	hi, lo := bits.Mul64(r.Uint64(), un)
	if lo < un {
		thresh := -un % un
		for lo < thresh {
			hi, lo = bits.Mul64(r.Uint64(), un)
		}
	}
	return int(hi)
}

// normal returns a standard normal draw (Box–Muller, one value per pair of
// uniforms).
func normal(r *rand.Rand) float64 {
	u1 := 1 - uniform(r) // (0, 1]: log is finite
	u2 := uniform(r)
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

// permutation returns a uniformly random permutation of [0, n) (Fisher–Yates).
func permutation(r *rand.Rand, n int) []int32 {
	p := make([]int32, n)
	for i := range p {
		p[i] = int32(i)
	}
	for i := n - 1; i > 0; i-- {
		j := intN(r, i+1)
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// normalRows returns rows × cols draws from N(0, std²) as float32.
func normalRows(r *rand.Rand, rows, cols int, std float64) []float32 {
	out := make([]float32, rows*cols)
	for i := range out {
		out[i] = float32(normal(r) * std)
	}
	return out
}
