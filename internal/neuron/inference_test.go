package neuron

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/helexa-ai/cortex/internal/engine/enginefake"
	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/wire/openai"
	"github.com/helexa-ai/cortex/internal/wire/sse"
	"github.com/helexa-ai/cortex/internal/wire/sse/ssecheck"
)

const modelName = "ns/chat"

// chatHarness is a neuron with one ready model answering respond.
func chatHarness(t testing.TB, respond func(enginefake.Prompt) string, opts ...harnessOpt) *harness {
	t.Helper()
	opts = append([]harnessOpt{withFake(func(o *enginefake.Options) { o.Respond = respond })}, opts...)
	h := newHarness(t, opts...)
	h.load(neuronapi.LoadRequest{Name: modelName, Source: neuronapi.Source{URI: tinyModel(t, 42)}, Engine: neuronapi.EngineConfig{ContextLength: 1024, Parallel: 2}})
	return h
}

func fixed(s string) func(enginefake.Prompt) string {
	return func(enginefake.Prompt) string { return s }
}

func userMsg(text string) []map[string]any {
	return []map[string]any{{"role": "user", "content": text}}
}

func TestChatCompletion(t *testing.T) {
	var seen string
	h := chatHarness(t, func(p enginefake.Prompt) string { seen = p.Text; return "Hello there, friend." })
	code, data, _ := h.do(http.MethodPost, neuronapi.PathChatCompletions, map[string]any{
		"model": modelName, "messages": []map[string]any{{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}},
	})
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, data)
	}
	resp := decodeInto[openai.ChatResponse](t, data)
	if !strings.HasPrefix(resp.ID, "chatcmpl-") || resp.Object != "chat.completion" || resp.Model != modelName || resp.Created == 0 {
		t.Fatalf("envelope %+v", resp)
	}
	if len(resp.Choices) != 1 || resp.Choices[0].Message.Role != "assistant" || resp.Choices[0].Message.Content.String() != "Hello there, friend." ||
		resp.Choices[0].FinishReason != "stop" {
		t.Fatalf("choice %+v", resp.Choices)
	}
	if u := resp.Usage; u == nil || u.PromptTokens == 0 || u.CompletionTokens == 0 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
		t.Fatalf("usage %+v", resp.Usage)
	}
	// The built-in ChatML template rendered the conversation.
	if !strings.Contains(seen, "<|im_start|>system\nBe brief.<|im_end|>") || !strings.HasSuffix(seen, "<|im_start|>assistant\n") {
		t.Fatalf("prompt %q is not ChatML", seen)
	}
	// max_tokens cuts the answer with finish_reason length.
	code, data, _ = h.do(http.MethodPost, neuronapi.PathChatCompletions, map[string]any{"model": modelName, "messages": userMsg("Hi"), "max_tokens": 2})
	if resp := decodeInto[openai.ChatResponse](t, data); code != 200 || resp.Choices[0].FinishReason != "length" || resp.Usage.CompletionTokens != 2 {
		t.Fatalf("max_tokens: %d %s", code, data)
	}
}

