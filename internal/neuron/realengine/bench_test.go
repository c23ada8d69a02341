package realengine

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/helexa-ai/cortex/internal/devices"
	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/gguf/ggufgen"
	"github.com/helexa-ai/cortex/internal/neuron"
	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// llama100M is a ~100M-parameter llama (Q8_0, about 106 MB), the shape the
// engine's own benchmark uses.
var llama100M = ggufgen.LlamaParams{
	Name: "random-llama-100M", Layers: 12, Embd: 768, Heads: 12, HeadsKV: 4, FF: 2048,
	Vocab: 32000, Context: 2048, WeightType: "q8_0",
}

type benchRow struct {
	model, phase     string
	streams          int
	engine, http     float64 // tokens per second
	engTTFT, webTTFT time.Duration
}

// BenchmarkNeuronVsEngine compares throughput through the neuron's HTTP API
// (streaming /v1/completions, measured at the client) with the engine
// called directly (engine.BenchGenerate), on the same prompts and settings:
// prefill ("pp128": 128-token prompts, one token generated) and decode
// ("tg": 4-token prompts), one stream and 8 concurrent streams, on
// stories260K and a generated 100M-parameter llama. It prints a table with
// the HTTP/engine ratios. Run it with
//
//	make bench-neuron    # with this CPU's ggml variant (CORTEX_LIBRARY_PATH=lib/ollama)
//	CGO_CPPFLAGS=-I$PWD/hack/include go test -run '^$' -bench NeuronVsEngine -benchtime 3x ./internal/neuron/realengine/
//
// CORTEX_BENCH_THREADS sets the CPU threads per model (default: the
// engine's).
func BenchmarkNeuronVsEngine(b *testing.B) {
	threads, _ := strconv.Atoi(os.Getenv("CORTEX_BENCH_THREADS"))
	h := startNeuron(b, func(c *neuron.Config) {
		c.Threads = threads
		c.Devices = devices.NewStatic(devices.Device{Index: 0, Kind: devices.KindCPU, Name: "cpu", MemoryTotal: 16 << 30, MemoryFree: 16 << 30})
		c.KeepAliveInterval = time.Hour
	})
	models := []struct {
		name   string
		path   func(testing.TB) string
		genLen int
	}{
		{"stories260K", storiesPath, 64},
		{"llama100M", func(tb testing.TB) string { return randomModel(tb, llama100M) }, 32},
	}
	var rows []benchRow
	for _, mc := range models {
		path := mc.path(b)
		key := "bench/" + strings.ToLower(mc.name)
		h.load(neuronapi.LoadRequest{Name: key, Source: neuronapi.Source{URI: "file://" + path}, Engine: neuronapi.EngineConfig{ContextLength: 1024, Parallel: 8}})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		direct, err := realEngine(b).Load(ctx, engine.LoadParams{Path: path, ContextLength: 1024, Parallel: 8, Threads: threads})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(7, 11))
		// prompts makes n prompts of at least length tokens: random ASCII
		// words (text that survives JSON unchanged, so both paths see the
		// same tokens), and the tokens the neuron makes of them.
		prompts := func(n, length int) ([]string, [][]int) {
			texts, toks := make([]string, n), make([][]int, n)
			for i := range n {
				var sb strings.Builder
				for {
					word := make([]byte, 2+rng.IntN(6))
					for j := range word {
						word[j] = byte('a' + rng.IntN(26))
					}
					sb.WriteByte(' ')
					sb.Write(word)
					t, err := direct.Tokenize(sb.String(), true, true)
					if err != nil {
						b.Fatal(err)
					}
					if len(t) >= length {
						texts[i], toks[i] = sb.String(), t
						break
					}
				}
			}
			return texts, toks
		}
		for _, streams := range []int{1, 8} {
			for _, ph := range []struct {
				name      string
				promptLen int
				gen       int
				prefill   bool
			}{
				{"pp128", 128, 1, true},
				{fmt.Sprintf("tg%d", mc.genLen), 4, mc.genLen, false},
			} {
				row := benchRow{model: mc.name, phase: ph.name, streams: streams}
				// Both paths run in the same iterations, alternately, so a
				// noisy machine slows them alike; one warm-up round first.
				b.Run(fmt.Sprintf("%s/%s/streams=%d", mc.name, ph.name, streams), func(b *testing.B) {
					var eng, web float64
					var engTTFT, webTTFT time.Duration
					for i := -1; i < b.N; i++ {
						_, toks := prompts(streams, ph.promptLen)
						er, err := engine.BenchGenerate(context.Background(), direct, toks, ph.gen)
						if err != nil {
							b.Fatal(err)
						}
						texts, _ := prompts(streams, ph.promptLen)
						hr, err := httpGenerate(h, key, texts, ph.gen)
						if err != nil {
							b.Fatal(err)
						}
						if i < 0 {
							continue
						}
						eng += pick(ph.prefill, er.PrefillTokensPerSecond, er.DecodeTokensPerSecond)
						web += pick(ph.prefill, hr.PrefillTokensPerSecond, hr.DecodeTokensPerSecond)
						engTTFT += er.MeanTTFT
						webTTFT += hr.MeanTTFT
					}
					n := float64(b.N)
					row.engine, row.http = eng/n, web/n
					row.engTTFT, row.webTTFT = engTTFT/time.Duration(b.N), webTTFT/time.Duration(b.N)
					b.ReportMetric(row.engine, "engine_tok/s")
					b.ReportMetric(row.http, "http_tok/s")
					b.ReportMetric(row.http/row.engine, "http/engine")
				})
				rows = append(rows, row)
			}
		}
		_ = direct.Close()
		h.post(neuronapi.PathUnload, neuronapi.UnloadRequest{Name: key})
	}
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "model\tphase\tstreams\tengine tok/s\thttp tok/s\thttp/engine\tengine ttft\thttp ttft\t")
	for _, r := range rows {
		ratio := 0.0
		if r.engine > 0 {
			ratio = r.http / r.engine
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.0f\t%.2f\t%v\t%v\t\n", r.model, r.phase, r.streams, r.engine, r.http, ratio,
			r.engTTFT.Round(time.Microsecond*10), r.webTTFT.Round(time.Microsecond*10))
	}
	_ = tw.Flush()
	fmt.Printf("\nneuron HTTP vs engine (threads per model: %d, 0 = engine default):\n%s\n", threads, buf.String())
}

