package realengine

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/helexa-ai/cortex/internal/gguf/ggufgen"
	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/wire/openai"
	"github.com/helexa-ai/cortex/internal/wire/sse"
	"github.com/helexa-ai/cortex/internal/wire/sse/ssecheck"
)

const (
	stories  = "ns/stories"
	wantLily = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
)

func greedyCompletion(t testing.TB, h *harness, model, prompt string, maxTokens int) openai.CompletionResponse {
	t.Helper()
	code, data := h.post(neuronapi.PathCompletions, map[string]any{"model": model, "prompt": prompt, "temperature": 0, "max_tokens": maxTokens, "echo": true})
	if code != 200 {
		t.Fatalf("completion: %d %s", code, data)
	}
	return decode[openai.CompletionResponse](t, data)
}

func TestGreedyCompletion(t *testing.T) {
	h := startNeuron(t, nil)
	h.loadStories(stories, neuronapi.EngineConfig{ContextLength: 512, Parallel: 2})
	resp := greedyCompletion(t, h, stories, "Once upon a time", 32)
	if !strings.HasPrefix(resp.Choices[0].Text, wantLily) {
		t.Fatalf("greedy completion %q does not begin %q", resp.Choices[0].Text, wantLily)
	}
	if resp.Model != stories || *resp.Choices[0].FinishReason != "length" || resp.Usage.CompletionTokens != 32 {
		t.Fatalf("%+v", resp)
	}
	// Streamed, the same text arrives in pieces.
	resp2, err := h.send(context.Background(), http.MethodPost, neuronapi.PathCompletions,
		map[string]any{"model": stories, "prompt": "Once upon a time", "temperature": 0, "max_tokens": 32, "stream": true})
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	evs, err := sse.ReadAll(resp2.Body)
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, ev := range evs {
		if ev.Data == sse.Done {
			continue
		}
		c := decode[openai.CompletionResponse](t, []byte(ev.Data))
		if len(c.Choices) > 0 {
			text.WriteString(c.Choices[0].Text)
		}
	}
	if "Once upon a time"+text.String() != resp.Choices[0].Text {
		t.Fatalf("stream %q differs from %q", text.String(), resp.Choices[0].Text)
	}
}

func TestChatWithDefaultTemplate(t *testing.T) {
	h := startNeuron(t, nil)
	h.loadStories(stories, neuronapi.EngineConfig{ContextLength: 512, Parallel: 2})
	body := map[string]any{"model": stories, "temperature": 0, "max_tokens": 40,
		"messages": []map[string]any{{"role": "system", "content": "You tell stories."}, {"role": "user", "content": "Tell me about Lily."}}}
	code, data := h.post(neuronapi.PathChatCompletions, body)
	if code != 200 {
		t.Fatalf("%d %s", code, data)
	}
	resp := decode[openai.ChatResponse](t, data)
	content := resp.Choices[0].Message.Content.String()
	if content == "" || strings.Contains(content, "<|im_") || resp.Usage.PromptTokens < 10 {
		t.Fatalf("chat answer %+v", resp)
	}
	body["stream"] = true
	body["stream_options"] = map[string]any{"include_usage": true}
	sresp, err := h.send(context.Background(), http.MethodPost, neuronapi.PathChatCompletions, body)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(sresp.Body)
	sresp.Body.Close()
	if err := ssecheck.OpenAIChatStream(strings.NewReader(string(raw))); err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	// The engine measured the first answer's prompt processing: the
	// second answer tells the gateway the model's prefill rate.
	if rate, err := strconv.ParseFloat(sresp.Header.Get(neuronapi.HeaderPrefillRate), 64); err != nil || rate <= 0 {
		t.Fatalf("after a %d-token prompt, %s is %q", resp.Usage.PromptTokens, neuronapi.HeaderPrefillRate, sresp.Header.Get(neuronapi.HeaderPrefillRate))
	}
	evs, _ := sse.ReadAll(strings.NewReader(string(raw)))
	var chunks []openai.ChatChunk
	for _, ev := range evs {
		if ev.Data != sse.Done {
			chunks = append(chunks, decode[openai.ChatChunk](t, []byte(ev.Data)))
		}
	}
	acc := openai.Accumulate(chunks)
	if acc.Choices[0].Message.Content.String() != content || acc.Usage == nil || acc.Usage.CompletionTokens != resp.Usage.CompletionTokens {
		t.Fatalf("streamed %q (usage %+v), plain %q", acc.Choices[0].Message.Content.String(), acc.Usage, content)
	}
}

