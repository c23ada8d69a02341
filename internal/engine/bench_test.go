package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/engine/enginefake"
)

func TestBenchGenerate(t *testing.T) {
	m, err := enginefake.New(enginefake.Options{TokenDelay: time.Millisecond}).Load(context.Background(), engine.LoadParams{Path: "x", Parallel: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	prompts := [][]int{{0, 10, 11}, {0, 12}, {0, 13, 14, 15}}
	r, err := engine.BenchGenerate(context.Background(), m, prompts, 5)
	if err != nil {
		t.Fatal(err)
	}
	if r.Streams != 3 || r.PromptTokens != 9 || r.CompletionTokens != 15 || r.DecodeTokensPerSecond <= 0 || r.StepDecodeTokensPerSecond <= 0 || r.PrefillTokensPerSecond <= 0 || r.Wall < r.Prefill {
		t.Errorf("BenchGenerate = %+v", r)
	}
	if _, err := engine.BenchGenerate(context.Background(), m, [][]int{{}}, 5); err == nil {
		t.Error("an invalid prompt did not fail the benchmark")
	}
}
