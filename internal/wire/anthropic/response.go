package anthropic

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// FromOpenAIChat translates a chat completion into a Messages response for
// model (the name the client asked for). Only the first choice counts (n is
// always 1). The id is "msg_" plus the completion id's suffix.
//
// Content blocks come in the order the model produced them: a thinking
// block from reasoning_content (with ThinkingSignature as its signature,
// since there is nothing to sign with), a text block from content, then a
// tool_use block per tool call whose input is the parsed arguments (see
// ToolInput). A response with none of these gets one empty text block, so
// clients reading content[0].text keep working.
//
// stop_reason: any tool call present (unless cut by length) → tool_use,
// whatever the finish reason; "tool_calls" without a call → end_turn;
// "length" → max_tokens; "stop" with the stop_sequence extension set →
// stop_sequence with that value; any other "stop" → end_turn;
// "content_filter" → refusal.
func FromOpenAIChat(resp *openai.ChatResponse, model string) *MessagesResponse {
	out := &MessagesResponse{
		ID:      MessageID(resp.ID),
		Type:    "message",
		Role:    RoleAssistant,
		Model:   model,
		Content: []ContentBlock{},
	}
	var choice openai.ChatChoice
	if len(resp.Choices) > 0 {
		choice = resp.Choices[0]
	}
	m := choice.Message
	if m.ReasoningContent != "" {
		out.Content = append(out.Content, ContentBlock{Type: BlockThinking, Thinking: m.ReasoningContent, Signature: ThinkingSignature(m.ReasoningContent)})
	}
	text := m.Content.String()
	if text == "" && m.Refusal != nil {
		text = *m.Refusal
	}
	if text != "" {
		out.Content = append(out.Content, ContentBlock{Type: BlockText, Text: text})
	}
	for i, tc := range m.ToolCalls {
		out.Content = append(out.Content, ContentBlock{
			Type:  BlockToolUse,
			ID:    ToolUseID(tc.ID, out.ID, i),
			Name:  tc.Function.Name,
			Input: ToolInput(tc.Function.Arguments),
		})
	}
	if len(out.Content) == 0 {
		out.Content = append(out.Content, ContentBlock{Type: BlockText, Text: ""})
	}
	reason, seq := StopReason(choice.FinishReason, choice.StopSequence, len(m.ToolCalls) > 0)
	out.StopReason = &reason
	out.StopSequence = seq
	if u := resp.Usage; u != nil {
		out.Usage.InputTokens = u.PromptTokens
		out.Usage.OutputTokens = u.CompletionTokens
	}
	return out
}

// StopReason maps an OpenAI finish_reason (and the stop_sequence
// extension) to an Anthropic stop_reason and stop_sequence. hasToolCalls
// makes a finished turn with tool calls "tool_use" whatever the finish
// reason said, since clients run tools only on tool_use. The reverse holds
// too: "tool_calls" (or legacy "function_call") with no call in the answer
// is end_turn, because a client told tool_use looks for a tool_use block
// to run and an agent loop finding none would stall or fail.
func StopReason(finish string, stopSequence *string, hasToolCalls bool) (string, *string) {
	switch {
	case finish == openai.FinishLength:
		return StopMaxTokens, nil
	case hasToolCalls:
		return StopToolUse, nil
	case finish == openai.FinishContentFilter:
		return StopRefusal, nil
	case stopSequence != nil && *stopSequence != "":
		s := *stopSequence
		return StopStopSequence, &s
	default:
		return StopEndTurn, nil
	}
}

// ToolInput turns OpenAI tool call arguments (a JSON string) into a
// tool_use input (a JSON object). Empty arguments are {}. Arguments that
// are not a JSON object — a model that produced broken JSON — become
// {"_raw": "<the arguments>"}, so the client's tool sees the text, its
// schema validation fails clearly and the model can retry, instead of the
// whole response failing.
func ToolInput(args string) json.RawMessage {
	trimmed := strings.TrimSpace(args)
	if trimmed == "" {
		return json.RawMessage("{}")
	}
	if trimmed[0] == '{' && json.Valid([]byte(trimmed)) {
		var b bytes.Buffer
		if json.Compact(&b, []byte(trimmed)) == nil {
			return b.Bytes()
		}
	}
	raw, _ := json.Marshal(map[string]string{"_raw": args})
	return raw
}

// MessageID derives a "msg_" id from an upstream completion id (its
// "chatcmpl-" prefix dropped, other characters than letters, digits and _
// removed), or a random one when there is nothing left.
func MessageID(upstream string) string {
	return "msg_" + idSuffix(upstream)
}

// ToolUseID returns the tool_use id for a tool call: the call's own id when
// it has one (the client sends it back in tool_result, and the neuron must
// see the same id), else one derived from the message id and position.
func ToolUseID(callID, messageID string, i int) string {
	if callID != "" {
		return callID
	}
	return "toolu_" + strings.TrimPrefix(messageID, "msg_") + "_" + strconv.Itoa(i)
}

func idSuffix(upstream string) string {
	s := upstream
	for _, p := range []string{"chatcmpl-", "chatcmpl_", "cmpl-"} {
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
		return hex.EncodeToString(buf[:])
	}
	return b.String()
}

// ThinkingSignature is the signature cortex puts on thinking blocks. Real
// signatures let Anthropic verify thinking sent back in later turns; a
// neuron has nothing to verify, so cortex ignores signatures on input, but
// clients expect a non-empty one (and a signature_delta in streams). It is
// a digest of the thinking text: stable, opaque, and the same streamed or
// not.
func ThinkingSignature(thinking string) string {
	sum := sha256.Sum256([]byte("cortex-thinking-v1\x00" + thinking))
	return base64.StdEncoding.EncodeToString(sum[:])
}
