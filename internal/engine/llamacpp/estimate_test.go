package llamacpp

import (
	"regexp"
	"strconv"
	"sync"
	"testing"

	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/gguf"
	"github.com/helexa-ai/cortex/internal/gguf/ggufgen"
)

var bufferLine = regexp.MustCompile(`\S+\s+(model|KV|output|compute) buffer size =\s+([0-9.]+) MiB`)

// TestEstimateAgainstLlama compares gguf.Estimate with the buffers
// llama.cpp reports allocating: the KV cache must match, the compute and
// output buffers must never be underestimated, nor overestimated wildly.
func TestEstimateAgainstLlama(t *testing.T) {
	var mu sync.Mutex
	got := map[string]float64{}
	tap := func(line string) {
		if m := bufferLine.FindStringSubmatch(line); m != nil {
			v, _ := strconv.ParseFloat(m[2], 64)
			mu.Lock()
			got[m[1]] += v
			mu.Unlock()
		}
	}
	logTap.Store(&tap)
	defer logTap.Store(nil)

	small := ggufgen.LlamaParams{Layers: 2, Embd: 256, Heads: 8, HeadsKV: 2, FF: 512, Vocab: 4096}
	bigVocab := ggufgen.LlamaParams{Layers: 2, Embd: 256, Heads: 8, HeadsKV: 2, FF: 512, Vocab: 32000}
	wide := ggufgen.LlamaParams{Layers: 2, Embd: 1024, Heads: 32, HeadsKV: 8, FF: 1024, Vocab: 1000}
	tests := []struct {
		name     string
		model    *ggufgen.LlamaParams // nil: stories260K
		ctx, par int
		flash    bool
	}{
		{"stories default", nil, 0, 0, true},
		{"stories no flash", nil, 2048, 4, false},
		{"stories long", nil, 8192, 1, false},
		{"small flash", &small, 1024, 2, true},
		{"small no flash", &small, 1000, 3, false},
		{"32k vocab", &bigVocab, 1024, 2, true},
		{"32 heads no flash", &wide, 4096, 1, false},
		{"32 heads flash", &wide, 4096, 1, true},
	}
	const mib = 1 << 20
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := storiesPath(t)
			if tc.model != nil {
				path = writeRandomModel(t, *tc.model)
			}
			f, err := gguf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			fa := "disabled"
			if tc.flash {
				fa = "enabled"
			}
			mu.Lock()
			clear(got)
			mu.Unlock()
			m := loadModelT(t, engine.LoadParams{Path: path, ContextLength: tc.ctx, Parallel: tc.par, FlashAttention: fa})
			est := gguf.Estimate(f, tc.ctx, tc.par, "f16", tc.flash)
			_ = m.Close()
			mu.Lock()
			actual := map[string]float64{}
			for k, v := range got {
				actual[k] = v
			}
			mu.Unlock()
			t.Logf("%-18s measured MiB: weights %.2f KV %.2f compute %.2f output %.2f | estimated: weights %.2f KV %.2f compute %.2f output %.2f",
				tc.name, actual["model"], actual["KV"], actual["compute"], actual["output"],
				float64(est.Weights)/mib, float64(est.KVCache)/mib, float64(est.Compute)/mib, float64(est.Output)/mib)
			if d := float64(est.KVCache)/mib - actual["KV"]; d < -0.01 || d > 0.01 {
				t.Errorf("KV cache estimate %.2f MiB, llama.cpp %.2f MiB", float64(est.KVCache)/mib, actual["KV"])
			}
			if w := float64(est.Weights) / mib; w < actual["model"]-0.05 || w > actual["model"]*1.05+0.05 {
				t.Errorf("weights estimate %.2f MiB, llama.cpp %.2f MiB", w, actual["model"])
			}
			c := float64(est.Compute) / mib
			if c < actual["compute"] || c > 2.5*actual["compute"]+2 {
				t.Errorf("compute estimate %.2f MiB, llama.cpp %.2f MiB", c, actual["compute"])
			}
			if o := float64(est.Output) / mib; o < actual["output"] {
				t.Errorf("output estimate %.2f MiB, llama.cpp %.2f MiB", o, actual["output"])
			}
		})
	}
}