func TestConcurrentGreedyMatchesAlone(t *testing.T) {
	h := startNeuron(t, nil)
	h.loadStories(stories, neuronapi.EngineConfig{ContextLength: 512, Parallel: 4})
	prompts := []string{"Once upon a time", "The little dog", "Tom and Sue went", "One day, a bird", "The sun was", "Lily wanted to"}
	alone := make([]string, len(prompts))
	for i, p := range prompts {
		alone[i] = greedyCompletion(t, h, stories, p, 48).Choices[0].Text
	}
	together := make([]string, len(prompts))
	errs := make([]error, len(prompts))
	var wg sync.WaitGroup
	for i, p := range prompts {
		wg.Go(func() {
			resp, err := h.send(context.Background(), http.MethodPost, neuronapi.PathCompletions,
				map[string]any{"model": stories, "prompt": p, "temperature": 0, "max_tokens": 48, "echo": true})
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			var cr openai.CompletionResponse
			if err := json.NewDecoder(resp.Body).Decode(&cr); err != nil || len(cr.Choices) == 0 {
				errs[i] = fmt.Errorf("status %d: %w", resp.StatusCode, err)
				return
			}
			together[i] = cr.Choices[0].Text
		})
	}
	wg.Wait()
	for i := range prompts {
		if errs[i] != nil {
			t.Fatalf("prompt %d: %v", i, errs[i])
		}
		if together[i] != alone[i] {
			t.Errorf("prompt %q: concurrently %q, alone %q", prompts[i], together[i], alone[i])
		}
	}
}

var generatedRE = regexp.MustCompile(`cortex_neuron_generated_tokens_total\{model="ns/stories"\} (\S+)`)

