package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// BenchResult summarises BenchGenerate: len(prompts) completions run at
// once against one model.
type BenchResult struct {
	Streams          int
	PromptTokens     int // all prompts, cached tokens included
	CachedTokens     int
	CompletionTokens int
	// Wall runs from the start to the last completion's end; Prefill from
	// the start to the last stream's first token; Decode from the first
	// stream's first token to the end.
	Wall, Prefill, Decode time.Duration
	// MeanTTFT is the mean time to first token over the streams.
	MeanTTFT time.Duration
	// PrefillTokensPerSecond is uncached prompt tokens over Prefill;
	// DecodeTokensPerSecond completion tokens over Decode (aggregate over
	// the streams).
	PrefillTokensPerSecond, DecodeTokensPerSecond float64
	// StepDecodeTokensPerSecond is decode alone, comparable with
	// llama-bench's tg: the tokens after each stream's first (those come
	// from decode steps, not prefill) over the time from the first stream's
	// first token to the last stream's last, as the engine timed them, so
	// that neither the first token's prefill nor the callers' wake-ups
	// count.
	StepDecodeTokensPerSecond float64
}

// BenchGenerate runs one greedy completion of up to maxTokens for each
// prompt, all concurrently, and measures prefill and decode throughput
// from the engine's own timings. It serves the engine's benchmarks and
// lets higher layers compare their overhead with the engine called
// directly.
func BenchGenerate(ctx context.Context, m Model, prompts [][]int, maxTokens int) (BenchResult, error) {
	if len(prompts) == 0 {
		return BenchResult{}, errors.New("no prompts")
	}
	results := make([]Result, len(prompts))
	errs := make([]error, len(prompts))
	start := time.Now()
	var wg sync.WaitGroup
	for i, p := range prompts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = m.Generate(ctx, GenerateRequest{Prompt: p, MaxTokens: maxTokens}, func(Chunk) error { return nil })
		}()
	}
	wg.Wait()
	end := time.Now()
	if err := errors.Join(errs...); err != nil {
		return BenchResult{}, fmt.Errorf("benchmark generation: %w", err)
	}
	b := BenchResult{Streams: len(prompts), Wall: end.Sub(start)}
	var firstMin, firstMax, ttftSum, lastEnd time.Duration
	stepTokens := 0
	for i, r := range results {
		if r.CompletionTokens > 1 {
			stepTokens += r.CompletionTokens - 1
		}
		lastEnd = max(lastEnd, r.QueueTime+r.PromptTime+r.GenerateTime)
		b.PromptTokens += r.PromptTokens
		b.CachedTokens += r.CachedTokens
		b.CompletionTokens += r.CompletionTokens
		ttft := r.QueueTime + r.PromptTime
		ttftSum += ttft
		if i == 0 || ttft < firstMin {
			firstMin = ttft
		}
		firstMax = max(firstMax, ttft)
	}
	b.MeanTTFT = ttftSum / time.Duration(len(results))
	b.Prefill = firstMax
	b.Decode = b.Wall - firstMin
	if b.Prefill > 0 {
		b.PrefillTokensPerSecond = float64(b.PromptTokens-b.CachedTokens) / b.Prefill.Seconds()
	}
	if b.Decode > 0 {
		b.DecodeTokensPerSecond = float64(b.CompletionTokens) / b.Decode.Seconds()
	}
	if steps := lastEnd - firstMin; steps > 0 && stepTokens > 0 {
		b.StepDecodeTokensPerSecond = float64(stepTokens) / steps.Seconds()
	}
	return b, nil
}
