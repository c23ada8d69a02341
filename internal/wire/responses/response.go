package responses

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// FromOpenAIChat translates a chat completion into the Response for req.
// Only the first choice counts (n is always 1). The response id is "resp_"
// plus the completion id's suffix (see ResponseID), created_at the
// completion's created, and item ids derive from the response id and the
// item's output index (see ItemID), as in streams.
//
// Output items come in the order the model produced them: reasoning (from
// reasoning_content: a summary_text summary when the request asked for
// reasoning.summary, else reasoning_text content), a message with one
// output_text part (or a refusal part) when there is text or nothing else,
// then a function_call per tool call (call_id is the tool call id).
//
// Status: finish_reason "length" → incomplete with reason
// max_output_tokens, "content_filter" → incomplete with reason
// content_filter, anything else → completed.
func FromOpenAIChat(resp *openai.ChatResponse, req *Request) *Response {
	out := newResponse(req, ResponseID(resp.ID), resp.Created)
	var choice openai.ChatChoice
	if len(resp.Choices) > 0 {
		choice = resp.Choices[0]
	}
	status, details := finishStatus(choice.FinishReason)
	m := choice.Message
	if m.ReasoningContent != "" {
		out.Output = append(out.Output, reasoningItem(ItemID(out.ID, OutputReasoning, len(out.Output)), m.ReasoningContent, req.Reasoning.WantsSummary()))
	}
	text := m.Content.String()
	refusal := ""
	if m.Refusal != nil {
		refusal = *m.Refusal
	}
	if text != "" || refusal != "" || len(m.ToolCalls) == 0 {
		item := OutputItem{Type: OutputMessage, ID: ItemID(out.ID, OutputMessage, len(out.Output)), Status: itemStatus(status)}
		if text != "" || refusal == "" {
			item.Content = append(item.Content, OutputContent{Type: PartOutputText, Text: text})
		}
		if refusal != "" {
			item.Content = append(item.Content, OutputContent{Type: PartRefusal, Refusal: refusal})
		}
		out.Output = append(out.Output, item)
	}
	for _, tc := range m.ToolCalls {
		idx := len(out.Output)
		out.Output = append(out.Output, OutputItem{
			Type: OutputFunctionCall, ID: ItemID(out.ID, OutputFunctionCall, idx), Status: StatusCompleted,
			CallID: CallID(tc.ID, out.ID, idx), Name: tc.Function.Name, Arguments: tc.Function.Arguments,
		})
	}
	out.Status, out.IncompleteDetails = status, details
	out.Usage = usageFrom(resp.Usage, 0, 0)
	return out
}

func reasoningItem(id, text string, summary bool) OutputItem {
	item := OutputItem{Type: OutputReasoning, ID: id, Summary: []SummaryText{}}
	if summary {
		item.Summary = []SummaryText{{Type: PartSummaryText, Text: text}}
	} else {
		item.Content = []OutputContent{{Type: PartReasoningText, Text: text}}
	}
	return item
}

func finishStatus(finish string) (string, *IncompleteDetails) {
	switch finish {
	case openai.FinishLength:
		return StatusIncomplete, &IncompleteDetails{Reason: "max_output_tokens"}
	case openai.FinishContentFilter:
		return StatusIncomplete, &IncompleteDetails{Reason: "content_filter"}
	}
	return StatusCompleted, nil
}

func itemStatus(responseStatus string) string {
	if responseStatus == StatusIncomplete {
		return StatusIncomplete
	}
	return StatusCompleted
}

// usageFrom maps chat usage; without it, the fallbacks (a count of what was
// streamed) stand in.
func usageFrom(u *openai.Usage, fallbackIn, fallbackOut int) *Usage {
	out := &Usage{InputTokens: fallbackIn, OutputTokens: fallbackOut}
	if u != nil {
		out.InputTokens, out.OutputTokens = u.PromptTokens, u.CompletionTokens
		if d := u.PromptTokensDetails; d != nil {
			out.InputTokensDetails.CachedTokens = d.CachedTokens
		}
		if d := u.CompletionTokensDetails; d != nil {
			out.OutputTokensDetails.ReasoningTokens = d.ReasoningTokens
		}
	}
	out.TotalTokens = out.InputTokens + out.OutputTokens
	return out
}

