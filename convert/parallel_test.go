package convert

import (
	"context"
	"crypto/sha256"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestWorkersByteIdentical writes the same conversions computed one tensor
// at a time and on several goroutines with a budget small enough that the
// writer waits for them: every file must be byte-identical.
func TestWorkersByteIdentical(t *testing.T) {
	src := denseTiny(t)
	for _, opts := range []UpcycleOptions{
		{Mode: Qwen2Report, Seed: 11},
		{Mode: MegatronScaled, Shuffle: true, ReinitFraction: ptr(0.25), Seed: 11},
		{Mode: SharedExact, Seed: 3},
		{Mode: VirtualGroup, Shuffle: true, Seed: 11, DecoderSparseStep: 2},
	} {
		t.Run(string(opts.Mode), func(t *testing.T) {
			write := func(workers int, budget int64) map[string]string {
				p, err := Upcycle(openCheckpoint(t, src), opts)
				if err != nil {
					t.Fatal(err)
				}
				p.Workers, p.budget = workers, budget
				dir := t.TempDir()
				if _, err := p.Write(context.Background(), dir, WriteOptions{MaxShardSize: 400_000}); err != nil {
					t.Fatal(err)
				}
				sums := map[string]string{}
				for n, b := range readDir(t, dir) {
					sums[n] = fmt.Sprintf("%x", sha256.Sum256(b))
				}
				return sums
			}
			one := write(1, 0)
			for _, c := range []struct {
				workers int
				budget  int64
			}{{4, 0}, {3, 1}, {8, 50_000}} {
				if diff := cmp.Diff(one, write(c.workers, c.budget)); diff != "" {
					t.Errorf("%d workers, budget %d: files differ from one worker (-one +many):\n%s", c.workers, c.budget, diff)
				}
			}
		})
	}
}

// TestProduceAheadStops checks that an output that fails stops the writing
// with its error and that the goroutines computing ahead end.
func TestProduceAheadStops(t *testing.T) {
	var produce []func() ([]byte, error)
	for i := 0; i < 20; i++ {
		produce = append(produce, func() ([]byte, error) {
			if i == 5 {
				return nil, fmt.Errorf("tensor %d failed", i)
			}
			return make([]byte, 10), nil
		})
	}
	sizes := make([]int64, len(produce))
	for i := range sizes {
		sizes[i] = 10
	}
	p := startProduceAhead(produce, sizes, 3, 25)
	var err error
	for i := range produce {
		if _, err = p.get(i); err != nil {
			break
		}
		p.written(i)
	}
	p.close()
	if err == nil || err.Error() != "tensor 5 failed" {
		t.Fatalf("err = %v, want tensor 5 failed", err)
	}
}
