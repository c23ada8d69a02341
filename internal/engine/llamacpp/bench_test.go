package llamacpp

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/gguf/ggufgen"
)

// llama100M is a ~100M-parameter llama (tied embeddings, Q8_0 weights,
// about 106 MB) generated for the benchmark.
var llama100M = ggufgen.LlamaParams{
	Name: "random-llama-100M", Layers: 12, Embd: 768, Heads: 12, HeadsKV: 4, FF: 2048,
	Vocab: 32000, Context: 2048, WeightType: "q8_0",
}

// BenchmarkEngine measures the engine alone, llama-bench style: prefill
// ("pp": 128-token prompts, one generated token) and decode ("tg": 4-token
// prompts, then genLen tokens), each for one stream and for 8 concurrent
// streams, on stories260K and a generated 100M-parameter llama. Every
// iteration sends fresh random prompts, so the prompt cache does not help.
// Run it with
//
//	go test -run '^$' -bench Engine -benchtime 3x ./internal/engine/llamacpp/
//
// CORTEX_BENCH_THREADS sets the CPU threads (default: the engine's).
func BenchmarkEngine(b *testing.B) {
	models := []struct {
		name   string
		path   func(testing.TB) string
		genLen int
	}{
		{"stories260K", storiesPath, 64},
		{"llama100M", func(tb testing.TB) string {
			if n, err := ggufgen.LlamaParameterCount(llama100M); err == nil {
				tb.Logf("generating a %.1fM-parameter llama", float64(n)/1e6)
			}
			return writeRandomModel(tb, llama100M)
		}, 32},
	}
	for _, mc := range models {
		b.Run(mc.name, func(b *testing.B) {
			t0 := time.Now()
			path := mc.path(b)
			threads, _ := strconv.Atoi(os.Getenv("CORTEX_BENCH_THREADS"))
			if threads == 0 {
				threads = defaultThreads()
			}
			m := loadModelT(b, engine.LoadParams{Path: path, Parallel: 8, ContextLength: 1024, Threads: threads})
			b.Logf("model ready in %v, %d threads", time.Since(t0).Round(time.Millisecond), threads)
			rng := rand.New(rand.NewPCG(1, 2))
			vocab := m.Info().VocabSize
			prompts := func(n, length int) [][]int {
				out := make([][]int, n)
				for s := range out {
					p := []int{1}
					for len(p) < length {
						p = append(p, 3+rng.IntN(vocab-3))
					}
					out[s] = p
				}
				return out
			}
			for _, streams := range []int{1, 8} {
				b.Run(fmt.Sprintf("pp128/streams=%d", streams), func(b *testing.B) {
					var rate, ttft float64
					for i := 0; i < b.N; i++ {
						r, err := engine.BenchGenerate(context.Background(), m, prompts(streams, 128), 1)
						if err != nil {
							b.Fatal(err)
						}
						rate += r.PrefillTokensPerSecond
						ttft += float64(r.MeanTTFT.Milliseconds())
					}
					b.ReportMetric(rate/float64(b.N), "prefill_tok/s")
					b.ReportMetric(ttft/float64(b.N), "ttft_ms")
				})
				b.Run(fmt.Sprintf("tg%d/streams=%d", mc.genLen, streams), func(b *testing.B) {
					var rate float64
					for i := 0; i < b.N; i++ {
						r, err := engine.BenchGenerate(context.Background(), m, prompts(streams, 4), mc.genLen)
						if err != nil {
							b.Fatal(err)
						}
						rate += r.DecodeTokensPerSecond
					}
					b.ReportMetric(rate/float64(b.N), "decode_tok/s")
				})
			}
		})
	}
}
