package soak

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/helexa-ai/cortex/internal/wire/sse/ssecheck"
)

// Kind is one shape of client request.
type Kind string

// The request mix. Each is sent with a raw HTTP client (no SDK retries, so
// every failure the gateway lets through is counted) and its answer is
// checked against the dialect's grammar.
const (
	KindChat           Kind = "chat"
	KindChatStream     Kind = "chat-stream"
	KindCompletions    Kind = "completions"
	KindResponses      Kind = "responses"
	KindResponsesSSE   Kind = "responses-stream"
	KindMessages       Kind = "messages"
	KindMessagesStream Kind = "messages-stream"
	// KindDisconnect reads the first token of a stream, then hangs up.
	KindDisconnect Kind = "disconnect"
	// KindSlowReader reads a stream a few bytes at a time, slowly.
	KindSlowReader Kind = "slow-reader"
	// KindCold asks for a Model that scales to zero, so it is loaded by
	// the request.
	KindCold Kind = "cold"
)

// mix is the weighted request mix of the workers (cold requests come from
// their own slow loop).
var mix = []struct {
	kind   Kind
	weight int
}{
	{KindChat, 3}, {KindChatStream, 4}, {KindCompletions, 2}, {KindResponses, 1}, {KindResponsesSSE, 1},
	{KindMessages, 2}, {KindMessagesStream, 3}, {KindDisconnect, 1}, {KindSlowReader, 1},
}

// Outcome is how a request ended.
type Outcome string

// Outcomes. Only OK and Abandoned are not failures.
const (
	OK Outcome = "ok"
	// Abandoned is a client that hung up on purpose after its first token.
	Abandoned Outcome = "abandoned"
	// ErrorEvent is a stream that ended with the dialect's error event (a
	// well-formed stream an SDK raises as an API error).
	ErrorEvent Outcome = "error-event"
	// HTTPError is a non-2xx answer.
	HTTPError Outcome = "http-error"
	// Reset is a connection refused, reset or closed before any answer.
	Reset Outcome = "reset"
	// Broken is a stream or body cut without an error event, or one that
	// breaks the dialect's grammar.
	Broken Outcome = "broken"
	// Timeout is a request the client gave up on.
	Timeout Outcome = "timeout"
)

// Result is one request's record.
type Result struct {
	Kind       Kind
	Model      string
	Start, End time.Time
	Outcome    Outcome
	Status     int
	// Dialect is true when an error answer had the shape the caller's SDK
	// parses (an OpenAI or Anthropic error object).
	Dialect bool
	Detail  string
}

// Failed reports whether the request failed.
func (r Result) Failed() bool { return r.Outcome != OK && r.Outcome != Abandoned }

// client sends requests to the gateway.
type client struct {
	base, key string
	http      *http.Client
	timeout   time.Duration
}

func newClient(base, key string, conns int, timeout time.Duration) *client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &client{base: base, key: key, http: &http.Client{Transport: tr}, timeout: timeout}
}

func (c *client) closeIdle() { c.http.CloseIdleConnections() }

