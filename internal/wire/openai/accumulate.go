package openai

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
)

// ChatAccumulator folds a stream of chat.completion.chunk into the
// chat.completion it amounts to: content, reasoning and refusal
// concatenated, tool calls assembled by index, finish_reason, the
// stop_sequence extension, logprobs and usage kept. The zero value is ready.
// The gateway uses it when a client wants one JSON answer but the neuron is
// streamed; tests use it to compare streams with non-streamed answers.
type ChatAccumulator struct {
	resp    ChatResponse
	choices map[int]*accChoice
}

type accChoice struct {
	role         string
	content      strings.Builder
	hasContent   bool
	reasoning    strings.Builder
	refusal      strings.Builder
	hasRefusal   bool
	calls        []*ToolCall
	byIndex      map[int]*ToolCall
	finish       string
	stopSequence *string
	logprobs     *Logprobs
}

// Add folds one chunk in.
func (a *ChatAccumulator) Add(c *ChatChunk) {
	if c == nil {
		return
	}
	if a.resp.ID == "" {
		a.resp.ID = c.ID
	}
	if a.resp.Created == 0 {
		a.resp.Created = c.Created
	}
	if a.resp.Model == "" {
		a.resp.Model = c.Model
	}
	if a.resp.SystemFingerprint == "" {
		a.resp.SystemFingerprint = c.SystemFingerprint
	}
	if c.Usage != nil {
		u := *c.Usage
		a.resp.Usage = &u
	}
	for i := range c.Choices {
		a.addChoice(&c.Choices[i])
	}
}

func (a *ChatAccumulator) addChoice(cc *ChunkChoice) {
	if a.choices == nil {
		a.choices = map[int]*accChoice{}
	}
	ch := a.choices[cc.Index]
	if ch == nil {
		ch = &accChoice{byIndex: map[int]*ToolCall{}}
		a.choices[cc.Index] = ch
	}
	d := &cc.Delta
	if d.Role != "" {
		ch.role = d.Role
	}
	if d.Content != nil {
		ch.content.WriteString(*d.Content)
		ch.hasContent = true
	}
	if d.ReasoningContent != nil {
		ch.reasoning.WriteString(*d.ReasoningContent)
	}
	if d.Refusal != nil {
		ch.refusal.WriteString(*d.Refusal)
		ch.hasRefusal = true
	}
	for _, tc := range d.ToolCalls {
		ch.addToolCall(tc)
	}
	if cc.FinishReason != nil && *cc.FinishReason != "" {
		ch.finish = *cc.FinishReason
	}
	if cc.StopSequence != nil {
		s := *cc.StopSequence
		ch.stopSequence = &s
	}
	if cc.Logprobs != nil {
		if ch.logprobs == nil {
			ch.logprobs = &Logprobs{Content: []TokenLogprob{}}
		}
		ch.logprobs.Content = append(ch.logprobs.Content, cc.Logprobs.Content...)
	}
}

// addToolCall merges one tool call fragment. Fragments are matched by index;
// servers that omit the index send one call at a time, so a fragment without
// one continues the last call unless it brings a new id.
func (ch *accChoice) addToolCall(tc ToolCall) {
	var cur *ToolCall
	switch {
	case tc.Index != nil:
		cur = ch.byIndex[*tc.Index]
		if cur == nil {
			cur = &ToolCall{Type: "function"}
			ch.byIndex[*tc.Index] = cur
			ch.calls = append(ch.calls, cur)
		}
	case len(ch.calls) > 0 && (tc.ID == "" || tc.ID == ch.calls[len(ch.calls)-1].ID):
		cur = ch.calls[len(ch.calls)-1]
	default:
		cur = &ToolCall{Type: "function"}
		ch.calls = append(ch.calls, cur)
	}
	if tc.ID != "" {
		cur.ID = tc.ID
	}
	if tc.Type != "" {
		cur.Type = tc.Type
	}
	if tc.Function.Name != "" {
		cur.Function.Name = tc.Function.Name
	}
	cur.Function.Arguments += tc.Function.Arguments
}

// Response returns the accumulated chat.completion. Choices are in index
// order; a choice that never got a finish_reason has "" (the stream was cut).
func (a *ChatAccumulator) Response() *ChatResponse {
	out := a.resp
	out.Object = "chat.completion"
	idx := make([]int, 0, len(a.choices))
	for i := range a.choices {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	out.Choices = make([]ChatChoice, 0, len(idx))
	for _, i := range idx {
		ch := a.choices[i]
		m := Message{Role: ch.role, ReasoningContent: ch.reasoning.String()}
		if m.Role == "" {
			m.Role = RoleAssistant
		}
		if ch.hasContent || len(ch.calls) == 0 {
			m.Content = TextContent(ch.content.String())
		}
		if ch.hasRefusal {
			r := ch.refusal.String()
			m.Refusal = &r
		}
		for _, tc := range ch.calls {
			c := *tc
			c.Index = nil
			m.ToolCalls = append(m.ToolCalls, c)
		}
		out.Choices = append(out.Choices, ChatChoice{
			Index:        i,
			Message:      m,
			FinishReason: ch.finish,
			Logprobs:     ch.logprobs,
			StopSequence: ch.stopSequence,
		})
	}
	return &out
}

// Accumulate folds chunks into the chat.completion they amount to.
func Accumulate(chunks []ChatChunk) *ChatResponse {
	var a ChatAccumulator
	for i := range chunks {
		a.Add(&chunks[i])
	}
	return a.Response()
}

// DecodeChunk decodes the data of one streamed event from a chat
// completions stream. An error envelope ({"error":{…}}), which OpenAI-style
// servers send when they fail mid-stream, comes back as an *Error.
func DecodeChunk(data []byte) (*ChatChunk, error) {
	data = bytes.TrimSpace(data)
	// Only a payload that mentions "error" can be an error envelope; the
	// probe costs a second decode, so skip it for ordinary chunks.
	if bytes.Contains(data, []byte(`"error"`)) {
		var probe struct {
			Error *ErrorDetail `json:"error"`
		}
		if err := json.Unmarshal(data, &probe); err != nil {
			return nil, ServerError("The upstream sent an invalid stream event: %v.", err)
		}
		if probe.Error != nil {
			return nil, ErrorFromBody(StatusForType(probe.Error.Type), ErrorBody{Error: *probe.Error})
		}
	}
	var c ChatChunk
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, ServerError("The upstream sent an invalid stream event: %v.", err)
	}
	return &c, nil
}

// StatusForType is the HTTP status an error type stands for, for errors
// that arrive without one (mid-stream).
func StatusForType(typ string) int {
	switch typ {
	case TypeInvalidRequest:
		return http.StatusBadRequest
	case TypeAuthentication:
		return http.StatusUnauthorized
	case TypePermission:
		return http.StatusForbidden
	case TypeNotFound:
		return http.StatusNotFound
	case TypeRateLimit:
		return http.StatusTooManyRequests
	case TypeServiceUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}
