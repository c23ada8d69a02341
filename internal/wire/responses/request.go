package responses

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// ToOpenAIChat translates a Responses request into the chat request a
// neuron serves. It returns warnings for what it accepted but dropped
// (hosted tools, unsupported history items, logprobs) and a 400
// *openai.Error for what it cannot serve (previous_response_id,
// conversation, stored prompts, background, item_reference, files).
//
// The mapping:
//   - instructions, then the system and developer messages that open the
//     input, joined by blank lines → one system message first; system and
//     developer messages later in the input stay in place as system
//     messages;
//   - user messages → user messages (input_text → text, input_image →
//     image_url; a lone text part → string content);
//   - an assistant message, the function_call items after it and the
//     reasoning items before them → ONE assistant message: content,
//     tool_calls (call_id → id) and reasoning_content (summary texts, or
//     the reasoning_text content; encrypted_content is ignored);
//   - function_call_output → a "tool" message (text parts joined; images
//     move to a user message right after the tool messages);
//   - tools → function tools (strict passed on); hosted tools dropped;
//     tool_choice → the same choice (allowed_tools narrows tools to the
//     allowed functions);
//   - max_output_tokens → max_completion_tokens; temperature, top_p,
//     parallel_tool_calls as they are; text.format → response_format;
//     reasoning.effort "none" → enable_thinking false, other efforts →
//     reasoning_effort; user or safety_identifier → user;
//   - stream → stream with stream_options.include_usage.
func ToOpenAIChat(req *Request) (*openai.ChatRequest, []Warning, error) {
	if req.Model == "" {
		return nil, nil, openai.MissingParameter("model")
	}
	if req.PreviousResponseID != "" {
		return nil, nil, openai.InvalidRequest("previous_response_id", openai.CodePreviousResponseAbsent,
			"Previous response with id '%s' not found. This server does not store responses: send the whole conversation in 'input' (with store: false).", req.PreviousResponseID)
	}
	if len(req.Conversation) > 0 && string(req.Conversation) != "null" {
		return nil, nil, openai.Unsupported("conversation", "Conversations are not supported: this server stores nothing. Send the whole conversation in 'input'.")
	}
	if len(req.Prompt) > 0 && string(req.Prompt) != "null" {
		return nil, nil, openai.Unsupported("prompt", "Stored prompt templates are not supported by this server; send 'instructions' and 'input' instead.")
	}
	if req.Background != nil && *req.Background {
		return nil, nil, openai.Unsupported("background", "Background responses are not supported by this server; use stream: true for long responses.")
	}
	if req.Input.IsNull() {
		return nil, nil, openai.MissingParameter("input")
	}

	t := &translator{open: -1}
	out := &openai.ChatRequest{Model: req.Model, Stream: req.Stream}
	if req.Stream {
		out.StreamOptions = &openai.StreamOptions{IncludeUsage: true}
	}
	if err := t.settings(req, out); err != nil {
		return nil, nil, err
	}
	if req.Instructions != nil && *req.Instructions != "" {
		t.system = append(t.system, *req.Instructions)
	}
	if req.Input.Text != nil {
		t.msgs = append(t.msgs, openai.Message{Role: openai.RoleUser, Content: openai.TextContent(*req.Input.Text)})
	}
	for i := range req.Input.Items {
		if err := t.item(&req.Input.Items[i], fmt.Sprintf("input[%d]", i)); err != nil {
			return nil, nil, err
		}
	}
	t.flushImages()
	msgs := t.msgs
	if len(t.system) > 0 {
		msgs = append([]openai.Message{{Role: openai.RoleSystem, Content: openai.TextContent(strings.Join(t.system, "\n\n"))}}, msgs...)
	}
	if len(t.msgs) == 0 {
		return nil, nil, openai.InvalidRequest("input", openai.CodeInvalidValue, "Invalid 'input': it holds no message to answer.")
	}
	out.Messages = msgs
	if err := t.tools(req, out); err != nil {
		return nil, nil, err
	}
	return out, t.warnings, nil
}

