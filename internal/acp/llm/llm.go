// Package llm talks to the model: a conversation in one neutral shape,
// and one streaming client per wire dialect (OpenAI chat completions,
// OpenAI Responses, Anthropic messages), each with native tool calling,
// reasoning and images.
package llm

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/helexa-ai/cortex/internal/acp/config"
)

// Roles of a Message.
const (
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleTool      = "tool"
)

// Part is one piece of a user or tool message.
type Part struct {
	// Type is "text" or "image".
	Type string `json:"type"`
	Text string `json:"text,omitempty"`
	// MimeType and Data (base64) carry an image.
	MimeType string `json:"mimeType,omitempty"`
	Data     string `json:"data,omitempty"`
}

// TextPart makes a text part.
func TextPart(s string) Part { return Part{Type: "text", Text: s} }

// ToolCall is the model asking to run a tool.
type ToolCall struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Args is the JSON object of arguments, as the model wrote it.
	Args string `json:"args"`
}

// Message is one turn of the conversation.
type Message struct {
	Role    string `json:"role"`
	Content []Part `json:"content,omitempty"`
	// Reasoning is the assistant's thinking (kept for display and replay;
	// not sent back upstream).
	Reasoning string `json:"reasoning,omitempty"`
	// Signature is Anthropic's signature of the thinking, which must come
	// back with it while tool calls continue the turn.
	Signature string `json:"signature,omitempty"`
	// ToolCalls are the assistant's requests.
	ToolCalls []ToolCall `json:"toolCalls,omitempty"`
	// ToolCallID and ToolName identify the call a tool message answers.
	ToolCallID string `json:"toolCallId,omitempty"`
	ToolName   string `json:"toolName,omitempty"`
	// IsError marks a failed tool result.
	IsError bool `json:"isError,omitempty"`
	// Display is the last tool_call update the client saw for this call,
	// replayed on session/load.
	Display json.RawMessage `json:"display,omitempty"`
}

// Text concatenates the message's text parts.
func (m *Message) Text() string {
	var b strings.Builder
	for _, p := range m.Content {
		if p.Type == "text" {
			b.WriteString(p.Text)
		}
	}
	return b.String()
}

// Tool is a tool offered to the model.
type Tool struct {
	Name        string
	Description string
	// Schema is the JSON schema of the arguments object.
	Schema json.RawMessage
}

// Request is one model call.
type Request struct {
	Model     string
	System    string
	Messages  []Message
	Tools     []Tool
	MaxTokens int
	// Temperature is sent when set.
	Temperature *float64
	// Effort is "", "low", "medium" or "high": reasoning_effort on the
	// OpenAI wires, a thinking budget on Anthropic's.
	Effort string
}

// Usage counts tokens of one call.
type Usage struct {
	InputTokens  int `json:"inputTokens"`
	OutputTokens int `json:"outputTokens"`
}

// Stop reasons of a call.
const (
	StopEnd       = "end_turn"
	StopToolUse   = "tool_use"
	StopMaxTokens = "max_tokens"
	StopRefusal   = "refusal"
)

// Result is what one call produced.
type Result struct {
	Message    Message
	StopReason string
	Usage      Usage
}

// Sink receives the stream as it arrives.
type Sink interface {
	Text(s string)
	Thought(s string)
}

// Client is one upstream.
type Client interface {
	// Stream runs one call, feeding text and thoughts to sink, and returns
	// the complete message. On error the partial message so far is
	// returned with it.
	Stream(ctx context.Context, req Request, sink Sink) (Result, error)
	// Models lists the models the upstream serves.
	Models(ctx context.Context) ([]string, error)
}

// New returns the client for an endpoint's wire.
func New(ep config.Endpoint, hc *http.Client) Client {
	if hc == nil {
		hc = &http.Client{}
	}
	b := base{ep: ep, hc: hc}
	switch ep.WireAPI {
	case config.WireOpenAIResponses:
		return &responses{b}
	case config.WireAnthropicMessages:
		return &anthropic{b}
	default:
		return &chat{b}
	}
}

type base struct {
	ep config.Endpoint
	hc *http.Client
}

// post sends body to path and returns the streaming response, or an error
// that carries the upstream's message.
func (b *base) post(ctx context.Context, path string, body any, anthropicAuth bool) (*http.Response, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encoding the request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.ep.BaseURL+path, strings.NewReader(string(data)))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	b.auth(req, anthropicAuth)
	resp, err := b.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("calling %s: %w", b.ep.Name, err)
	}
	if resp.StatusCode/100 != 2 {
		defer func() { _ = resp.Body.Close() }()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("%s answered %s: %s", b.ep.Name, resp.Status, errorText(msg))
	}
	return resp, nil
}

func (b *base) auth(req *http.Request, anthropicAuth bool) {
	if key := b.ep.Key(); key != "" {
		if anthropicAuth {
			req.Header.Set("x-api-key", key)
		}
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if anthropicAuth {
		req.Header.Set("anthropic-version", "2023-06-01")
	}
	for k, v := range b.ep.Headers {
		req.Header.Set(k, v)
	}
}

// errorText pulls the message out of an OpenAI or Anthropic error body.
func errorText(body []byte) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &e) == nil {
		if e.Error.Message != "" {
			return e.Error.Message
		}
		if e.Message != "" {
			return e.Message
		}
	}
	return strings.TrimSpace(string(body))
}

// Models lists /models; every wire of cortex serves the OpenAI shape, and
// Anthropic's own list has the same `data[].id`.
func (b *base) Models(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.ep.BaseURL+"/models", nil)
	if err != nil {
		return nil, err
	}
	b.auth(req, b.ep.WireAPI == config.WireAnthropicMessages)
	resp, err := b.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("listing models: %s", resp.Status)
	}
	var out struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&out); err != nil {
		return nil, fmt.Errorf("decoding the model list: %w", err)
	}
	ids := make([]string, 0, len(out.Data))
	for _, d := range out.Data {
		ids = append(ids, d.ID)
	}
	return ids, nil
}

// budget maps an effort level to Anthropic's thinking budget.
func budget(effort string) int {
	switch effort {
	case "low":
		return 2048
	case "medium":
		return 8192
	case "high":
		return 24576
	}
	return 0
}

// dataURI makes an image URL from a part.
func dataURI(p Part) string { return "data:" + p.MimeType + ";base64," + p.Data }

// rawArgs makes sure arguments are a JSON object, as all three wires want.
func rawArgs(s string) json.RawMessage {
	if json.Valid([]byte(s)) && strings.HasPrefix(strings.TrimSpace(s), "{") {
		return json.RawMessage(s)
	}
	return json.RawMessage("{}")
}

// turn collects one streamed assistant message, whatever the wire: its
// text, its reasoning, and its tool calls by the index the stream gives
// them.
type turn struct {
	text, thought []byte
	calls         map[int]*ToolCall
}

func newTurn() *turn { return &turn{calls: map[int]*ToolCall{}} }

// into writes the message collected so far into res, tool calls in stream
// order.
func (t *turn) into(res *Result) {
	if len(t.text) > 0 {
		res.Message.Content = []Part{TextPart(string(t.text))}
	}
	res.Message.Reasoning = string(t.thought)
	idx := make([]int, 0, len(t.calls))
	for i := range t.calls {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	for _, i := range idx {
		res.Message.ToolCalls = append(res.Message.ToolCalls, *t.calls[i])
	}
}
