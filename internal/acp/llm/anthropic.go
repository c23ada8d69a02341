package llm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/helexa-ai/cortex/internal/wire/sse"
)

// anthropic speaks Anthropic messages.
type anthropic struct{ base }

type anthropicMessage struct {
	Role    string           `json:"role"`
	Content []map[string]any `json:"content"`
}

func (c *anthropic) body(req Request) map[string]any {
	var msgs []anthropicMessage
	add := func(role string, blocks ...map[string]any) {
		// Tool results travel in a user message right after the tool
		// uses; consecutive user-side messages are merged, as the API
		// wants roles to alternate.
		if n := len(msgs); n > 0 && msgs[n-1].Role == role {
			msgs[n-1].Content = append(msgs[n-1].Content, blocks...)
			return
		}
		msgs = append(msgs, anthropicMessage{Role: role, Content: blocks})
	}
	for _, m := range req.Messages {
		switch m.Role {
		case RoleUser:
			var blocks []map[string]any
			for _, p := range m.Content {
				if p.Type == "image" {
					blocks = append(blocks, map[string]any{"type": "image", "source": map[string]string{
						"type": "base64", "media_type": p.MimeType, "data": p.Data}})
				} else if strings.TrimSpace(p.Text) != "" {
					blocks = append(blocks, map[string]any{"type": "text", "text": p.Text})
				}
			}
			if len(blocks) == 0 {
				// The API refuses empty and blank text blocks.
				blocks = append(blocks, map[string]any{"type": "text", "text": "(empty message)"})
			}
			add("user", blocks...)
		case RoleAssistant:
			var blocks []map[string]any
			if m.Signature != "" {
				blocks = append(blocks, map[string]any{"type": "thinking", "thinking": m.Reasoning, "signature": m.Signature})
			}
			if t := m.Text(); strings.TrimSpace(t) != "" {
				blocks = append(blocks, map[string]any{"type": "text", "text": t})
			}
			for _, tc := range m.ToolCalls {
				blocks = append(blocks, map[string]any{"type": "tool_use", "id": tc.ID, "name": tc.Name, "input": rawArgs(tc.Args)})
			}
			if len(blocks) == 0 {
				continue // e.g. thinking only, cut off: nothing to send back
			}
			add("assistant", blocks...)
		case RoleTool:
			add("user", map[string]any{"type": "tool_result", "tool_use_id": m.ToolCallID,
				"content": m.Text(), "is_error": m.IsError})
		}
	}
	maxTokens := req.MaxTokens
	if maxTokens <= 0 {
		maxTokens = 8192
	}
	body := map[string]any{"model": req.Model, "messages": msgs, "stream": true}
	if req.System != "" {
		body["system"] = req.System
	}
	if b := budget(req.Effort); b > 0 {
		if maxTokens <= b {
			maxTokens = b + 4096
		}
		body["thinking"] = map[string]any{"type": "enabled", "budget_tokens": b}
	}
	body["max_tokens"] = maxTokens
	if req.Temperature != nil && body["thinking"] == nil {
		// Anthropic refuses a temperature with thinking on.
		body["temperature"] = *req.Temperature
	}
	if len(req.Tools) > 0 {
		tools := make([]map[string]any, len(req.Tools))
		for i, t := range req.Tools {
			tools[i] = map[string]any{"name": t.Name, "description": t.Description, "input_schema": t.Schema}
		}
		body["tools"] = tools
	}
	return body
}

type anthropicEvent struct {
	Type         string `json:"type"`
	Index        int    `json:"index"`
	ContentBlock *struct {
		Type string `json:"type"`
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"content_block"`
	Delta *struct {
		Type        string `json:"type"`
		Text        string `json:"text"`
		Thinking    string `json:"thinking"`
		PartialJSON string `json:"partial_json"`
		Signature   string `json:"signature"`
		StopReason  string `json:"stop_reason"`
	} `json:"delta"`
	Message *struct {
		Usage struct {
			InputTokens int `json:"input_tokens"`
		} `json:"usage"`
	} `json:"message"`
	Usage *struct {
		OutputTokens int `json:"output_tokens"`
	} `json:"usage"`
	Error *struct {
		Message string `json:"message"`
	} `json:"error"`
}

func (c *anthropic) Stream(ctx context.Context, req Request, sink Sink) (Result, error) {
	res := Result{Message: Message{Role: RoleAssistant}, StopReason: StopEnd}
	resp, err := c.post(ctx, "/messages", c.body(req), true)
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
			return res, fmt.Errorf("%s: the stream ended before message_stop", c.ep.Name)
		}
		if err != nil {
			finish()
			return res, streamErr(ctx, c.ep.Name, err)
		}
		var e anthropicEvent
		if err := json.Unmarshal([]byte(ev.Data), &e); err != nil {
			finish()
			return res, fmt.Errorf("%s: bad stream event: %w", c.ep.Name, err)
		}
		switch e.Type {
		case "message_start":
			if e.Message != nil {
				res.Usage.InputTokens = e.Message.Usage.InputTokens
			}
		case "content_block_start":
			if b := e.ContentBlock; b != nil && b.Type == "tool_use" {
				acc.calls[e.Index] = &ToolCall{ID: b.ID, Name: b.Name}
			}
		case "content_block_delta":
			if e.Delta == nil {
				continue
			}
			switch e.Delta.Type {
			case "text_delta":
				acc.text = append(acc.text, e.Delta.Text...)
				sink.Text(e.Delta.Text)
			case "thinking_delta":
				acc.thought = append(acc.thought, e.Delta.Thinking...)
				sink.Thought(e.Delta.Thinking)
			case "signature_delta":
				res.Message.Signature += e.Delta.Signature
			case "input_json_delta":
				if call := acc.calls[e.Index]; call != nil {
					call.Args += e.Delta.PartialJSON
				}
			}
		case "message_delta":
			if e.Usage != nil {
				res.Usage.OutputTokens = e.Usage.OutputTokens
			}
			if e.Delta != nil {
				switch e.Delta.StopReason {
				case "max_tokens":
					res.StopReason = StopMaxTokens
				case "refusal":
					res.StopReason = StopRefusal
				case "tool_use":
					res.StopReason = StopToolUse
				}
			}
		case "message_stop":
			finish()
			if len(res.Message.ToolCalls) > 0 && res.StopReason == StopEnd {
				res.StopReason = StopToolUse
			}
			return res, nil
		case "error":
			finish()
			msg := "upstream error"
			if e.Error != nil {
				msg = e.Error.Message
			}
			return res, fmt.Errorf("%s: %s", c.ep.Name, msg)
		}
	}
}
