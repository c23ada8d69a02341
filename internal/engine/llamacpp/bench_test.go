package llamacpp

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
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

// llama800M is a 1B-class shape (GQA, head dimension 128; hack/gpu/genmodel's
// 800M), in Q4_0, for CORTEX_BENCH_LARGE.
var llama800M = ggufgen.LlamaParams{
	Name: "random-llama-800M", Layers: 16, Embd: 2048, Heads: 16, HeadsKV: 4, FF: 5632,
	Vocab: 32000, Context: 2048, WeightType: "q4_0",
}

// BenchmarkEngine measures the engine against llama.cpp alone, llama-bench
// style, on the same weights in the same process: prefill ("pp": 128-token
// prompts, one generated token) and decode ("tg": 4-token prompts, then
// genLen tokens), each for one stream and for 8 concurrent streams, on
// stories260K and a generated 100M-parameter llama in Q8_0 and Q4_0
// (CORTEX_BENCH_LARGE=1 adds an 800M Q4_0 llama). Every iteration sends
// fresh random prompts, so the prompt cache does not help.
//
// Each iteration runs the engine (engine.BenchGenerate) and the reference
// driver (llamabench.c: llama-bench's pp/tg timing loops on a context with
// the engine's parameters), in alternating order, and reports both rates
// and their ratio (engine ÷ reference, the median over the iterations), so
// that noise from a shared machine hits both sides alike. Run it with
//
//	make bench-engine    # go test -run '^$' -bench Engine -benchtime 3x ./internal/engine/llamacpp/
//
// CORTEX_BENCH_THREADS sets the CPU threads (default: the engine's).
func BenchmarkEngine(b *testing.B) {
	type benchModel struct {
		name   string
		path   func(testing.TB) string
		genLen int
	}
	random := func(p ggufgen.LlamaParams) func(testing.TB) string {
		return func(tb testing.TB) string {
			if n, err := ggufgen.LlamaParameterCount(p); err == nil {
				tb.Logf("generating a %.1fM-parameter %s llama", float64(n)/1e6, p.WeightType)
			}
			return writeRandomModel(tb, p)
		}
	}
	q4 := llama100M
	q4.WeightType = "q4_0"
	models := []benchModel{
		{"stories260K", storiesPath, 64},
		{"llama100M-q8_0", random(llama100M), 32},
		{"llama100M-q4_0", random(q4), 32},
	}
	if os.Getenv("CORTEX_BENCH_LARGE") != "" {
		models = append(models, benchModel{"llama800M-q4_0", random(llama800M), 16})
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
			ref := newRefBenchT(b, m)
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
			// Warm both sides up (first-use allocations, page faults).
			if _, err := engine.BenchGenerate(context.Background(), m, prompts(1, 16), 2); err != nil {
				b.Fatal(err)
			}
			if _, err := ref.prompt(16, 1, 1); err != nil {
				b.Fatal(err)
			}
			for _, streams := range []int{1, 8} {
				b.Run(fmt.Sprintf("pp128/streams=%d", streams), func(b *testing.B) {
					var c comparison
					for i := 0; i < b.N; i++ {
						c.run(i, func() float64 {
							r, err := engine.BenchGenerate(context.Background(), m, prompts(streams, 128), 1)
							if err != nil {
								b.Fatal(err)
							}
							c.ttft += r.MeanTTFT.Seconds() * 1000
							return r.PrefillTokensPerSecond
						}, func() float64 {
							d, err := ref.prompt(128, streams, uint32(i+1))
							if err != nil {
								b.Fatal(err)
							}
							return float64(128*streams) / d.Seconds()
						})
					}
					c.report(b, "prefill_tok/s")
					b.ReportMetric(c.ttft/float64(b.N), "ttft_ms")
				})
				b.Run(fmt.Sprintf("tg%d/streams=%d", mc.genLen, streams), func(b *testing.B) {
					var c comparison
					for i := 0; i < b.N; i++ {
						c.run(i, func() float64 {
							r, err := engine.BenchGenerate(context.Background(), m, prompts(streams, 4), mc.genLen)
							if err != nil {
								b.Fatal(err)
							}
							c.ttft += r.DecodeTokensPerSecond
							return r.StepDecodeTokensPerSecond
						}, func() float64 {
							// The engine's first token comes from the
							// prompt's decode; genLen-1 steps follow.
							d, err := ref.generate(4, mc.genLen-1, streams, uint32(i+1))
							if err != nil {
								b.Fatal(err)
							}
							return float64((mc.genLen-1)*streams) / d.Seconds()
						})
					}
					c.report(b, "decode_tok/s")
					// The end-to-end figure (first token included) recorded
					// in docs/benchmarks.md before the reference existed.
					b.ReportMetric(c.ttft/float64(b.N), "e2e_decode_tok/s")
				})
			}
		})
	}
}

// newRefBenchT creates the reference driver's context on the model's
// weights, with the engine context's parameters.
func newRefBenchT(tb testing.TB, em engine.Model) *refBench {
	m := em.(*model)
	var ref *refBench
	err := m.withVocab(func() error {
		var err error
		ref, err = newRefBench(m.cm, m.cparams)
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	// Before the model's Close (cleanups run last-in first-out).
	tb.Cleanup(ref.free)
	return ref
}

// comparison accumulates interleaved engine and reference rates.
type comparison struct {
	engine, ref, ratio []float64
	ttft               float64 // spare accumulator for a side metric
}

// run measures both sides once, alternating which goes first.
func (c *comparison) run(i int, eng, ref func() float64) {
	var e, r float64
	if i%2 == 0 {
		e, r = eng(), ref()
	} else {
		r, e = ref(), eng()
	}
	c.engine = append(c.engine, e)
	c.ref = append(c.ref, r)
	if r > 0 {
		c.ratio = append(c.ratio, e/r)
	}
}

// report gives the medians over the iterations. A mean would let one
// iteration that lost its time slice to another process (a tiny model's
// decode pass lasts a few milliseconds) move the figure arbitrarily far:
// on a shared 2-core machine single iterations of stories260K decode
// showed ratios above 10 in both directions.
func (c *comparison) report(b *testing.B, unit string) {
	b.ReportMetric(median(c.engine), unit)
	b.ReportMetric(median(c.ref), "ref_"+unit)
	b.ReportMetric(median(c.ratio), "ratio")
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