// newResponse returns an in-progress response for req, echoing its
// settings the way the API does: defaults filled in (temperature and top_p
// 1, tool_choice "auto", text format "text", verbosity "medium", truncation
// "disabled"), function tools only (dropped hosted tools are not echoed,
// strict defaulting to true as in the Responses API), store false.
func newResponse(req *Request, id string, createdAt int64) *Response {
	r := &Response{
		ID: id, Object: "response", CreatedAt: createdAt, Status: StatusInProgress,
		Instructions: req.Instructions, MaxOutputTokens: req.MaxOutputTokens, MaxToolCalls: req.MaxToolCalls,
		Model: req.Model, Output: []OutputItem{}, ParallelToolCalls: true,
		ServiceTier: "default", Temperature: 1, TopP: 1, Truncation: "disabled",
		Text:       TextEcho{Format: TextFormat{Type: "text"}, Verbosity: "medium"},
		ToolChoice: json.RawMessage(`"auto"`), Tools: []FunctionToolEcho{}, Metadata: map[string]string{},
	}
	if req.ParallelToolCalls != nil {
		r.ParallelToolCalls = *req.ParallelToolCalls
	}
	if req.Temperature != nil {
		r.Temperature = *req.Temperature
	}
	if req.TopP != nil {
		r.TopP = *req.TopP
	}
	if req.Truncation != "" {
		r.Truncation = req.Truncation
	}
	if req.ServiceTier != "" && req.ServiceTier != "auto" {
		r.ServiceTier = req.ServiceTier
	}
	if req.Text != nil {
		if req.Text.Format != nil {
			r.Text.Format = *req.Text.Format
		}
		if req.Text.Verbosity != "" {
			r.Text.Verbosity = req.Text.Verbosity
		}
	}
	if req.Reasoning != nil {
		r.Reasoning.Effort = req.Reasoning.Effort
		r.Reasoning.Summary = req.Reasoning.Summary
		if r.Reasoning.Summary == nil {
			r.Reasoning.Summary = req.Reasoning.GenerateSummary
		}
	}
	if req.ToolChoice != nil && req.ToolChoice.Raw != nil {
		r.ToolChoice = req.ToolChoice.Raw
	}
	for _, t := range req.Tools {
		if t.Type != "function" {
			continue
		}
		e := FunctionToolEcho{Type: "function", Name: t.Name, Parameters: t.Parameters, Strict: true}
		if t.Description != "" {
			d := t.Description
			e.Description = &d
		}
		if t.Strict != nil {
			e.Strict = *t.Strict
		}
		if len(e.Parameters) == 0 {
			e.Parameters = json.RawMessage("null")
		}
		r.Tools = append(r.Tools, e)
	}
	for k, v := range req.Metadata {
		r.Metadata[k] = v
	}
	if req.PromptCacheKey != "" {
		s := req.PromptCacheKey
		r.PromptCacheKey = &s
	}
	if req.SafetyIdentifier != "" {
		s := req.SafetyIdentifier
		r.SafetyIdentifier = &s
	}
	if req.User != "" {
		s := req.User
		r.User = &s
	}
	return r
}

// ResponseID derives a "resp_" id from an upstream completion id (its
// "chatcmpl-" prefix dropped, characters other than letters, digits and _
// removed), or a random one when nothing is left.
func ResponseID(upstream string) string {
	s := upstream
	for _, p := range []string{"chatcmpl-", "chatcmpl_", "cmpl-", "resp_"} {
		s = strings.TrimPrefix(s, p)
	}
	var b strings.Builder
	for _, r := range s {
		if r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		var buf [12]byte
		_, _ = rand.Read(buf[:])
		return "resp_" + hex.EncodeToString(buf[:])
	}
	return "resp_" + b.String()
}

// ItemID is the id of the output item at index of response responseID:
// "rs_", "msg_" or "fc_" by kind, the response id's suffix, and the index.
func ItemID(responseID, kind string, index int) string {
	prefix := map[string]string{OutputReasoning: "rs_", OutputMessage: "msg_", OutputFunctionCall: "fc_"}[kind]
	return prefix + strings.TrimPrefix(responseID, "resp_") + "_" + strconv.Itoa(index)
}

// CallID is a function_call's call_id: the tool call's own id (the client
// sends it back in function_call_output, and the neuron must see the same
// id), or one derived from the response id and output index.
func CallID(toolCallID, responseID string, index int) string {
	if toolCallID != "" {
		return toolCallID
	}
	return "call_" + strings.TrimPrefix(responseID, "resp_") + "_" + strconv.Itoa(index)
}