// do sends one request of a kind and classifies its answer.
func (c *client) do(ctx context.Context, kind Kind, model string, rng *rand.Rand) (res Result) {
	res = Result{Kind: kind, Model: model, Start: time.Now()}
	defer func() { res.End = time.Now() }()
	path, body, stream, dialect := request(kind, model, rng)
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	data, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(data))
	if err != nil {
		res.Outcome, res.Detail = Broken, err.Error()
		return res
	}
	req.Header.Set("Content-Type", "application/json")
	if dialect == "anthropic" {
		req.Header.Set("x-api-key", c.key)
		req.Header.Set("anthropic-version", "2023-06-01")
	} else {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		res.Outcome, res.Detail = transportOutcome(ctx, err), err.Error()
		return res
	}
	defer func() { _ = resp.Body.Close() }()
	res.Status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		res.Outcome, res.Detail = HTTPError, fmt.Sprintf("%d %s", resp.StatusCode, firstLine(b))
		res.Dialect = dialectError(dialect, b)
		return res
	}
	if !stream {
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			res.Outcome, res.Detail = transportOutcome(ctx, err), "reading the body: "+err.Error()
			if res.Outcome == Reset {
				res.Outcome = Broken
			}
			return res
		}
		if err := plainOK(kind, b); err != nil {
			res.Outcome, res.Detail = Broken, err.Error()
			return res
		}
		res.Outcome = OK
		return res
	}
	got, readErr := readStream(resp.Body, kind)
	if kind == KindDisconnect && readErr == nil && hasContent(got) {
		res.Outcome = Abandoned
		return res
	}
	if readErr != nil && !errors.Is(readErr, io.EOF) {
		if ctx.Err() != nil {
			res.Outcome, res.Detail = Timeout, "stream: "+readErr.Error()
		} else {
			res.Outcome, res.Detail = Broken, "stream cut: "+readErr.Error()
		}
		return res
	}
	checkErr := checkStream(dialect, got)
	errEvent := hasErrorEvent(got)
	switch {
	case checkErr != nil:
		res.Outcome, res.Detail = Broken, "grammar: "+checkErr.Error()
	case errEvent:
		res.Outcome, res.Dialect, res.Detail = ErrorEvent, true, lastData(got)
	default:
		res.Outcome = OK
	}
	return res
}

func transportOutcome(ctx context.Context, err error) Outcome {
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
		return Timeout
	}
	return Reset
}

// readStream reads a streamed answer the way the kind's client does: all
// of it, all of it slowly, or up to the first token.
func readStream(r io.Reader, kind Kind) ([]byte, error) {
	var out bytes.Buffer
	switch kind {
	case KindSlowReader:
		buf := make([]byte, 64)
		for {
			n, err := r.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				return out.Bytes(), err
			}
			time.Sleep(20 * time.Millisecond)
		}
	case KindDisconnect:
		br := bufio.NewReader(r)
		for {
			line, err := br.ReadString('\n')
			out.WriteString(line)
			if err != nil {
				return out.Bytes(), err
			}
			if hasContent([]byte(line)) {
				return out.Bytes(), nil
			}
		}
	default:
		_, err := io.Copy(&out, r)
		return out.Bytes(), err
	}
}

// hasContent reports a generated token in an OpenAI chat chunk.
func hasContent(b []byte) bool {
	return bytes.Contains(b, []byte(`"content":"`)) && !bytes.Contains(b, []byte(`"content":""`))
}

func hasErrorEvent(b []byte) bool {
	return bytes.Contains(b, []byte("data: {\"error\"")) || bytes.Contains(b, []byte("event: error")) ||
		bytes.Contains(b, []byte("event: response.failed"))
}

func checkStream(dialect string, b []byte) error {
	switch dialect {
	case "anthropic":
		return ssecheck.AnthropicStream(bytes.NewReader(b))
	case "responses":
		return ssecheck.ResponsesStream(bytes.NewReader(b))
	default:
		return ssecheck.OpenAIChatStream(bytes.NewReader(b))
	}
}

// dialectError reports an error body an SDK of the dialect parses.
func dialectError(dialect string, b []byte) bool {
	var v struct {
		Type  string `json:"type"`
		Error *struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &v) != nil || v.Error == nil || v.Error.Message == "" {
		return false
	}
	if dialect == "anthropic" {
		return v.Type == "error" && v.Error.Type != ""
	}
	return true
}

