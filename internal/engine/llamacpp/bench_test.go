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
	"github.com/helexa-ai/cortex/internal/gguf"
)

// llama100M is a ~100M-parameter llama (tied embeddings, Q8_0 weights,
// about 106 MB) generated for the benchmark.
var llama100M = gguf.LlamaParams{
	Name: "random-llama-100M", Layers: 12, Embd: 768, Heads: 12, HeadsKV: 4, FF: 2048,
	Vocab: 32000, Context: 2048, WeightType: "q8_0",
}

// BenchmarkEngine measures the engine alone: prefill and decode tokens per
// second for one stream and for 8 concurrent streams, on stories260K and a
// generated 100M-parameter llama. Each iteration sends fresh random
// prompts, so the prompt cache does not help. Run it with
//
//	go test -run '^$' -bench Engine -benchtime 3x ./internal/engine/llamacpp/
//
// CORTEX_BENCH_THREADS sets the CPU threads (default: the engine's).
func BenchmarkEngine(b *testing.B) {
	models := []struct {
		name              string
		path              func(testing.TB) string
		promptLen, genLen int
	}{
		{"stories260K", storiesPath, 128, 64},
		{"llama100M", func(tb testing.TB) string {
			if n, err := gguf.LlamaParameterCount(llama100M); err == nil {
				tb.Logf("generating a %.1fM-parameter llama", float64(n)/1e6)
			}
			return writeRandomModel(tb, llama100M)
		}, 128, 32},
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
			b.Logf("model ready in %v", time.Since(t0).Round(time.Millisecond))
			rng := rand.New(rand.NewPCG(1, 2))
			vocab := m.Info().VocabSize
			for _, streams := range []int{1, 8} {
				b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) {
					var prefill, decode, ttft float64
					for i := 0; i < b.N; i++ {
						prompts := make([][]int, streams)
						for s := range prompts {
							p := []int{1}
							for len(p) < mc.promptLen {
								p = append(p, 3+rng.IntN(vocab-3))
							}
							prompts[s] = p
						}
						r, err := engine.BenchGenerate(context.Background(), m, prompts, mc.genLen)
						if err != nil {
							b.Fatal(err)
						}
						prefill += r.PrefillTokensPerSecond
						decode += r.DecodeTokensPerSecond
						ttft += float64(r.MeanTTFT.Milliseconds())
					}
					n := float64(b.N)
					b.ReportMetric(prefill/n, "prefill_tok/s")
					b.ReportMetric(decode/n, "decode_tok/s")
					b.ReportMetric(ttft/n, "ttft_ms")
				})
			}
		})
	}
}
