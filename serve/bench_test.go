package serve_test

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/moeforge/moeforge/serve"
)

// runStreams generates n tokens on each of k concurrent sequences through
// one engine and returns the elapsed time and the mean time to first token.
func runStreams(tb testing.TB, e *serve.Engine, prompts [][]int, n int) (time.Duration, time.Duration) {
	var wg sync.WaitGroup
	reqs := make([]*serve.Request, len(prompts))
	start := time.Now()
	for i, p := range prompts {
		reqs[i] = &serve.Request{Prompt: p, MaxTokens: n, Tokens: make(chan int, n+1)}
		if err := e.Submit(context.Background(), reqs[i]); err != nil {
			tb.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			got := 0
			for range reqs[i].Tokens {
				got++
			}
			if got != n || reqs[i].Err != nil {
				tb.Errorf("stream %d: %d tokens, error %v", i, got, reqs[i].Err)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var ttft time.Duration
	for _, r := range reqs {
		ttft += r.FirstTokenLatency()
	}
	return elapsed, ttft / time.Duration(len(reqs))
}

// BenchmarkConcurrentStreams: tokens/s of 1 and of 8 concurrent streams
// on qwen2_moe_small (64-token prompts, 64 new tokens each, prompt
// processing included), in the same process, and their ratio in wall
// time and in CPU time (the goal: ≥ 4×).
//
//	go test -run X -bench ConcurrentStreams ./serve
//
// MOEFORGE_BENCH_MODEL=DIR runs it on another checkpoint (e.g. the GPTQ
// model demo --keep writes).
func BenchmarkConcurrentStreams(b *testing.B) {
	f := benchModel(b)
	e := serve.NewEngine(f.m, 16, 64)
	defer e.Close(context.Background())
	prompt := func(i int) []int {
		p := make([]int, 64)
		for j := range p {
			p[j] = (i*131 + j*17 + 5) % f.m.Config.VocabSize
		}
		return p
	}
	const n = 64
	var tps, cpu [2]float64
	for b.Loop() {
		for k, streams := range []int{1, 8} {
			var ps [][]int
			for i := 0; i < streams; i++ {
				ps = append(ps, prompt(i))
			}
			c0 := cpuTime()
			el, _ := runStreams(b, e, ps, n)
			tps[k] = float64(streams*n) / el.Seconds()
			cpu[k] = float64(streams*n) / (cpuTime() - c0).Seconds()
		}
	}
	b.ReportMetric(tps[0], "tok/s_1stream")
	b.ReportMetric(tps[1], "tok/s_8streams")
	b.ReportMetric(tps[1]/tps[0], "x_speedup")
	// tokens per CPU-second: what the speedup is on a machine shared with
	// other work, where wall time depends on what the others run
	b.ReportMetric(cpu[1]/cpu[0], "x_speedup_cpu")
}

func benchModel(b *testing.B) *fixtureModel {
	if dir := os.Getenv("MOEFORGE_BENCH_MODEL"); dir != "" {
		return openDir(b, dir)
	}
	return openFixture(b, "models/qwen2_moe_small")
}

// BenchmarkLatency: time to first token for a 256-token prompt and the
// per-token latency of the 64 tokens after it, one stream, qwen2_moe_small
// (or MOEFORGE_BENCH_MODEL).
//
//	go test -run X -bench Latency ./serve
func BenchmarkLatency(b *testing.B) {
	{
		b.Run("model", func(b *testing.B) {
			f := benchModel(b)
			e := serve.NewEngine(f.m, 16, 64)
			defer e.Close(context.Background())
			p := make([]int, 256)
			for j := range p {
				p[j] = (j*37 + 11) % f.m.Config.VocabSize
			}
			const n = 64
			var ttft, per time.Duration
			for b.Loop() {
				el, first := runStreams(b, e, [][]int{p}, n)
				ttft, per = first, (el-first)/time.Duration(n-1)
			}
			b.ReportMetric(float64(ttft.Microseconds())/1000, "ms_ttft_256")
			b.ReportMetric(float64(per.Microseconds())/1000, "ms/token")
		})
	}
}