type translator struct {
	warnings []Warning
	system   []string
	msgs     []openai.Message
	// open is the index in msgs of the assistant message items still add
	// to, or -1.
	open      int
	reasoning []string
	images    []openai.ContentPart
	started   bool // a non-system message was seen
}

func (t *translator) warn(param, format string, args ...any) {
	t.warnings = append(t.warnings, Warning{Param: param, Message: fmt.Sprintf(format, args...)})
}

func (t *translator) settings(req *Request, out *openai.ChatRequest) error {
	if v := req.MaxOutputTokens; v != nil {
		if *v < 1 {
			return openai.InvalidRequest("max_output_tokens", openai.CodeInvalidValue, "Invalid 'max_output_tokens': must be at least 1, got %d.", *v)
		}
		n := *v
		out.MaxCompletionTokens = &n
	}
	if v := req.Temperature; v != nil {
		if *v < 0 || *v > 2 {
			return openai.InvalidRequest("temperature", openai.CodeInvalidValue, "Invalid 'temperature': must be between 0 and 2, got %g.", *v)
		}
		f := float32(*v)
		out.Temperature = &f
	}
	if v := req.TopP; v != nil {
		if *v < 0 || *v > 1 {
			return openai.InvalidRequest("top_p", openai.CodeInvalidValue, "Invalid 'top_p': must be between 0 and 1, got %g.", *v)
		}
		f := float32(*v)
		out.TopP = &f
	}
	if req.TopLogprobs != nil && *req.TopLogprobs > 0 {
		t.warn("top_logprobs", "logprobs are not returned by this server's Responses API; top_logprobs was ignored")
	}
	out.ParallelToolCalls = req.ParallelToolCalls
	switch {
	case req.User != "":
		out.User = req.User
	case req.SafetyIdentifier != "":
		out.User = req.SafetyIdentifier
	}
	if r := req.Reasoning; r != nil && r.Effort != nil {
		switch *r.Effort {
		case "":
		case "none":
			out.SetThinking(false)
		default:
			out.ReasoningEffort = *r.Effort
		}
	}
	if req.Text != nil && req.Text.Format != nil {
		f := req.Text.Format
		switch f.Type {
		case "text":
		case "json_object":
			out.ResponseFormat = &openai.ResponseFormat{Type: "json_object"}
		case "json_schema":
			if !openai.ValidName(f.Name) {
				return openai.InvalidRequest("text.format.name", openai.CodeInvalidValue, "Invalid 'text.format.name': '%s' must match ^[a-zA-Z0-9_-]{1,64}$.", f.Name)
			}
			if sc := bytes.TrimSpace(f.Schema); len(sc) == 0 || sc[0] != '{' {
				return openai.InvalidRequest("text.format.schema", openai.CodeInvalidType, "Invalid 'text.format.schema': a JSON Schema object is required.")
			}
			out.ResponseFormat = &openai.ResponseFormat{Type: "json_schema", JSONSchema: &openai.JSONSchema{
				Name: f.Name, Description: f.Description, Schema: f.Schema, Strict: f.Strict,
			}}
		case "":
			return openai.MissingParameter("text.format.type")
		default:
			return openai.InvalidRequest("text.format.type", openai.CodeInvalidValue, "Invalid 'text.format.type': '%s'. Supported values are 'text', 'json_object' and 'json_schema'.", f.Type)
		}
	}
	return nil
}