func TestCancelledStreamFreesSlot(t *testing.T) {
	h := startNeuron(t, nil)
	h.loadStories(stories, neuronapi.EngineConfig{ContextLength: 4096, Parallel: 1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const long = 4000
	a, err := h.send(ctx, http.MethodPost, neuronapi.PathCompletions,
		map[string]any{"model": stories, "prompt": "Once upon a time", "temperature": 0, "max_tokens": long, "stream": true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(a.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	type result struct {
		code int
		body []byte
		err  error
	}
	bc := make(chan result, 1)
	go func() {
		resp, err := h.send(context.Background(), http.MethodPost, neuronapi.PathCompletions,
			map[string]any{"model": stories, "prompt": "The dog", "temperature": 0, "max_tokens": 5})
		if err != nil {
			bc <- result{err: err}
			return
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		bc <- result{resp.StatusCode, data, err}
	}()
	// B waits for the only sequence, which A holds.
	h.waitFor("B queued behind A", func() bool { return h.status(stories).Queued == 1 })
	cancel()
	a.Body.Close()
	b := <-bc
	if b.err != nil || b.code != 200 {
		t.Fatalf("queued request: %d %s %v", b.code, b.body, b.err)
	}
	if got := decode[openai.CompletionResponse](t, b.body); got.Usage.CompletionTokens != 5 {
		t.Fatalf("%+v", got)
	}
	// A stopped far short of its length: its tokens and B's are all that
	// was generated.
	_, metrics := h.request(context.Background(), http.MethodGet, neuronapi.PathMetrics, nil)
	m := generatedRE.FindSubmatch(metrics)
	if m == nil {
		t.Fatal("no generated-token counter")
	}
	n, _ := strconv.ParseFloat(string(m[1]), 64)
	if n >= long {
		t.Fatalf("%v tokens generated: the canceled stream ran on", n)
	}
}

func TestUnloadReturnsMemory(t *testing.T) {
	h := startNeuron(t, nil)
	before := h.models().Devices[0].MemoryFree
	st := h.loadStories(stories, neuronapi.EngineConfig{ContextLength: 1024, Parallel: 2})
	during := h.models().Devices[0].MemoryFree
	if st.VRAMBytes <= 0 || during != before-st.VRAMBytes {
		t.Fatalf("free %d → %d with %d reserved", before, during, st.VRAMBytes)
	}
	code, data := h.post(neuronapi.PathUnload, neuronapi.UnloadRequest{Name: stories})
	var ur struct {
		Unloaded   bool  `json:"unloaded"`
		FreedBytes int64 `json:"freedBytes"`
	}
	if err := json.Unmarshal(data, &ur); err != nil || code != 200 || !ur.Unloaded || ur.FreedBytes != st.VRAMBytes {
		t.Fatalf("unload: %d %s", code, data)
	}
	if after := h.models(); len(after.Models) != 0 || after.Devices[0].MemoryFree != before {
		t.Fatalf("after unload: %+v", after)
	}
}

func TestForcedToolCall(t *testing.T) {
	h := startNeuron(t, nil)
	h.loadStories(stories, neuronapi.EngineConfig{ContextLength: 1024, Parallel: 1})
	schema := map[string]any{
		"type": "object",
		"properties": map[string]any{
			"city": map[string]any{"type": "string", "enum": []string{"Paris", "Tokyo", "Lima"}},
			"days": map[string]any{"type": "integer", "minimum": 1, "maximum": 7},
		},
		"required":             []string{"city", "days"},
		"additionalProperties": false,
	}
	body := map[string]any{
		"model": stories, "temperature": 0, "max_tokens": 300,
		"messages":    []map[string]any{{"role": "user", "content": "What is the weather in Paris for 3 days?"}},
		"tools":       []map[string]any{{"type": "function", "function": map[string]any{"name": "get_forecast", "parameters": schema}}},
		"tool_choice": map[string]any{"type": "function", "function": map[string]any{"name": "get_forecast"}},
	}
	for _, stream := range []bool{false, true} {
		body["stream"] = stream
		var msg openai.Message
		var finish string
		if stream {
			resp, err := h.send(context.Background(), http.MethodPost, neuronapi.PathChatCompletions, body)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err := ssecheck.OpenAIChatStream(strings.NewReader(string(raw))); err != nil {
				t.Fatalf("%v\n%s", err, raw)
			}
			evs, _ := sse.ReadAll(strings.NewReader(string(raw)))
			var chunks []openai.ChatChunk
			for _, ev := range evs {
				if ev.Data != sse.Done {
					chunks = append(chunks, decode[openai.ChatChunk](t, []byte(ev.Data)))
				}
			}
			acc := openai.Accumulate(chunks)
			msg, finish = acc.Choices[0].Message, acc.Choices[0].FinishReason
		} else {
			code, data := h.post(neuronapi.PathChatCompletions, body)
			if code != 200 {
				t.Fatalf("%d %s", code, data)
			}
			ch := decode[openai.ChatResponse](t, data).Choices[0]
			msg, finish = ch.Message, ch.FinishReason
		}
		if finish != "tool_calls" || len(msg.ToolCalls) != 1 || msg.ToolCalls[0].Function.Name != "get_forecast" {
			t.Fatalf("stream=%v: finish %q, message %+v", stream, finish, msg)
		}
		var args struct {
			City *string `json:"city"`
			Days *int    `json:"days"`
		}
		dec := json.NewDecoder(strings.NewReader(msg.ToolCalls[0].Function.Arguments))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&args); err != nil || args.City == nil || args.Days == nil {
			t.Fatalf("arguments %q do not match the schema: %v", msg.ToolCalls[0].Function.Arguments, err)
		}
		if !strings.Contains("Paris Tokyo Lima", *args.City) || *args.Days < 1 || *args.Days > 7 {
			t.Fatalf("arguments %q out of the schema's range", msg.ToolCalls[0].Function.Arguments)
		}
	}
}

func TestJSONSchemaResponseFormat(t *testing.T) {
	h := startNeuron(t, nil)
	h.loadStories(stories, neuronapi.EngineConfig{ContextLength: 1024, Parallel: 1})
	schema := map[string]any{
		"type": "object",
		"properties": map[string]any{
			"name": map[string]any{"type": "string", "maxLength": 20},
			"age":  map[string]any{"type": "integer"},
			"pets": map[string]any{"type": "array", "items": map[string]any{"type": "string", "maxLength": 10}, "maxItems": 3},
		},
		"required":             []string{"name", "age", "pets"},
		"additionalProperties": false,
	}
	code, data := h.post(neuronapi.PathChatCompletions, map[string]any{
		"model": stories, "temperature": 0, "max_tokens": 120,
		"messages":        []map[string]any{{"role": "user", "content": "Describe Lily as JSON."}},
		"response_format": map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "person", "schema": schema, "strict": true}},
	})
	if code != 200 {
		t.Fatalf("%d %s", code, data)
	}
	ch := decode[openai.ChatResponse](t, data).Choices[0]
	var v struct {
		Name *string  `json:"name"`
		Age  *int     `json:"age"`
		Pets []string `json:"pets"`
	}
	dec := json.NewDecoder(strings.NewReader(ch.Message.Content.String()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil || v.Name == nil || v.Age == nil || v.Pets == nil || len(v.Pets) > 3 || ch.FinishReason != "stop" {
		t.Fatalf("content %q (finish %s) does not match the schema: %v", ch.Message.Content.String(), ch.FinishReason, err)
	}
}

func TestEmbeddings(t *testing.T) {
	h := startNeuron(t, nil)
	h.loadStories(stories, neuronapi.EngineConfig{ContextLength: 512, Parallel: 2})
	code, data := h.post(neuronapi.PathEmbeddings, map[string]any{"model": stories, "input": []string{"Lily played in the park.", "The dog ran.", "Lily played in the park."}})
	if code != 200 {
		t.Fatalf("%d %s", code, data)
	}
	var resp struct {
		Data []struct {
			Index     int       `json:"index"`
			Embedding []float64 `json:"embedding"`
		} `json:"data"`
		Usage openai.EmbeddingUsage `json:"usage"`
	}
	if err := json.Unmarshal(data, &resp); err != nil || len(resp.Data) != 3 {
		t.Fatalf("%s", data)
	}
	for i, d := range resp.Data {
		var norm float64
		for _, x := range d.Embedding {
			norm += x * x
		}
		if d.Index != i || len(d.Embedding) != 64 || math.Abs(math.Sqrt(norm)-1) > 1e-3 {
			t.Fatalf("embedding %d: %d dimensions, norm %v", i, len(d.Embedding), math.Sqrt(norm))
		}
	}
	for j := range resp.Data[0].Embedding {
		if math.Abs(resp.Data[0].Embedding[j]-resp.Data[2].Embedding[j]) > 1e-5 {
			t.Fatal("the same text embedded differently")
		}
	}
	if resp.Usage.PromptTokens == 0 {
		t.Fatal("no usage")
	}
}

// TestSeveralModels loads two generated llamas and stories260K side by side
// and serves each.
func TestSeveralModels(t *testing.T) {
	h := startNeuron(t, nil)
	var wg sync.WaitGroup
	paths := make([]string, 2)
	for i := range paths {
		paths[i] = randomModel(t, ggufgen.LlamaParams{Seed: uint64(i + 1), Layers: 2, Embd: 64, Vocab: 600, Context: 512})
	}
	names := []string{"ns/rand-a", "ns/rand-b", stories}
	uris := []string{"file://" + paths[0], "file://" + paths[1], "file://" + storiesPath(t)}
	for i := range names {
		wg.Go(func() {
			code, data := h.post(neuronapi.PathLoad, neuronapi.LoadRequest{Name: names[i], Source: neuronapi.Source{URI: uris[i]}, Engine: neuronapi.EngineConfig{ContextLength: 256, Parallel: 1}})
			if code != http.StatusAccepted {
				t.Errorf("load %s: %d %s", names[i], code, data)
			}
		})
	}
	wg.Wait()
	h.waitFor("three ready models", func() bool {
		n := 0
		for _, m := range h.models().Models {
			if m.State == neuronapi.StateFailed {
				t.Fatalf("%s failed: %s", m.Name, m.Error)
			}
			if m.State == neuronapi.StateReady {
				n++
			}
		}
		return n == 3
	})
	for _, n := range names {
		resp := greedyCompletion(t, h, n, "Once upon a time", 8)
		if resp.Usage.CompletionTokens == 0 {
			t.Fatalf("%s generated nothing", n)
		}
	}
	if !strings.HasPrefix(greedyCompletion(t, h, stories, "Once upon a time", 32).Choices[0].Text, wantLily) {
		t.Fatal("stories260K answers differently next to other models")
	}
}
