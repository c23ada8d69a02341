package neurontest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/helexa-ai/cortex/internal/neuronapi"
)

// Inference makes the simulated neuron answer the OpenAI endpoints a real
// neuron serves, with canned text: enough to test routing, relaying,
// translation and failure handling in the gateway, and to benchmark the
// gateway against a backend that costs nothing.
type Inference struct {
	// Reply is the completion text (default "Hello from <node>.").
	Reply string
	// Chunks is how many stream chunks the reply is cut into (default 4).
	Chunks int
	// ChunkDelay is the pause before each chunk.
	ChunkDelay time.Duration
	// FailStatus, when set, answers every inference request with this
	// status before any byte of a completion.
	FailStatus int
	// DropAfter, when > 0, drops the connection after that many chunks of
	// a stream.
	DropAfter int
	// ToolArguments, when set, answers requests that force a tool with a
	// call to it carrying these JSON arguments.
	ToolArguments string
}

type inferenceState struct {
	mu       sync.Mutex
	cfg      Inference
	requests []json.RawMessage
	paths    []string
}

// SetInference changes how the server answers inference requests.
func (s *Server) SetInference(in Inference) {
	s.inf.mu.Lock()
	defer s.inf.mu.Unlock()
	s.inf.cfg = in
}

// Requests returns the bodies of the inference requests received, in
// order, with their paths.
func (s *Server) Requests() ([]string, []json.RawMessage) {
	s.inf.mu.Lock()
	defer s.inf.mu.Unlock()
	return append([]string(nil), s.inf.paths...), append([]json.RawMessage(nil), s.inf.requests...)
}

func (s *Server) inference() Inference {
	s.inf.mu.Lock()
	defer s.inf.mu.Unlock()
	in := s.inf.cfg
	if in.Reply == "" {
		in.Reply = "Hello from " + s.cfg.Name + "."
	}
	if in.Chunks <= 0 {
		in.Chunks = 4
	}
	return in
}