func (t *translator) item(it *InputItem, path string) error {
	switch it.Type {
	case "", ItemMessage:
		return t.message(it, path)
	case ItemReasoning:
		// Reasoning precedes the output it led to, so it waits for the next
		// assistant message. Between function calls of one turn it joins
		// that turn: chat needs every call of a turn in one message, its
		// tool results right after.
		text := reasoningText(it)
		if t.open >= 0 && len(t.msgs[t.open].ToolCalls) > 0 {
			if text != "" {
				m := &t.msgs[t.open]
				m.ReasoningContent = strings.TrimPrefix(m.ReasoningContent+"\n"+text, "\n")
			}
			return nil
		}
		t.open = -1
		if text != "" {
			t.reasoning = append(t.reasoning, text)
		}
	case ItemFunctionCall:
		if it.CallID == "" {
			return openai.MissingParameter(path + ".call_id")
		}
		if it.Name == "" {
			return openai.MissingParameter(path + ".name")
		}
		args := it.Arguments
		if strings.TrimSpace(args) == "" {
			args = "{}"
		}
		m := t.assistant()
		m.ToolCalls = append(m.ToolCalls, openai.ToolCall{ID: it.CallID, Type: "function", Function: openai.FunctionCall{Name: it.Name, Arguments: args}})
	case ItemFunctionCallOutput:
		if it.CallID == "" {
			return openai.MissingParameter(path + ".call_id")
		}
		text, images, err := outputText(it.Output, path+".output")
		if err != nil {
			return err
		}
		t.open = -1
		t.reasoning = nil
		t.started = true
		t.msgs = append(t.msgs, openai.Message{Role: openai.RoleTool, ToolCallID: it.CallID, Content: openai.TextContent(text)})
		if len(images) > 0 {
			t.images = append(t.images, openai.ContentPart{Type: "text", Text: fmt.Sprintf("(images returned by tool call %s)", it.CallID)})
			t.images = append(t.images, images...)
		}
	case ItemReference:
		return openai.InvalidRequest(path, openai.CodeUnsupportedValue,
			"Invalid '%s': item_reference is not supported; this server stores no items, so send the item itself.", path)
	default:
		t.warn(path, "input items of type '%s' are not supported and were dropped", it.Type)
	}
	return nil
}

// flushImages adds the images tool outputs returned as a user message, once
// the tool messages are all in place.
func (t *translator) flushImages() {
	if len(t.images) == 0 {
		return
	}
	t.msgs = append(t.msgs, openai.Message{Role: openai.RoleUser, Content: openai.MessageContent{Parts: t.images}})
	t.images = nil
}

// assistant returns the assistant message items add to, starting one (with
// the pending reasoning) if none is open.
func (t *translator) assistant() *openai.Message {
	if t.open < 0 {
		t.flushImages()
		t.msgs = append(t.msgs, openai.Message{Role: openai.RoleAssistant, ReasoningContent: strings.Join(t.reasoning, "\n")})
		t.reasoning = nil
		t.open = len(t.msgs) - 1
		t.started = true
	}
	return &t.msgs[t.open]
}

func (t *translator) message(it *InputItem, path string) error {
	if it.Content == nil {
		return openai.MissingParameter(path + ".content")
	}
	switch it.Role {
	case "system", "developer":
		text, err := plainText(*it.Content, path+".content")
		if err != nil {
			return err
		}
		if !t.started {
			if text != "" {
				t.system = append(t.system, text)
			}
			return nil
		}
		t.flushImages()
		t.open = -1
		t.msgs = append(t.msgs, openai.Message{Role: openai.RoleSystem, Content: openai.TextContent(text)})
	case "user":
		content, err := userContent(*it.Content, path+".content")
		if err != nil {
			return err
		}
		t.flushImages()
		t.open = -1
		t.reasoning = nil
		t.started = true
		t.msgs = append(t.msgs, openai.Message{Role: openai.RoleUser, Content: content})
	case "assistant":
		text, err := plainText(*it.Content, path+".content")
		if err != nil {
			return err
		}
		if t.open >= 0 && !t.msgs[t.open].Content.IsNull() {
			// A second assistant message: a new turn.
			t.open = -1
		}
		m := t.assistant()
		m.Content = openai.TextContent(text)
	case "":
		return openai.MissingParameter(path + ".role")
	default:
		return openai.InvalidRequest(path+".role", openai.CodeInvalidValue,
			"Invalid '%s.role': '%s'. Supported roles are 'user', 'assistant', 'system' and 'developer'.", path, it.Role)
	}
	return nil
}