func pick(prefill bool, p, d float64) float64 {
	if prefill {
		return p
	}
	return d
}

// httpGenerate is engine.BenchGenerate through the API: greedy streaming
// completions, all at once, timed at the client with the same definitions
// (prefill: start to the last stream's first token; decode: first stream's
// first token to the end).
func httpGenerate(h *harness, model string, prompts []string, maxTokens int) (engine.BenchResult, error) {
	type one struct {
		first, end time.Time
		usage      openai.Usage
		err        error
	}
	res := make([]one, len(prompts))
	start := time.Now()
	var wg sync.WaitGroup
	for i, p := range prompts {
		wg.Go(func() {
			resp, err := h.send(context.Background(), http.MethodPost, neuronapi.PathCompletions, map[string]any{
				"model": model, "prompt": p, "max_tokens": maxTokens, "temperature": 0, "stream": true,
				"stream_options": map[string]any{"include_usage": true},
			})
			if err != nil {
				res[i].err = err
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				res[i].err = fmt.Errorf("status %d", resp.StatusCode)
				return
			}
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				line := sc.Bytes()
				data, ok := bytes.CutPrefix(line, []byte("data: "))
				if !ok || bytes.Equal(data, []byte("[DONE]")) {
					continue
				}
				if res[i].first.IsZero() {
					res[i].first = time.Now()
				}
				if bytes.Contains(data, []byte(`"usage"`)) {
					var c openai.CompletionResponse
					if err := json.Unmarshal(data, &c); err == nil && c.Usage != nil {
						res[i].usage = *c.Usage
					}
				}
			}
			res[i].end = time.Now()
			res[i].err = sc.Err()
		})
	}
	wg.Wait()
	var out engine.BenchResult
	out.Streams = len(prompts)
	var firstFirst, lastFirst, end time.Time
	var ttft time.Duration
	for _, r := range res {
		if r.err != nil {
			return out, r.err
		}
		out.PromptTokens += r.usage.PromptTokens
		if r.usage.PromptTokensDetails != nil {
			out.CachedTokens += r.usage.PromptTokensDetails.CachedTokens
		}
		out.CompletionTokens += r.usage.CompletionTokens
		if firstFirst.IsZero() || r.first.Before(firstFirst) {
			firstFirst = r.first
		}
		if r.first.After(lastFirst) {
			lastFirst = r.first
		}
		if r.end.After(end) {
			end = r.end
		}
		ttft += r.first.Sub(start)
	}
	out.Wall, out.Prefill, out.Decode = end.Sub(start), lastFirst.Sub(start), end.Sub(firstFirst)
	out.MeanTTFT = ttft / time.Duration(len(prompts))
	if out.Prefill > 0 {
		out.PrefillTokensPerSecond = float64(out.PromptTokens-out.CachedTokens) / out.Prefill.Seconds()
	}
	if out.Decode > 0 {
		out.DecodeTokensPerSecond = float64(out.CompletionTokens) / out.Decode.Seconds()
	}
	return out, nil
}