// plainOK checks a non-streamed answer is the object its endpoint returns.
func plainOK(kind Kind, b []byte) error {
	var v struct {
		Object string `json:"object"`
		Type   string `json:"type"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("answer is not JSON: %w", err)
	}
	want := map[Kind]string{KindChat: "chat.completion", KindCold: "chat.completion", KindCompletions: "text_completion",
		KindResponses: "response", KindMessages: "message"}[kind]
	got := v.Object
	if kind == KindMessages {
		got = v.Type
	}
	if got != want {
		return fmt.Errorf("answer is a %q, want %q: %s", got, want, firstLine(b))
	}
	if kind == KindResponses && v.Status != "completed" && v.Status != "incomplete" {
		return fmt.Errorf("response status %q", v.Status)
	}
	return nil
}

var prompts = []string{"Once upon a time", "The little dog", "Lily went to the park", "Tom had a red ball", "One day, a bird"}

// request builds a kind's path and body.
func request(kind Kind, model string, rng *rand.Rand) (path string, body map[string]any, stream bool, dialect string) {
	prompt := prompts[rng.IntN(len(prompts))]
	msgs := []any{map[string]any{"role": "user", "content": prompt}}
	switch kind {
	case KindCompletions:
		return "/v1/completions", map[string]any{"model": model, "prompt": prompt, "max_tokens": 24}, false, "openai"
	case KindResponses, KindResponsesSSE:
		s := kind == KindResponsesSSE
		return "/v1/responses", map[string]any{"model": model, "input": prompt, "max_output_tokens": 32, "stream": s}, s, "responses"
	case KindMessages, KindMessagesStream:
		s := kind == KindMessagesStream
		return "/v1/messages", map[string]any{"model": model, "max_tokens": 32, "messages": msgs, "stream": s}, s, "anthropic"
	case KindChatStream, KindDisconnect, KindSlowReader:
		n := 48
		if kind == KindSlowReader {
			n = 96
		}
		return "/v1/chat/completions", map[string]any{"model": model, "max_tokens": n, "messages": msgs, "stream": true}, true, "openai"
	default:
		return "/v1/chat/completions", map[string]any{"model": model, "max_tokens": 24, "messages": msgs}, false, "openai"
	}
}

func firstLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

func lastData(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "data: ") {
			return firstLine([]byte(lines[i]))
		}
	}
	return ""
}

// recorder collects results.
type recorder struct {
	mu      sync.Mutex
	results []Result
}

func (r *recorder) add(res Result) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.results = append(r.results, res)
	return len(r.results)
}

func (r *recorder) all() []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Result(nil), r.results...)
}

// generator runs the workers until stopped or the request budget is spent.
type generator struct {
	c       *client
	rec     *recorder
	warm    []string
	cold    string
	workers int
	budget  int
	coldGap time.Duration

	paused sync.RWMutex
}

func (g *generator) pick(rng *rand.Rand) Kind {
	total := 0
	for _, m := range mix {
		total += m.weight
	}
	n := rng.IntN(total)
	for _, m := range mix {
		if n < m.weight {
			return m.kind
		}
		n -= m.weight
	}
	return KindChat
}

// run blocks until ctx ends or the budget is spent.
func (g *generator) run(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for i := range g.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 42))
			for ctx.Err() == nil {
				g.paused.RLock()
				kind := g.pick(rng)
				res := g.c.do(ctx, kind, g.warm[rng.IntN(len(g.warm))], rng)
				g.paused.RUnlock()
				if ctx.Err() != nil && res.Failed() {
					return // cut by the end of the run, not by a fault
				}
				if g.rec.add(res) >= g.budget {
					cancel()
				}
			}
		}()
	}
	if g.cold != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(99, 42))
			for ctx.Err() == nil {
				g.paused.RLock()
				res := g.c.do(ctx, KindCold, g.cold, rng)
				g.paused.RUnlock()
				if ctx.Err() != nil && res.Failed() {
					return
				}
				g.rec.add(res)
				select {
				case <-ctx.Done():
				case <-time.After(g.coldGap):
				}
			}
		}()
	}
	wg.Wait()
}

// pause waits for every request in flight to finish and holds new ones
// until the returned function is called (for quiet resource samples).
func (g *generator) pause() func() {
	g.paused.Lock()
	return g.paused.Unlock
}