func reasoningText(it *InputItem) string {
	var parts []string
	for _, s := range it.Summary {
		if s.Text != "" {
			parts = append(parts, s.Text)
		}
	}
	if len(parts) == 0 && it.Content != nil {
		for _, p := range it.Content.Parts {
			if p.Text != "" {
				parts = append(parts, p.Text)
			}
		}
		if it.Content.Text != nil && *it.Content.Text != "" {
			parts = append(parts, *it.Content.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// plainText returns the text of system, developer and assistant content.
func plainText(c Content, path string) (string, error) {
	if c.Text != nil {
		return *c.Text, nil
	}
	var b strings.Builder
	for j, p := range c.Parts {
		switch p.Type {
		case PartInputText, PartOutputText, "text":
			b.WriteString(p.Text)
		case PartRefusal:
			b.WriteString(p.Refusal)
		default:
			return "", openai.InvalidRequest(fmt.Sprintf("%s[%d].type", path, j), openai.CodeUnsupportedValue,
				"Invalid '%s[%d].type': '%s' parts are not supported here; use text.", path, j, p.Type)
		}
	}
	return b.String(), nil
}

func userContent(c Content, path string) (openai.MessageContent, error) {
	if c.Text != nil {
		return openai.TextContent(*c.Text), nil
	}
	parts := make([]openai.ContentPart, 0, len(c.Parts))
	for j, p := range c.Parts {
		cp, err := inputPart(p, fmt.Sprintf("%s[%d]", path, j))
		if err != nil {
			return openai.MessageContent{}, err
		}
		parts = append(parts, cp)
	}
	if len(parts) == 1 && parts[0].Type == "text" {
		return openai.TextContent(parts[0].Text), nil
	}
	return openai.MessageContent{Parts: parts}, nil
}

func inputPart(p ContentPart, path string) (openai.ContentPart, error) {
	switch p.Type {
	case PartInputText, PartOutputText, "text":
		return openai.ContentPart{Type: "text", Text: p.Text}, nil
	case PartInputImage:
		if p.ImageURL == "" {
			if p.FileID != "" {
				return openai.ContentPart{}, openai.Unsupported(path+".file_id", "Invalid '%s.file_id': file ids need the Files API, which this server does not offer; send the image as a URL or data: URI in image_url.", path)
			}
			return openai.ContentPart{}, openai.MissingParameter(path + ".image_url")
		}
		return openai.ContentPart{Type: "image_url", ImageURL: &openai.ImageURL{URL: string(p.ImageURL), Detail: p.Detail}}, nil
	case PartInputFile:
		return openai.ContentPart{}, openai.Unsupported(path+".type", "Invalid '%s.type': input_file is not supported by this server; send the file's text as input_text.", path)
	case "":
		return openai.ContentPart{}, openai.MissingParameter(path + ".type")
	default:
		return openai.ContentPart{}, openai.Unsupported(path+".type", "Invalid '%s.type': content parts of type '%s' are not supported.", path, p.Type)
	}
}

// outputText returns a function_call_output's text and the images it held.
func outputText(c *Content, path string) (string, []openai.ContentPart, error) {
	if c == nil {
		return "", nil, openai.MissingParameter(path)
	}
	if c.Text != nil {
		return *c.Text, nil, nil
	}
	var texts []string
	var images []openai.ContentPart
	for j, p := range c.Parts {
		cp, err := inputPart(p, fmt.Sprintf("%s[%d]", path, j))
		if err != nil {
			return "", nil, err
		}
		if cp.Type == "text" {
			texts = append(texts, cp.Text)
		} else {
			images = append(images, cp)
		}
	}
	return strings.Join(texts, "\n"), images, nil
}

func (t *translator) tools(req *Request, out *openai.ChatRequest) error {
	defined := map[string]bool{}
	for i, tool := range req.Tools {
		p := fmt.Sprintf("tools[%d]", i)
		if tool.Type != "function" {
			t.warn(p, "hosted tool type '%s' is not supported by this server and was dropped", tool.Type)
			continue
		}
		if !openai.ValidName(tool.Name) {
			return openai.InvalidRequest(p+".name", openai.CodeInvalidValue, "Invalid '%s.name': '%s' must match ^[a-zA-Z0-9_-]{1,64}$.", p, tool.Name)
		}
		if defined[tool.Name] {
			return openai.InvalidRequest(p+".name", openai.CodeInvalidValue, "Invalid '%s.name': tool '%s' is defined twice.", p, tool.Name)
		}
		if p := bytes.TrimSpace(tool.Parameters); len(p) > 0 && !bytes.Equal(p, []byte("null")) && p[0] != '{' {
			return openai.InvalidRequest(fmt.Sprintf("tools[%d].parameters", i), openai.CodeInvalidType, "Invalid 'tools[%d].parameters': must be a JSON Schema object.", i)
		}
		defined[tool.Name] = true
		out.Tools = append(out.Tools, openai.Tool{Type: "function", Function: openai.FunctionDecl{
			Name: tool.Name, Description: tool.Description, Parameters: tool.Parameters, Strict: tool.Strict,
		}})
	}
	c := req.ToolChoice
	if c == nil {
		return nil
	}
	switch c.Mode {
	case "auto", "none":
		if c.Mode == "none" || len(out.Tools) > 0 {
			out.ToolChoice = &openai.ToolChoice{Mode: c.Mode}
		}
	case "required":
		if len(out.Tools) == 0 {
			return openai.InvalidRequest("tool_choice", openai.CodeInvalidValue, "Invalid 'tool_choice': 'required' needs at least one function tool in 'tools'.")
		}
		out.ToolChoice = &openai.ToolChoice{Mode: "required"}
	case "function":
		switch {
		case c.Name == "":
			return openai.MissingParameter("tool_choice.name")
		case !defined[c.Name]:
			return openai.InvalidRequest("tool_choice.name", openai.CodeInvalidValue, "Invalid 'tool_choice.name': function '%s' is not defined in 'tools'.", c.Name)
		}
		out.ToolChoice = &openai.ToolChoice{Mode: "function", Function: c.Name}
	case "allowed_tools":
		allowed := map[string]bool{}
		for _, n := range c.Allowed {
			allowed[n] = true
		}
		kept := out.Tools[:0]
		for _, tool := range out.Tools {
			if allowed[tool.Function.Name] {
				kept = append(kept, tool)
			}
		}
		out.Tools = kept
		switch c.AllowedMode {
		case "required":
			if len(out.Tools) == 0 {
				return openai.InvalidRequest("tool_choice.tools", openai.CodeInvalidValue, "Invalid 'tool_choice.tools': 'required' needs at least one allowed function tool.")
			}
			out.ToolChoice = &openai.ToolChoice{Mode: "required"}
		case "", "auto":
			if len(out.Tools) > 0 {
				out.ToolChoice = &openai.ToolChoice{Mode: "auto"}
			}
		default:
			return openai.InvalidRequest("tool_choice.mode", openai.CodeInvalidValue, "Invalid 'tool_choice.mode': '%s'. Supported values are 'auto' and 'required'.", c.AllowedMode)
		}
	default:
		// A hosted tool (web_search_preview, file_search, mcp, custom…).
		t.warn("tool_choice", "tool_choice '%s' names a tool this server does not support; the model chooses freely", c.Mode)
		if len(out.Tools) > 0 {
			out.ToolChoice = &openai.ToolChoice{Mode: "auto"}
		}
	}
	if len(out.Tools) == 0 {
		out.Tools = nil
	}
	return nil
}