type stubRequest struct {
	Model         string `json:"model"`
	Stream        bool   `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Tools      []struct{ Function struct{ Name string } } `json:"tools"`
	ToolChoice json.RawMessage                            `json:"tool_choice"`
}

func (s *Server) record(r *http.Request) (*stubRequest, Inference, bool, error) {
	var raw json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&raw); err != nil {
		return nil, Inference{}, false, err
	}
	s.inf.mu.Lock()
	s.inf.requests = append(s.inf.requests, raw)
	s.inf.paths = append(s.inf.paths, r.URL.Path)
	s.inf.mu.Unlock()
	var req stubRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, Inference{}, false, err
	}
	in := s.inference()
	s.mu.Lock()
	m, ok := s.models[req.Model]
	ready := ok && m.status.State == neuronapi.StateReady
	if ready && r.URL.Path != neuronapi.PathTokenize {
		m.status.Requests++
	}
	s.mu.Unlock()
	return &req, in, ready, nil
}

// accept records an inference request and answers the errors a neuron
// would: a malformed body, a model not loaded here, and (when failable) the
// simulated failure. ok is false when it answered.
func (s *Server) accept(w http.ResponseWriter, r *http.Request, failable bool) (*stubRequest, Inference, bool) {
	req, in, ready, err := s.record(r)
	switch {
	case err != nil:
		writeErr(w, http.StatusBadRequest, neuronapi.CodeInvalidRequest, err.Error())
	case !ready:
		writeErr(w, http.StatusNotFound, neuronapi.CodeModelNotFound, fmt.Sprintf("model %q is not loaded here", req.Model))
	case failable && in.FailStatus != 0:
		writeErr(w, in.FailStatus, neuronapi.CodeInternal, "simulated failure")
	default:
		return req, in, true
	}
	return nil, Inference{}, false
}

func pieces(text string, n int) []string {
	words := strings.SplitAfter(text, " ")
	out := make([]string, 0, n)
	per := max(1, (len(words)+n-1)/n)
	for i := 0; i < len(words); i += per {
		out = append(out, strings.Join(words[i:min(i+per, len(words))], ""))
	}
	return out
}

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	req, in, ok := s.accept(w, r, true)
	if !ok {
		return
	}
	forced := in.ToolArguments != "" && len(req.Tools) > 0 && len(req.ToolChoice) > 0 && string(req.ToolChoice) != `"none"` && string(req.ToolChoice) != `"auto"`
	created := time.Now().Unix()
	usage := map[string]any{"prompt_tokens": 7, "completion_tokens": in.Chunks, "total_tokens": 7 + in.Chunks}
	if !req.Stream {
		if r.Header.Get(neuronapi.HeaderFirstToken) != "" {
			// As the neuron says its first token came: at once here.
			neuronapi.WriteFirstToken(w)
		}
		msg := map[string]any{"role": "assistant", "content": in.Reply}
		finish := "stop"
		if forced {
			msg = map[string]any{"role": "assistant", "content": nil, "tool_calls": []any{map[string]any{
				"id": "call_stub", "type": "function",
				"function": map[string]any{"name": req.Tools[0].Function.Name, "arguments": in.ToolArguments},
			}}}
			finish = "tool_calls"
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"id": "chatcmpl-stub", "object": "chat.completion", "created": created, "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "message": msg, "finish_reason": finish}},
			"usage":   usage,
		})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	send := func(v any) {
		b, _ := json.Marshal(v)
		_, _ = fmt.Fprintf(w, "data: %s\n\n", b)
		if fl != nil {
			fl.Flush()
		}
	}
	chunk := func(delta map[string]any, finish any) map[string]any {
		return map[string]any{"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": created, "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}}}
	}
	send(chunk(map[string]any{"role": "assistant", "content": ""}, nil))
	finish := "stop"
	if forced {
		send(chunk(map[string]any{"tool_calls": []any{map[string]any{"index": 0, "id": "call_stub", "type": "function",
			"function": map[string]any{"name": req.Tools[0].Function.Name, "arguments": ""}}}}, nil))
		for i, p := range pieces(in.ToolArguments, in.Chunks) {
			if in.DropAfter > 0 && i >= in.DropAfter {
				panic(http.ErrAbortHandler)
			}
			time.Sleep(in.ChunkDelay)
			send(chunk(map[string]any{"tool_calls": []any{map[string]any{"index": 0, "function": map[string]any{"arguments": p}}}}, nil))
		}
		finish = "tool_calls"
	} else {
		for i, p := range pieces(in.Reply, in.Chunks) {
			if in.DropAfter > 0 && i >= in.DropAfter {
				// Kill the connection the way a dying process would.
				panic(http.ErrAbortHandler)
			}
			time.Sleep(in.ChunkDelay)
			send(chunk(map[string]any{"content": p}, nil))
		}
	}
	send(chunk(map[string]any{}, finish))
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		send(map[string]any{"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": created, "model": req.Model,
			"choices": []any{}, "usage": usage})
	}
	_, _ = fmt.Fprint(w, "data: [DONE]\n\n")
	if fl != nil {
		fl.Flush()
	}
}

func (s *Server) handleEmbeddings(w http.ResponseWriter, r *http.Request) {
	req, _, ok := s.accept(w, r, true)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"object": "list", "model": req.Model,
		"data":  []any{map[string]any{"object": "embedding", "index": 0, "embedding": []float32{0.6, 0.8}}},
		"usage": map[string]any{"prompt_tokens": 3, "total_tokens": 3},
	})
}

func (s *Server) handleTokenize(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := s.accept(w, r, false); !ok {
		return
	}
	writeJSON(w, http.StatusOK, neuronapi.TokenizeResponse{Tokens: []int{1, 2, 3, 4, 5}, Count: 5})
}