// readSSE reads a whole stream into its raw text.
func readSSE(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func chunksOf(t *testing.T, raw string) []openai.ChatChunk {
	t.Helper()
	evs, err := sse.ReadAll(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var out []openai.ChatChunk
	for _, ev := range evs {
		if ev.Data == sse.Done {
			continue
		}
		out = append(out, decodeInto[openai.ChatChunk](t, []byte(ev.Data)))
	}
	return out
}

func TestChatStream(t *testing.T) {
	h := chatHarness(t, fixed("One two three four."))
	for _, usage := range []bool{false, true} {
		body := map[string]any{"model": modelName, "messages": userMsg("count"), "stream": true}
		if usage {
			body["stream_options"] = map[string]any{"include_usage": true}
		}
		resp := h.stream(context.Background(), neuronapi.PathChatCompletions, body)
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("status %d type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		raw := readSSE(t, resp)
		if err := ssecheck.OpenAIChatStream(strings.NewReader(raw)); err != nil {
			t.Fatalf("stream breaks the OpenAI grammar: %v\n%s", err, raw)
		}
		if !strings.HasSuffix(raw, "data: [DONE]\n\n") {
			t.Fatalf("no [DONE] at the end:\n%s", raw)
		}
		acc := openai.Accumulate(chunksOf(t, raw))
		if acc.Choices[0].Message.Content.String() != "One two three four." || acc.Choices[0].FinishReason != "stop" || acc.Model != modelName {
			t.Fatalf("accumulated %+v", acc)
		}
		if (acc.Usage != nil) != usage {
			t.Fatalf("include_usage=%v but usage=%+v", usage, acc.Usage)
		}
		if usage && acc.Usage.CompletionTokens == 0 {
			t.Fatalf("usage %+v", acc.Usage)
		}
	}
}

func TestStreamKeepAliveDuringSlowPrefill(t *testing.T) {
	h := chatHarness(t, fixed("Finally."))
	release := h.eng.hold() // the request sits before the engine, as in a long prefill
	defer release()
	resp := h.stream(context.Background(), neuronapi.PathChatCompletions, map[string]any{"model": modelName, "messages": userMsg("hi"), "stream": true})
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	rd := bufio.NewReader(resp.Body)
	line, err := rd.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if line != ": keep-alive\n" {
		t.Fatalf("first line %q, want a keep-alive comment", line)
	}
	release()
	rest, err := io.ReadAll(rd)
	if err != nil {
		t.Fatal(err)
	}
	if err := ssecheck.OpenAIChatStream(bytes.NewReader(rest)); err != nil {
		t.Fatalf("%v\n%s", err, rest)
	}
	if acc := openai.Accumulate(chunksOf(t, string(rest))); acc.Choices[0].Message.Content.String() != "Finally." {
		t.Fatalf("content %+v", acc.Choices)
	}
}

func TestChatErrors(t *testing.T) {
	h := chatHarness(t, fixed("ok"), withConfig(func(c *Config) { c.MaxBodyBytes = 8192 }))
	long := strings.Repeat("word ", 1100)
	tests := []struct {
		name   string
		body   any
		status int
		code   string
		param  string
	}{
		{"unknown model", map[string]any{"model": "ns/none", "messages": userMsg("hi")}, 404, "model_not_found", "model"},
		{"malformed JSON", `{"model": "ns/chat", "messages": [`, 400, "invalid_json", ""},
		{"wrong type", `{"model": "ns/chat", "messages": [{"role":"user","content":"hi"}], "temperature": "hot"}`, 400, "invalid_type", "temperature"},
		{"no messages", map[string]any{"model": modelName, "messages": []any{}}, 400, "invalid_value", "messages"},
		{"no model", map[string]any{"messages": userMsg("hi")}, 400, "missing_required_parameter", "model"},
		{"bad role", map[string]any{"model": modelName, "messages": []map[string]any{{"role": "wizard", "content": "x"}}}, 400, "invalid_value", "messages[0].role"},
		{"temperature out of range", map[string]any{"model": modelName, "messages": userMsg("hi"), "temperature": 9}, 400, "invalid_value", "temperature"},
		{"oversized body", map[string]any{"model": modelName, "messages": userMsg(strings.Repeat("x", 9000))}, 413, "request_too_large", ""},
		{"prompt too long", map[string]any{"model": modelName, "messages": userMsg(long)}, 400, "context_length_exceeded", "messages"},
		{"tool_choice names no tool", map[string]any{"model": modelName, "messages": userMsg("hi"), "tool_choice": map[string]any{"type": "function", "function": map[string]any{"name": "x"}}}, 400, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := h.with(t)
			code, data, _ := h.do(http.MethodPost, neuronapi.PathChatCompletions, tt.body)
			h.wantError(tt.status, data, code, tt.code)
			if tt.param != "" {
				if _, _, p, _ := errorOf(t, data); p != tt.param {
					t.Fatalf("param %q, want %q", p, tt.param)
				}
			}
		})
	}
	// A streaming request that fails before any output gets a JSON error.
	resp := h.stream(context.Background(), neuronapi.PathChatCompletions, map[string]any{"model": modelName, "messages": userMsg(long), "stream": true})
	data := []byte(readSSE(t, resp))
	h.wantError(400, data, resp.StatusCode, "context_length_exceeded")
}

func TestModelNotReadyHasRetryAfter(t *testing.T) {
	h := newHarness(t, withFake(func(o *enginefake.Options) { o.LoadDelay = time.Hour }))
	if code, _, _ := h.do(http.MethodPost, neuronapi.PathLoad, neuronapi.LoadRequest{Name: modelName, Source: neuronapi.Source{URI: tinyModel(t, 1)}}); code != 202 {
		t.Fatalf("load %d", code)
	}
	for _, path := range []string{neuronapi.PathChatCompletions, neuronapi.PathCompletions, neuronapi.PathEmbeddings} {
		code, data, hdr := h.do(http.MethodPost, path, map[string]any{"model": modelName, "messages": userMsg("hi"), "prompt": "x", "input": "x"})
		msg := h.wantError(http.StatusServiceUnavailable, data, code, neuronapi.CodeModelNotReady)
		if hdr.Get("Retry-After") == "" || !strings.Contains(msg, "loading") {
			t.Fatalf("%s: Retry-After %q, message %q", path, hdr.Get("Retry-After"), msg)
		}
	}
}

// endless makes a completion that never ends on its own.
func endless(enginefake.Prompt) string { return strings.Repeat("and on ", 100000) }

func TestQueueFull(t *testing.T) {
	h := newHarness(t, withFake(func(o *enginefake.Options) { o.Respond = endless; o.TokenDelay = 5 * time.Millisecond }),
		withConfig(func(c *Config) { c.QueueSize = 1 }))
	h.load(neuronapi.LoadRequest{Name: modelName, Source: neuronapi.Source{URI: tinyModel(t, 1)}, Engine: neuronapi.EngineConfig{Parallel: 1}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	body := map[string]any{"model": modelName, "messages": userMsg("go"), "stream": true}
	first := h.stream(ctx, neuronapi.PathChatCompletions, body) // holds the only sequence
	defer first.Body.Close()
	go func() { // waits in the queue until the test ends
		data, _ := json.Marshal(body)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.url+neuronapi.PathChatCompletions, bytes.NewReader(data))
		req.Header.Set("Authorization", "Bearer "+testToken)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	h.waitFor("a queued request", func() bool {
		st, _ := h.model(modelName)
		return st.Queued == 1 && st.InFlight == 2
	})
	code, data, hdr := h.do(http.MethodPost, neuronapi.PathChatCompletions, map[string]any{"model": modelName, "messages": userMsg("go")})
	h.wantError(http.StatusTooManyRequests, data, code, neuronapi.CodeQueueFull)
	if hdr.Get("Retry-After") == "" {
		t.Fatal("no Retry-After on 429")
	}
	// A stream turned away has not begun: the same plain answer, which the
	// gateway can still retry elsewhere or pass on in its caller's dialect.
	code, data, hdr = h.do(http.MethodPost, neuronapi.PathChatCompletions, body)
	h.wantError(http.StatusTooManyRequests, data, code, neuronapi.CodeQueueFull)
	if hdr.Get("Retry-After") == "" || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Fatalf("streaming 429: Retry-After %q, Content-Type %q", hdr.Get("Retry-After"), hdr.Get("Content-Type"))
	}
}

func TestClientDisconnectFreesSlot(t *testing.T) {
	h := newHarness(t, withFake(func(o *enginefake.Options) {
		o.TokenDelay = 2 * time.Millisecond
		o.Respond = func(p enginefake.Prompt) string {
			if strings.Contains(p.Text, "forever") {
				return endless(p)
			}
			return "short answer"
		}
	}))
	h.load(neuronapi.LoadRequest{Name: modelName, Source: neuronapi.Source{URI: tinyModel(t, 1)}, Engine: neuronapi.EngineConfig{Parallel: 1}})
	ctx, cancel := context.WithCancel(context.Background())
	resp := h.stream(ctx, neuronapi.PathChatCompletions, map[string]any{"model": modelName, "messages": userMsg("forever"), "stream": true})
	rd := bufio.NewReader(resp.Body)
	if _, err := rd.ReadString('\n'); err != nil { // generation is under way
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	// The only sequence is free again: a new request completes (it would
	// wait for the endless one otherwise).
	code, data, _ := h.do(http.MethodPost, neuronapi.PathChatCompletions, map[string]any{"model": modelName, "messages": userMsg("quick")})
	if code != 200 || decodeInto[openai.ChatResponse](t, data).Choices[0].Message.Content.String() != "short answer" {
		t.Fatalf("%d %s", code, data)
	}
	h.waitFor("no request in flight", func() bool {
		st, _ := h.model(modelName)
		return st.InFlight == 0
	})
}

func TestToolCall(t *testing.T) {
	call := `<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>`
	h := chatHarness(t, fixed(call))
	tools := []map[string]any{{"type": "function", "function": map[string]any{"name": "get_weather",
		"parameters": map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"}}}}}
	body := map[string]any{"model": modelName, "messages": userMsg("weather in Paris?"), "tools": tools}
	code, data, _ := h.do(http.MethodPost, neuronapi.PathChatCompletions, body)
	if code != 200 {
		t.Fatalf("%d %s", code, data)
	}
	ch := decodeInto[openai.ChatResponse](t, data).Choices[0]
	if ch.FinishReason != "tool_calls" || len(ch.Message.ToolCalls) != 1 || ch.Message.ToolCalls[0].Function.Name != "get_weather" ||
		ch.Message.ToolCalls[0].Function.Arguments != `{"city":"Paris"}` || !strings.HasPrefix(ch.Message.ToolCalls[0].ID, "call_") {
		t.Fatalf("choice %+v", ch)
	}
	body["stream"] = true
	sresp := h.stream(context.Background(), neuronapi.PathChatCompletions, body)
	defer sresp.Body.Close()
	raw := readSSE(t, sresp)
	if err := ssecheck.OpenAIChatStream(strings.NewReader(raw)); err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	acc := openai.Accumulate(chunksOf(t, raw))
	if acc.Choices[0].FinishReason != "tool_calls" || acc.Choices[0].Message.ToolCalls[0].Function.Arguments != `{"city":"Paris"}` {
		t.Fatalf("accumulated %+v", acc.Choices[0])
	}
}

func TestCompletions(t *testing.T) {
	h := chatHarness(t, fixed(" upon a time."))
	code, data, _ := h.do(http.MethodPost, neuronapi.PathCompletions, map[string]any{"model": modelName, "prompt": "Once", "echo": true})
	if code != 200 {
		t.Fatalf("%d %s", code, data)
	}
	resp := decodeInto[openai.CompletionResponse](t, data)
	if !strings.HasPrefix(resp.ID, "cmpl-") || resp.Object != "text_completion" || resp.Choices[0].Text != "Once upon a time." ||
		*resp.Choices[0].FinishReason != "stop" || resp.Usage == nil {
		t.Fatalf("%s", data)
	}
	resp2 := h.stream(context.Background(), neuronapi.PathCompletions, map[string]any{"model": modelName, "prompt": "Once", "stream": true,
		"stream_options": map[string]any{"include_usage": true}})
	defer resp2.Body.Close()
	raw := readSSE(t, resp2)
	evs, err := sse.ReadAll(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	var finish string
	var usage *openai.Usage
	for i, ev := range evs {
		if ev.Data == sse.Done {
			if i != len(evs)-1 {
				t.Fatal("[DONE] is not last")
			}
			continue
		}
		c := decodeInto[openai.CompletionResponse](t, []byte(ev.Data))
		if c.Usage != nil {
			usage = c.Usage
			continue
		}
		text.WriteString(c.Choices[0].Text)
		if c.Choices[0].FinishReason != nil {
			finish = *c.Choices[0].FinishReason
		}
	}
	if text.String() != " upon a time." || finish != "stop" || usage == nil || evs[len(evs)-1].Data != sse.Done {
		t.Fatalf("stream %q finish %q usage %v\n%s", text.String(), finish, usage, raw)
	}
	for _, tc := range []struct {
		name string
		body map[string]any
		code string
	}{
		{"two prompts", map[string]any{"model": modelName, "prompt": []string{"a", "b"}}, "unsupported_value"},
		{"suffix", map[string]any{"model": modelName, "prompt": "a", "suffix": "b"}, "unsupported_value"},
		{"no prompt", map[string]any{"model": modelName}, "missing_required_parameter"},
		{"prompt too long", map[string]any{"model": modelName, "prompt": strings.Repeat("word ", 1100)}, "context_length_exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := h.with(t)
			code, data, _ := h.do(http.MethodPost, neuronapi.PathCompletions, tc.body)
			h.wantError(400, data, code, tc.code)
		})
	}
}

func TestEmbeddings(t *testing.T) {
	h := chatHarness(t, fixed("x"))
	get := func(input any, format string) openai.EmbeddingResponse {
		t.Helper()
		body := map[string]any{"model": modelName, "input": input}
		if format != "" {
			body["encoding_format"] = format
		}
		code, data, _ := h.do(http.MethodPost, neuronapi.PathEmbeddings, body)
		if code != 200 {
			t.Fatalf("%v: %d %s", input, code, data)
		}
		return decodeInto[openai.EmbeddingResponse](t, data)
	}
	asFloats := func(v any) []float32 {
		var out []float32
		for _, x := range v.([]any) {
			out = append(out, float32(x.(float64)))
		}
		return out
	}
	one := get("hello world", "")
	if one.Object != "list" || one.Model != modelName || len(one.Data) != 1 || one.Data[0].Object != "embedding" || one.Usage.PromptTokens == 0 {
		t.Fatalf("%+v", one)
	}
	vec := asFloats(one.Data[0].Embedding)
	if len(vec) != 8 {
		t.Fatalf("dimension %d", len(vec))
	}
	many := get([]string{"a", "hello world", "b"}, "")
	if len(many.Data) != 3 || many.Data[1].Index != 1 {
		t.Fatalf("%+v", many)
	}
	if got := asFloats(many.Data[1].Embedding); !equalFloats(got, vec) {
		t.Fatal("the same input embedded differently in a list")
	}
	b64 := get("hello world", "base64")
	raw, err := base64.StdEncoding.DecodeString(b64.Data[0].Embedding.(string))
	if err != nil || len(raw) != 4*len(vec) {
		t.Fatalf("base64: %v, %d bytes", err, len(raw))
	}
	dec := make([]float32, len(vec))
	for i := range dec {
		dec[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	if !equalFloats(dec, vec) {
		t.Fatal("base64 embedding differs from the float one")
	}
	if tok := get([]int{3, 4, 5}, ""); len(tok.Data) != 1 || tok.Usage.PromptTokens != 3 {
		t.Fatalf("tokens: %+v", tok)
	}
	if toks := get([][]int{{3, 4}, {5}}, ""); len(toks.Data) != 2 || toks.Usage.PromptTokens != 3 {
		t.Fatalf("token lists: %+v", toks)
	}
	for _, tc := range []struct {
		name string
		body map[string]any
		code string
	}{
		{"empty string", map[string]any{"model": modelName, "input": ""}, "invalid_value"},
		{"wrong type", map[string]any{"model": modelName, "input": 5}, "invalid_type"},
		{"token outside vocabulary", map[string]any{"model": modelName, "input": []int{1 << 30}}, "invalid_value"},
		{"dimensions", map[string]any{"model": modelName, "input": "a", "dimensions": 3}, "unsupported_value"},
		{"bad format", map[string]any{"model": modelName, "input": "a", "encoding_format": "hex"}, "invalid_value"},
		{"too long", map[string]any{"model": modelName, "input": strings.Repeat("word ", 1100)}, "context_length_exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := h.with(t)
			code, data, _ := h.do(http.MethodPost, neuronapi.PathEmbeddings, tc.body)
			h.wantError(400, data, code, tc.code)
		})
	}
}

func equalFloats(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestTokenize(t *testing.T) {
	h := chatHarness(t, fixed("x"))
	code, data, _ := h.do(http.MethodPost, neuronapi.PathTokenize, neuronapi.TokenizeRequest{Model: modelName, Text: "hello big world"})
	tr := decodeInto[neuronapi.TokenizeResponse](t, data)
	if code != 200 || tr.Count != len(tr.Tokens) || tr.Count != 4 { // BOS + three words
		t.Fatalf("%d %s", code, data)
	}
	chatBody := map[string]any{"messages": userMsg("hello big world")}
	code, data, _ = h.do(http.MethodPost, neuronapi.PathTokenize, neuronapi.TokenizeRequest{Model: modelName, Chat: chatBody})
	ct := decodeInto[neuronapi.TokenizeResponse](t, data)
	if code != 200 || ct.Count <= tr.Count {
		t.Fatalf("chat count %d (text %d): %s", ct.Count, tr.Count, data)
	}
	// The count is what a chat request is charged.
	code, data, _ = h.do(http.MethodPost, neuronapi.PathChatCompletions, map[string]any{"model": modelName, "messages": userMsg("hello big world")})
	if u := decodeInto[openai.ChatResponse](t, data).Usage; code != 200 || u.PromptTokens != ct.Count {
		t.Fatalf("chat prompt_tokens %d, tokenize %d", u.PromptTokens, ct.Count)
	}
	code, data, _ = h.do(http.MethodPost, neuronapi.PathTokenize, map[string]any{"model": modelName, "chat": map[string]any{"messages": "nope"}})
	if _, _, p, _ := errorOf(t, data); code != 400 || !strings.HasPrefix(p, "chat.") {
		t.Fatalf("bad chat: %d %s", code, data)
	}
	// Counting is not use.
	before, _ := h.model(modelName)
	h.do(http.MethodPost, neuronapi.PathTokenize, neuronapi.TokenizeRequest{Model: modelName, Text: "x"})
	after, _ := h.model(modelName)
	if !before.LastUsed.Equal(*after.LastUsed) || after.Requests != before.Requests {
		t.Fatalf("tokenize marked the model used (requests %d, then %d)", before.Requests, after.Requests)
	}
	// One chat request above: the counter the manager measures the
	// Model's request rate from.
	if after.Requests != 1 {
		t.Fatalf("requests = %d after one chat completion, want 1", after.Requests)
	}
}

func TestUnloadDrainsAndEndsStreams(t *testing.T) {
	h := newHarness(t, withFake(func(o *enginefake.Options) { o.Respond = endless; o.TokenDelay = 2 * time.Millisecond }),
		withConfig(func(c *Config) { c.UnloadDrainTimeout = 50 * time.Millisecond }))
	h.load(neuronapi.LoadRequest{Name: modelName, Source: neuronapi.Source{URI: tinyModel(t, 1)}})
	resp := h.stream(context.Background(), neuronapi.PathChatCompletions, map[string]any{"model": modelName, "messages": userMsg("go"), "stream": true})
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	if _, err := rd.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	code, data, _ := h.do(http.MethodPost, neuronapi.PathUnload, neuronapi.UnloadRequest{Name: modelName})
	if code != 200 || !decodeInto[UnloadResponse](t, data).Unloaded {
		t.Fatalf("unload %d %s", code, data)
	}
	// The stream that outlived the drain ends with an error event.
	rest, _ := io.ReadAll(rd)
	if !bytes.Contains(rest, []byte(`"error"`)) || !bytes.Contains(rest, []byte(neuronapi.CodeModelNotReady)) {
		t.Fatalf("stream end: %s", tail(rest))
	}
}

func tail(b []byte) []byte {
	if len(b) > 400 {
		return b[len(b)-400:]
	}
	return b
}

func TestMetricsExposed(t *testing.T) {
	h := chatHarness(t, fixed("metrics please"))
	h.do(http.MethodPost, neuronapi.PathChatCompletions, map[string]any{"model": modelName, "messages": userMsg("hi")})
	h.do(http.MethodPost, neuronapi.PathChatCompletions, map[string]any{"model": "ns/none", "messages": userMsg("hi")})
	code, data, _ := h.doToken(http.MethodGet, neuronapi.PathMetrics, nil, "")
	if code != 200 {
		t.Fatalf("%d", code)
	}
	text := string(data)
	for _, want := range []string{
		`cortex_neuron_requests_total{code="200",endpoint="/v1/chat/completions",model="ns/chat"} 1`,
		`cortex_neuron_requests_total{code="404",endpoint="/v1/chat/completions",model=""} 1`,
		`cortex_neuron_time_to_first_token_seconds_count{endpoint="/v1/chat/completions",model="ns/chat"} 1`,
		`cortex_neuron_request_duration_seconds_count{endpoint="/v1/chat/completions",model="ns/chat"}`,
		`cortex_neuron_generated_tokens_total{model="ns/chat"}`,
		`cortex_neuron_prompt_tokens_total{model="ns/chat"}`,
		`cortex_neuron_prefill_seconds_total{model="ns/chat"}`,
		`cortex_neuron_decode_seconds_total{model="ns/chat"}`,
		`cortex_neuron_in_flight_requests{model="ns/chat"} 0`,
		`cortex_neuron_queued_requests{model="ns/chat"} 0`,
		`cortex_neuron_models{state="ready"} 1`,
		`cortex_neuron_device_memory_total_bytes{device="0",kind="cpu",uuid=""} 1.073741824e+09`,
		`cortex_neuron_device_memory_free_bytes{device="0",kind="cpu",uuid=""}`,
		`cortex_neuron_model_load_duration_seconds_count 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestRecoverer(t *testing.T) {
	h := newHarness(t)
	rec := h.s.recoverer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	w := &recorder{header: http.Header{}}
	rec.ServeHTTP(w, &http.Request{URL: mustURL("/x"), Header: http.Header{}})
	if w.code != 500 {
		t.Fatalf("status %d", w.code)
	}
	if _, c, _, _ := errorOf(t, w.body.Bytes()); c != "server_error" {
		t.Fatalf("code %q", c)
	}
}

type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(c int)           { r.code = c }
func (r *recorder) Write(p []byte) (int, error) { return r.body.Write(p) }

func TestLogprobs(t *testing.T) {
	h := chatHarness(t, fixed("alpha beta gamma"))
	code, data, _ := h.do(http.MethodPost, neuronapi.PathChatCompletions, map[string]any{"model": modelName, "messages": userMsg("x"), "logprobs": true, "top_logprobs": 1})
	if code != 200 {
		t.Fatalf("%d %s", code, data)
	}
	ch := decodeInto[openai.ChatResponse](t, data).Choices[0]
	if ch.Logprobs == nil || len(ch.Logprobs.Content) != 3 || ch.Logprobs.Content[1].Token != " beta" || len(ch.Logprobs.Content[1].TopLogprobs) != 1 ||
		string(byteSlice(ch.Logprobs.Content[1].Bytes)) != " beta" {
		t.Fatalf("logprobs %+v", ch.Logprobs)
	}
	lresp := h.stream(context.Background(), neuronapi.PathChatCompletions, map[string]any{"model": modelName, "messages": userMsg("x"), "logprobs": true, "stream": true})
	defer lresp.Body.Close()
	raw := readSSE(t, lresp)
	n := 0
	for _, c := range chunksOf(t, raw) {
		if len(c.Choices) > 0 && c.Choices[0].Logprobs != nil {
			n += len(c.Choices[0].Logprobs.Content)
		}
	}
	if n != 3 {
		t.Fatalf("%d streamed logprobs\n%s", n, raw)
	}
	code, data, _ = h.do(http.MethodPost, neuronapi.PathCompletions, map[string]any{"model": modelName, "prompt": "x", "logprobs": 1})
	var cr struct {
		Choices []struct {
			Logprobs legacyLogprobs `json:"logprobs"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(data, &cr); err != nil || code != 200 || len(cr.Choices[0].Logprobs.Tokens) != 3 || cr.Choices[0].Logprobs.TextOffset[1] != len("alpha") {
		t.Fatalf("legacy logprobs: %d %s", code, data)
	}
}

func byteSlice(in []int) []byte {
	out := make([]byte, len(in))
	for i, b := range in {
		out[i] = byte(b)
	}
	return out
}

// A stop string that ends a generation is reported (stop_sequence), so an
// Anthropic client sees stop_reason "stop_sequence" rather than end_turn;
// an answer that ends on its own reports none.
func TestChatReportsTheMatchedStopSequence(t *testing.T) {
	h := chatHarness(t, fixed("One two. Three four."))
	for _, stream := range []bool{false, true} {
		body := map[string]any{"model": modelName, "messages": userMsg("count"), "stop": []string{"END", "Three"}, "stream": stream}
		var choice struct {
			Content      string
			FinishReason string
			StopSequence *string
		}
		if stream {
			acc := openai.Accumulate(chunksOf(t, readSSE(t, h.stream(context.Background(), neuronapi.PathChatCompletions, body))))
			choice.Content, choice.FinishReason = acc.Choices[0].Message.Content.String(), acc.Choices[0].FinishReason
			choice.StopSequence = acc.Choices[0].StopSequence
		} else {
			code, data, _ := h.do(http.MethodPost, neuronapi.PathChatCompletions, body)
			if code != http.StatusOK {
				t.Fatalf("%d %s", code, data)
			}
			resp := decodeInto[openai.ChatResponse](t, data)
			choice.Content, choice.FinishReason, choice.StopSequence = resp.Choices[0].Message.Content.String(), resp.Choices[0].FinishReason, resp.Choices[0].StopSequence
		}
		if choice.Content != "One two. " || choice.FinishReason != "stop" || choice.StopSequence == nil || *choice.StopSequence != "Three" {
			t.Fatalf("stream=%v: %+v (stop %v)", stream, choice, choice.StopSequence)
		}
	}
	code, data, _ := h.do(http.MethodPost, neuronapi.PathChatCompletions, map[string]any{"model": modelName, "messages": userMsg("count")})
	if resp := decodeInto[openai.ChatResponse](t, data); code != 200 || resp.Choices[0].StopSequence != nil {
		t.Fatalf("no stop string matched, yet stop_sequence = %v", resp.Choices[0].StopSequence)
	}
}

// A client that opens a stream and never reads (and stays connected) is
// cut off after --client-write-timeout: its sequence is freed, so it
// cannot hold the model's capacity for as long as it keeps the socket.
func TestStreamToAClientThatNeverReadsIsAbandoned(t *testing.T) {
	// Words of 16 KiB: a few hundred tokens are more than the socket
	// buffers hold, well within the context.
	word := strings.Repeat("x", 16<<10) + " "
	h := newHarness(t, withFake(func(o *enginefake.Options) {
		o.Respond = func(enginefake.Prompt) string { return strings.Repeat(word, 100000) }
	}), withConfig(func(c *Config) { c.ClientWriteTimeout = 500 * time.Millisecond }))
	h.load(neuronapi.LoadRequest{Name: modelName, Source: neuronapi.Source{URI: tinyModel(t, 1)}})
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"go"}],"stream":true,"max_tokens":10000000}`, modelName)
	if _, err := fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		neuronapi.PathChatCompletions, testToken, len(body), body); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the stream to start", func() bool { m, _ := h.model(modelName); return m.InFlight == 1 })
	// The client never reads: the socket buffers fill, a write blocks,
	// and the neuron gives up on it while the connection is still open.
	h.waitFor("the abandoned stream to free its sequence", func() bool { m, _ := h.model(modelName); return m.InFlight == 0 })
}
