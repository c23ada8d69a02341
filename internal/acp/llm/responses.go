package llm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/helexa-ai/cortex/internal/wire/sse"
)

// responses speaks the OpenAI Responses API.
type responses struct{ base }

func (c *responses) body(req Request) map[string]any {
	input := []map[string]any{}
	for _, m := range req.Messages {
		switch m.Role {
		case RoleUser:
			parts := []map[string]any{}
			for _, p := range m.Content {
				if p.Type == "image" {
					parts = append(parts, map[string]any{"type": "input_image", "image_url": dataURI(p)})
				} else {
					parts = append(parts, map[string]any{"type": "input_text", "text": p.Text})
				}
			}
			input = append(input, map[string]any{"type": "message", "role": "user", "content": parts})
		case RoleAssistant:
			if t := m.Text(); t != "" {
				input = append(input, map[string]any{"type": "message", "role": "assistant",
					"content": []map[string]any{{"type": "output_text", "text": t}}})
			}
			for _, tc := range m.ToolCalls {
				input = append(input, map[string]any{"type": "function_call", "call_id": tc.ID,
					"name": tc.Name, "arguments": string(rawArgs(tc.Args))})
			}
		case RoleTool:
			input = append(input, map[string]any{"type": "function_call_output", "call_id": m.ToolCallID, "output": m.Text()})
		}
	}
	body := map[string]any{"model": req.Model, "input": input, "stream": true, "store": false}
	if req.System != "" {
		body["instructions"] = req.System
	}
	if req.MaxTokens > 0 {
		body["max_output_tokens"] = req.MaxTokens
	}
	if req.Temperature != nil {
		body["temperature"] = *req.Temperature
	}
	if req.Effort != "" {
		body["reasoning"] = map[string]string{"effort": req.Effort, "summary": "auto"}
	}
	if len(req.Tools) > 0 {
		tools := make([]map[string]any, len(req.Tools))
		for i, t := range req.Tools {
			tools[i] = map[string]any{"type": "function", "name": t.Name, "description": t.Description, "parameters": t.Schema}
		}
		body["tools"] = tools
	}
	return body
}

type responsesEvent struct {
	Type        string `json:"type"`
	Delta       string `json:"delta"`
	OutputIndex int    `json:"output_index"`
	Arguments   string `json:"arguments"`
	Message     string `json:"message"`
	Item        *struct {
		Type      string `json:"type"`
		ID        string `json:"id"`
		CallID    string `json:"call_id"`
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"item"`
	Response *struct {
		Status            string `json:"status"`
		IncompleteDetails *struct {
			Reason string `json:"reason"`
		} `json:"incomplete_details"`
		Error *struct {
			Message string `json:"message"`
		} `json:"error"`
		Usage *struct {
			InputTokens  int `json:"input_tokens"`
			OutputTokens int `json:"output_tokens"`
		} `json:"usage"`
	} `json:"response"`
}

func (c *responses) Stream(ctx context.Context, req Request, sink Sink) (Result, error) {
	res := Result{Message: Message{Role: RoleAssistant}, StopReason: StopEnd}
	resp, err := c.post(ctx, "/responses", c.body(req), false)
	if err != nil {
		return res, err
	}
	defer func() { _ = resp.Body.Close() }()
	acc := newTurn()
	finish := func() {
		acc.into(&res)
		if len(res.Message.ToolCalls) > 0 && res.StopReason == StopEnd {
			res.StopReason = StopToolUse
		}
	}
	r := sse.NewReader(resp.Body)
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			finish()
			return res, fmt.Errorf("%s: the stream ended before response.completed", c.ep.Name)
		}
		if err != nil {
			finish()
			return res, streamErr(ctx, c.ep.Name, err)
		}
		if ev.IsDone() {
			finish()
			return res, nil
		}
		var e responsesEvent
		if err := json.Unmarshal([]byte(ev.Data), &e); err != nil {
			finish()
			return res, fmt.Errorf("%s: bad stream event: %w", c.ep.Name, err)
		}
		if e.Type == "" {
			e.Type = ev.Event
		}
		switch e.Type {
		case "response.output_text.delta":
			acc.text = append(acc.text, e.Delta...)
			sink.Text(e.Delta)
		case "response.reasoning_text.delta", "response.reasoning_summary_text.delta":
			acc.thought = append(acc.thought, e.Delta...)
			sink.Thought(e.Delta)
		case "response.output_item.added":
			if e.Item != nil && e.Item.Type == "function_call" {
				acc.calls[e.OutputIndex] = &ToolCall{ID: e.Item.CallID, Name: e.Item.Name, Args: e.Item.Arguments}
			}
		case "response.function_call_arguments.delta":
			if call := acc.calls[e.OutputIndex]; call != nil {
				call.Args += e.Delta
			}
		case "response.function_call_arguments.done":
			if call := acc.calls[e.OutputIndex]; call != nil && e.Arguments != "" {
				call.Args = e.Arguments
			}
		case "response.output_item.done":
			if e.Item != nil && e.Item.Type == "function_call" {
				call := acc.calls[e.OutputIndex]
				if call == nil {
					call = &ToolCall{}
					acc.calls[e.OutputIndex] = call
				}
				call.ID, call.Name = e.Item.CallID, e.Item.Name
				if e.Item.Arguments != "" {
					call.Args = e.Item.Arguments
				}
			}
		case "response.completed", "response.incomplete":
			if e.Response != nil {
				if u := e.Response.Usage; u != nil {
					res.Usage = Usage{InputTokens: u.InputTokens, OutputTokens: u.OutputTokens}
				}
				if d := e.Response.IncompleteDetails; d != nil {
					if d.Reason == "content_filter" {
						res.StopReason = StopRefusal
					} else {
						res.StopReason = StopMaxTokens
					}
				}
			}
			finish()
			return res, nil
		case "response.failed":
			finish()
			msg := "the response failed"
			if e.Response != nil && e.Response.Error != nil {
				msg = e.Response.Error.Message
			}
			return res, fmt.Errorf("%s: %s", c.ep.Name, msg)
		case "error":
			finish()
			return res, fmt.Errorf("%s: %s", c.ep.Name, e.Message)
		}
	}
}
