package llm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/helexa-ai/cortex/internal/wire/sse"
)

// chat speaks OpenAI chat completions.
type chat struct{ base }

type chatMessage struct {
	Role       string         `json:"role"`
	Content    any            `json:"content"`
	ToolCalls  []chatToolCall `json:"tool_calls,omitempty"`
	ToolCallID string         `json:"tool_call_id,omitempty"`
}

type chatToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

func chatContent(parts []Part) any {
	images := false
	for _, p := range parts {
		images = images || p.Type == "image"
	}
	if !images {
		var s string
		for _, p := range parts {
			s += p.Text
		}
		return s
	}
	out := make([]map[string]any, 0, len(parts))
	for _, p := range parts {
		if p.Type == "image" {
			out = append(out, map[string]any{"type": "image_url", "image_url": map[string]string{"url": dataURI(p)}})
		} else {
			out = append(out, map[string]any{"type": "text", "text": p.Text})
		}
	}
	return out
}

func (c *chat) body(req Request) map[string]any {
	msgs := []chatMessage{}
	if req.System != "" {
		msgs = append(msgs, chatMessage{Role: "system", Content: req.System})
	}
	for _, m := range req.Messages {
		switch m.Role {
		case RoleUser:
			msgs = append(msgs, chatMessage{Role: "user", Content: chatContent(m.Content)})
		case RoleAssistant:
			cm := chatMessage{Role: "assistant", Content: m.Text()}
			for _, tc := range m.ToolCalls {
				var t chatToolCall
				t.ID, t.Type = tc.ID, "function"
				t.Function.Name, t.Function.Arguments = tc.Name, string(rawArgs(tc.Args))
				cm.ToolCalls = append(cm.ToolCalls, t)
			}
			msgs = append(msgs, cm)
		case RoleTool:
			msgs = append(msgs, chatMessage{Role: "tool", ToolCallID: m.ToolCallID, Content: m.Text()})
		}
	}
	body := map[string]any{
		"model":          req.Model,
		"messages":       msgs,
		"stream":         true,
		"stream_options": map[string]bool{"include_usage": true},
	}
	if req.MaxTokens > 0 {
		body["max_tokens"] = req.MaxTokens
	}
	if req.Effort != "" {
		body["reasoning_effort"] = req.Effort
	}
	if req.Temperature != nil {
		body["temperature"] = *req.Temperature
	}
	if len(req.Tools) > 0 {
		tools := make([]map[string]any, len(req.Tools))
		for i, t := range req.Tools {
			tools[i] = map[string]any{"type": "function", "function": map[string]any{
				"name": t.Name, "description": t.Description, "parameters": t.Schema,
			}}
		}
		body["tools"] = tools
	}
	return body
}

type chatChunk struct {
	Choices []struct {
		Delta struct {
			Content          string `json:"content"`
			ReasoningContent string `json:"reasoning_content"`
			Reasoning        string `json:"reasoning"`
			ToolCalls        []struct {
				Index    int    `json:"index"`
				ID       string `json:"id"`
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"delta"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
	Error *struct {
		Message string `json:"message"`
	} `json:"error"`
}

func (c *chat) Stream(ctx context.Context, req Request, sink Sink) (Result, error) {
	res := Result{Message: Message{Role: RoleAssistant}, StopReason: StopEnd}
	resp, err := c.post(ctx, "/chat/completions", c.body(req), false)
	if err != nil {
		return res, err
	}
	defer func() { _ = resp.Body.Close() }()
	acc := newTurn()
	finish := func() {
		acc.into(&res)
	}
	r := sse.NewReader(resp.Body)
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			finish()
			return res, fmt.Errorf("%s: the stream ended early", c.ep.Name)
		}
		if err != nil {
			finish()
			return res, streamErr(ctx, c.ep.Name, err)
		}
		if ev.IsDone() {
			break
		}
		var ch chatChunk
		if err := json.Unmarshal([]byte(ev.Data), &ch); err != nil {
			finish()
			return res, fmt.Errorf("%s: bad stream event: %w", c.ep.Name, err)
		}
		if ch.Error != nil {
			finish()
			return res, fmt.Errorf("%s: %s", c.ep.Name, ch.Error.Message)
		}
		if ch.Usage != nil {
			res.Usage = Usage{InputTokens: ch.Usage.PromptTokens, OutputTokens: ch.Usage.CompletionTokens}
		}
		for _, choice := range ch.Choices {
			d := choice.Delta
			if r := d.ReasoningContent + d.Reasoning; r != "" {
				acc.thought = append(acc.thought, r...)
				sink.Thought(r)
			}
			if d.Content != "" {
				acc.text = append(acc.text, d.Content...)
				sink.Text(d.Content)
			}
			for _, tc := range d.ToolCalls {
				call := acc.calls[tc.Index]
				if call == nil {
					call = &ToolCall{}
					acc.calls[tc.Index] = call
				}
				if tc.ID != "" {
					call.ID = tc.ID
				}
				call.Name += tc.Function.Name
				call.Args += tc.Function.Arguments
			}
			switch choice.FinishReason {
			case "length":
				res.StopReason = StopMaxTokens
			case "content_filter":
				res.StopReason = StopRefusal
			case "tool_calls":
				res.StopReason = StopToolUse
			}
		}
	}
	finish()
	if len(res.Message.ToolCalls) > 0 && res.StopReason != StopMaxTokens {
		res.StopReason = StopToolUse
	}
	return res, nil
}

// streamErr prefers the cancellation over the read error it caused.
func streamErr(ctx context.Context, name string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("%s: reading the stream: %w", name, err)
}
