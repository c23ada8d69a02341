package anthropic

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// ToOpenAIChat translates a Messages request into the chat request a neuron
// serves. It returns warnings for what it accepted but dropped (server
// tools, server tool blocks in history, unknown thinking modes) and a 400
// *openai.Error for what it cannot serve; render that with FromError.
//
// The mapping:
//   - system (string or text blocks) and any role "system" messages, in
//     order, joined by blank lines → one system message first;
//   - text blocks → text parts (a lone text block → string content);
//     images → image_url parts (base64 → data: URI); text and "content"
//     documents and search results → text parts; PDF, URL and file
//     documents and file images → 400 (a neuron cannot read them);
//   - assistant text → content, thinking → reasoning_content (redacted
//     thinking is opaque and dropped), tool_use → tool_calls with the input
//     as a JSON string;
//   - user tool_result blocks → "tool" messages right after the assistant
//     message (is_error prefixes the text with "Error: "; images in a
//     result move to the user message that follows); the user's other
//     blocks, wherever they were in the message, follow as one user message;
//   - tools → function tools; server tools dropped with a warning;
//     tool_choice any → "required", tool → the named function, none →
//     "none", auto → "auto"; disable_parallel_tool_use →
//     parallel_tool_calls false;
//   - max_tokens → max_completion_tokens; stop_sequences → stop;
//     temperature, top_p, top_k as they are; metadata.user_id → user;
//   - thinking enabled → chat_template_kwargs.enable_thinking true and
//     thinking_budget_tokens; disabled → enable_thinking false; adaptive or
//     absent → the model's default;
//   - output_config.format (json_schema) → response_format; effort →
//     reasoning_effort;
//   - stream → stream with stream_options.include_usage, so the final usage
//     reaches message_delta.
func ToOpenAIChat(req *MessagesRequest) (*openai.ChatRequest, []Warning, error) {
	return toChat(req, true)
}

// CountTokensToOpenAIChat translates a count_tokens request the way
// ToOpenAIChat does, without requiring max_tokens, so the gateway can render
// the prompt and count it with the neuron's tokenizer.
func CountTokensToOpenAIChat(req *CountTokensRequest) (*openai.ChatRequest, []Warning, error) {
	return toChat(req, false)
}

func toChat(req *MessagesRequest, needMaxTokens bool) (*openai.ChatRequest, []Warning, error) {
	if req.Model == "" {
		return nil, nil, invalid("model", "model: Field required")
	}
	if needMaxTokens && req.MaxTokens < 1 {
		if req.MaxTokens == 0 {
			return nil, nil, invalid("max_tokens", "max_tokens: Field required")
		}
		return nil, nil, invalid("max_tokens", "max_tokens: must be greater than or equal to 1")
	}
	if len(req.Messages) == 0 {
		return nil, nil, invalid("messages", "messages: at least one message is required")
	}
	t := &translator{}
	out := &openai.ChatRequest{Model: req.Model, Stream: req.Stream}
	if req.Stream {
		out.StreamOptions = &openai.StreamOptions{IncludeUsage: true}
	}
	if req.MaxTokens > 0 {
		mt := req.MaxTokens
		out.MaxCompletionTokens = &mt
	}
	if err := t.sampling(req, out); err != nil {
		return nil, nil, err
	}

	var system []string
	if req.System != nil {
		texts, err := systemTexts(*req.System, "system")
		if err != nil {
			return nil, nil, err
		}
		system = append(system, texts...)
	}
	var msgs []openai.Message
	for i, m := range req.Messages {
		path := fmt.Sprintf("messages.%d", i)
		switch m.Role {
		case RoleSystem:
			texts, err := systemTexts(m.Content, path+".content")
			if err != nil {
				return nil, nil, err
			}
			system = append(system, texts...)
		case RoleUser:
			got, err := t.userMessage(m.Content, path)
			if err != nil {
				return nil, nil, err
			}
			msgs = append(msgs, got...)
		case RoleAssistant:
			got, err := t.assistantMessage(m.Content, path)
			if err != nil {
				return nil, nil, err
			}
			msgs = append(msgs, got)
		case "":
			return nil, nil, invalid(path+".role", path+".role: Field required")
		default:
			return nil, nil, invalid(path+".role", fmt.Sprintf("%s.role: Input should be 'user' or 'assistant', got %q", path, m.Role))
		}
	}
	if len(system) > 0 {
		msgs = append([]openai.Message{{Role: openai.RoleSystem, Content: openai.TextContent(strings.Join(system, "\n\n"))}}, msgs...)
	}
	if len(msgs) == 0 || (len(msgs) == 1 && msgs[0].Role == openai.RoleSystem) {
		return nil, nil, invalid("messages", "messages: at least one user or assistant message is required")
	}
	out.Messages = msgs

	if err := t.tools(req, out); err != nil {
		return nil, nil, err
	}
	t.thinking(req, out)
	if err := t.outputConfig(req, out); err != nil {
		return nil, nil, err
	}
	if len(req.Metadata) > 0 {
		var md struct {
			UserID any `json:"user_id"`
		}
		if json.Unmarshal(req.Metadata, &md) == nil {
			if s, ok := md.UserID.(string); ok {
				out.User = s
			}
		}
	}
	return out, t.warnings, nil
}

type translator struct {
	warnings []Warning
}

func (t *translator) warn(param, format string, args ...any) {
	t.warnings = append(t.warnings, Warning{Param: param, Message: fmt.Sprintf(format, args...)})
}

func invalid(param, msg string) *openai.Error {
	return openai.InvalidRequest(param, openai.CodeInvalidValue, "%s", msg)
}

func (t *translator) sampling(req *MessagesRequest, out *openai.ChatRequest) error {
	if v := req.Temperature; v != nil {
		if *v < 0 || *v > 1 {
			return invalid("temperature", fmt.Sprintf("temperature: Input should be between 0 and 1, got %g", *v))
		}
		f := float32(*v)
		out.Temperature = &f
	}
	if v := req.TopP; v != nil {
		if *v < 0 || *v > 1 {
			return invalid("top_p", fmt.Sprintf("top_p: Input should be between 0 and 1, got %g", *v))
		}
		f := float32(*v)
		out.TopP = &f
	}
	if v := req.TopK; v != nil {
		if *v < 0 {
			return invalid("top_k", "top_k: Input should be greater than or equal to 0")
		}
		k := *v
		out.TopK = &k
	}
	if len(req.StopSequences) > openai.MaxStopSequences {
		return invalid("stop_sequences", fmt.Sprintf("stop_sequences: at most %d stop sequences are supported", openai.MaxStopSequences))
	}
	for i, s := range req.StopSequences {
		if s == "" {
			return invalid(fmt.Sprintf("stop_sequences.%d", i), fmt.Sprintf("stop_sequences.%d: stop sequences must not be empty", i))
		}
	}
	if len(req.StopSequences) > 0 {
		out.Stop = append(openai.StringOrList(nil), req.StopSequences...)
	}
	return nil
}

// systemTexts returns the texts of a system prompt or a system message.
func systemTexts(c Content, path string) ([]string, error) {
	if c.Text != nil {
		if *c.Text == "" {
			return nil, nil
		}
		return []string{*c.Text}, nil
	}
	var out []string
	for j, b := range c.Blocks {
		if b.Type != BlockText {
			return nil, invalid(fmt.Sprintf("%s.%d.type", path, j),
				fmt.Sprintf("%s.%d.type: system content must be text blocks, got %q", path, j, b.Type))
		}
		if b.Text != "" {
			out = append(out, b.Text)
		}
	}
	return out, nil
}

// serverBlock reports block types that belong to server-side tools: their
// history is meaningless to a neuron, so they are dropped with a warning.
func serverBlock(typ string) bool {
	switch typ {
	case BlockServerToolUse, "mcp_tool_use", "mcp_tool_result", "container_upload", "tool_reference":
		return true
	}
	return strings.HasSuffix(typ, "_tool_result")
}

func (t *translator) userMessage(c Content, path string) ([]openai.Message, error) {
	if c.IsNull() {
		return nil, invalid(path+".content", path+".content: Field required")
	}
	if c.Text != nil {
		return []openai.Message{{Role: openai.RoleUser, Content: openai.TextContent(*c.Text)}}, nil
	}
	var (
		tools []openai.Message
		parts []openai.ContentPart
		moved []openai.ContentPart // images from tool results
	)
	for j, b := range c.Blocks {
		bp := fmt.Sprintf("%s.content.%d", path, j)
		switch b.Type {
		case BlockToolResult:
			msg, imgs, err := toolResult(b, bp)
			if err != nil {
				return nil, err
			}
			tools = append(tools, msg)
			moved = append(moved, imgs...)
		case BlockToolUse:
			return nil, invalid(bp, bp+": tool_use blocks belong in assistant messages")
		case BlockThinking, BlockRedactedThinking:
			t.warn(bp, "%s blocks in a user message are ignored", b.Type)
		default:
			if serverBlock(b.Type) {
				t.warn(bp, "%s blocks of server-side tools are not supported and were dropped", b.Type)
				continue
			}
			got, err := contentParts(b, bp)
			if err != nil {
				return nil, err
			}
			parts = append(parts, got...)
		}
	}
	out := tools
	parts = append(moved, parts...)
	if len(parts) > 0 || len(tools) == 0 {
		out = append(out, openai.Message{Role: openai.RoleUser, Content: partsContent(parts)})
	}
	return out, nil
}

// partsContent keeps a lone text part as plain string content, which every
// chat template handles, and a list otherwise.
func partsContent(parts []openai.ContentPart) openai.MessageContent {
	if len(parts) == 1 && parts[0].Type == "text" {
		return openai.TextContent(parts[0].Text)
	}
	if parts == nil {
		parts = []openai.ContentPart{}
	}
	return openai.MessageContent{Parts: parts}
}

// contentParts translates a text, image, document or search_result block.
func contentParts(b ContentBlock, path string) ([]openai.ContentPart, error) {
	switch b.Type {
	case BlockText:
		return []openai.ContentPart{{Type: "text", Text: b.Text}}, nil
	case BlockImage:
		url, err := imageURL(b.Source, path)
		if err != nil {
			return nil, err
		}
		return []openai.ContentPart{{Type: "image_url", ImageURL: &openai.ImageURL{URL: url}}}, nil
	case BlockDocument:
		return documentParts(b, path)
	case BlockSearchResult:
		var sb strings.Builder
		sb.WriteString(b.Title)
		if b.SourceURL != "" {
			sb.WriteString(" (" + b.SourceURL + ")")
		}
		if b.Content != nil {
			for _, cb := range b.Content.AsBlocks() {
				if cb.Type == BlockText {
					sb.WriteString("\n" + cb.Text)
				}
			}
		}
		return []openai.ContentPart{{Type: "text", Text: strings.TrimSpace(sb.String())}}, nil
	case "":
		return nil, invalid(path+".type", path+".type: Field required")
	default:
		return nil, invalid(path+".type", fmt.Sprintf("%s.type: content blocks of type %q are not supported", path, b.Type))
	}
}

func imageURL(s *Source, path string) (string, error) {
	if s == nil {
		return "", invalid(path+".source", path+".source: Field required")
	}
	switch s.Type {
	case "base64":
		if !strings.HasPrefix(s.MediaType, "image/") {
			return "", invalid(path+".source.media_type",
				fmt.Sprintf("%s.source.media_type: an image media type is required, got %q", path, s.MediaType))
		}
		if s.Data == "" {
			return "", invalid(path+".source.data", path+".source.data: Field required")
		}
		return "data:" + s.MediaType + ";base64," + s.Data, nil
	case "url":
		if s.URL == "" {
			return "", invalid(path+".source.url", path+".source.url: Field required")
		}
		return s.URL, nil
	case "file":
		return "", invalid(path+".source", path+".source: file sources need the Files API, which this server does not offer; send the image as base64 or a URL")
	default:
		return "", invalid(path+".source.type", fmt.Sprintf("%s.source.type: unsupported image source type %q", path, s.Type))
	}
}

func documentParts(b ContentBlock, path string) ([]openai.ContentPart, error) {
	s := b.Source
	if s == nil {
		return nil, invalid(path+".source", path+".source: Field required")
	}
	header := ""
	if b.Title != "" {
		header = b.Title + "\n\n"
	}
	if b.Context != "" {
		header += b.Context + "\n\n"
	}
	switch s.Type {
	case "text":
		return []openai.ContentPart{{Type: "text", Text: header + s.Data}}, nil
	case "content":
		var parts []openai.ContentPart
		if header != "" {
			parts = append(parts, openai.ContentPart{Type: "text", Text: strings.TrimSuffix(header, "\n\n")})
		}
		if s.Content != nil {
			for j, cb := range s.Content.AsBlocks() {
				got, err := contentParts(cb, fmt.Sprintf("%s.source.content.%d", path, j))
				if err != nil {
					return nil, err
				}
				parts = append(parts, got...)
			}
		}
		return parts, nil
	default:
		return nil, invalid(path+".source",
			fmt.Sprintf("%s.source: %s document sources (PDF, URL or file) are not supported by this server; send the document as text", path, s.Type))
	}
}

// toolResult builds the tool message of a tool_result block, and returns
// the images it carried (a tool message holds text only).
func toolResult(b ContentBlock, path string) (openai.Message, []openai.ContentPart, error) {
	if b.ToolUseID == "" {
		return openai.Message{}, nil, invalid(path+".tool_use_id", path+".tool_use_id: Field required")
	}
	var texts []string
	var images []openai.ContentPart
	if b.Content != nil {
		for j, cb := range b.Content.AsBlocks() {
			cp := fmt.Sprintf("%s.content.%d", path, j)
			parts, err := contentParts(cb, cp)
			if err != nil {
				return openai.Message{}, nil, err
			}
			for _, p := range parts {
				if p.Type == "text" {
					texts = append(texts, p.Text)
				} else {
					images = append(images, p)
				}
			}
		}
	}
	text := strings.Join(texts, "\n")
	if b.IsError {
		text = "Error: " + text
	}
	if len(images) > 0 {
		images = append([]openai.ContentPart{{Type: "text", Text: fmt.Sprintf("(images returned by tool call %s)", b.ToolUseID)}}, images...)
	}
	return openai.Message{Role: openai.RoleTool, ToolCallID: b.ToolUseID, Content: openai.TextContent(text)}, images, nil
}

func (t *translator) assistantMessage(c Content, path string) (openai.Message, error) {
	msg := openai.Message{Role: openai.RoleAssistant}
	if c.IsNull() {
		return msg, invalid(path+".content", path+".content: Field required")
	}
	if c.Text != nil {
		msg.Content = openai.TextContent(*c.Text)
		return msg, nil
	}
	var text, reasoning []string
	for j, b := range c.Blocks {
		bp := fmt.Sprintf("%s.content.%d", path, j)
		switch b.Type {
		case BlockText:
			text = append(text, b.Text)
		case BlockThinking:
			if b.Thinking != "" {
				reasoning = append(reasoning, b.Thinking)
			}
		case BlockRedactedThinking:
			// Encrypted by Anthropic; nothing a neuron can read.
		case BlockToolUse:
			if b.ID == "" {
				return msg, invalid(bp+".id", bp+".id: Field required")
			}
			if b.Name == "" {
				return msg, invalid(bp+".name", bp+".name: Field required")
			}
			args, err := compactInput(b.Input)
			if err != nil {
				return msg, invalid(bp+".input", fmt.Sprintf("%s.input: %v", bp, err))
			}
			msg.ToolCalls = append(msg.ToolCalls, openai.ToolCall{
				ID: b.ID, Type: "function", Function: openai.FunctionCall{Name: b.Name, Arguments: args},
			})
		case BlockToolResult:
			return msg, invalid(bp, bp+": tool_result blocks belong in user messages")
		default:
			if serverBlock(b.Type) {
				t.warn(bp, "%s blocks of server-side tools are not supported and were dropped", b.Type)
				continue
			}
			return msg, invalid(bp+".type", fmt.Sprintf("%s.type: content blocks of type %q are not supported in assistant messages", bp, b.Type))
		}
	}
	if len(text) > 0 || len(msg.ToolCalls) == 0 {
		msg.Content = openai.TextContent(strings.Join(text, ""))
	}
	msg.ReasoningContent = strings.Join(reasoning, "\n")
	return msg, nil
}

// compactInput returns a tool_use input as the compact JSON string OpenAI
// carries in arguments; a missing input is {}.
func compactInput(in json.RawMessage) (string, error) {
	in = bytes.TrimSpace(in)
	if len(in) == 0 || bytes.Equal(in, []byte("null")) {
		return "{}", nil
	}
	if in[0] != '{' {
		return "", fmt.Errorf("must be an object")
	}
	var b bytes.Buffer
	if err := json.Compact(&b, in); err != nil {
		return "", err
	}
	return b.String(), nil
}

func (t *translator) tools(req *MessagesRequest, out *openai.ChatRequest) error {
	defined := map[string]bool{}
	dropped := map[string]bool{}
	for i, tool := range req.Tools {
		p := fmt.Sprintf("tools.%d", i)
		if !tool.IsCustom() {
			t.warn(p, "server tool %q (type %s) is not supported by this server and was dropped", tool.Name, tool.Type)
			dropped[tool.Name] = true
			continue
		}
		if !openai.ValidName(tool.Name) {
			return invalid(p+".name", fmt.Sprintf("%s.name: String should match pattern '^[a-zA-Z0-9_-]{1,64}$', got %q", p, tool.Name))
		}
		if defined[tool.Name] {
			return invalid(p+".name", fmt.Sprintf("%s.name: tool names must be unique, %q is defined twice", p, tool.Name))
		}
		schema := bytes.TrimSpace(tool.InputSchema)
		if len(schema) == 0 {
			return invalid(p+".input_schema", p+".input_schema: Field required")
		}
		if schema[0] != '{' {
			return invalid(p+".input_schema", p+".input_schema: must be a JSON Schema object")
		}
		defined[tool.Name] = true
		out.Tools = append(out.Tools, openai.Tool{Type: "function", Function: openai.FunctionDecl{
			Name: tool.Name, Description: tool.Description, Parameters: tool.InputSchema, Strict: tool.Strict,
		}})
	}
	tc := req.ToolChoice
	if tc == nil {
		return nil
	}
	if tc.DisableParallelToolUse != nil && *tc.DisableParallelToolUse {
		f := false
		out.ParallelToolCalls = &f
	}
	switch tc.Type {
	case "auto":
		if len(out.Tools) > 0 {
			out.ToolChoice = &openai.ToolChoice{Mode: "auto"}
		}
	case "none":
		out.ToolChoice = &openai.ToolChoice{Mode: "none"}
	case "any":
		if len(out.Tools) == 0 {
			return invalid("tool_choice", "tool_choice: 'any' requires at least one custom tool in tools")
		}
		out.ToolChoice = &openai.ToolChoice{Mode: "required"}
	case "tool":
		switch {
		case tc.Name == "":
			return invalid("tool_choice.name", "tool_choice.name: Field required")
		case dropped[tc.Name]:
			return invalid("tool_choice.name", fmt.Sprintf("tool_choice.name: tool %q is a server tool, which this server does not support", tc.Name))
		case !defined[tc.Name]:
			return invalid("tool_choice.name", fmt.Sprintf("tool_choice.name: tool %q is not defined in tools", tc.Name))
		}
		out.ToolChoice = &openai.ToolChoice{Mode: "function", Function: tc.Name}
	default:
		return invalid("tool_choice.type", fmt.Sprintf("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none', got %q", tc.Type))
	}
	return nil
}

func (t *translator) thinking(req *MessagesRequest, out *openai.ChatRequest) {
	th := req.Thinking
	if th == nil {
		return
	}
	switch th.Type {
	case "enabled":
		out.SetThinking(true)
		if th.BudgetTokens > 0 {
			b := th.BudgetTokens
			out.ThinkingBudgetTokens = &b
		}
	case "disabled":
		out.SetThinking(false)
	case "adaptive":
		// The model decides; its template default applies.
	default:
		t.warn("thinking.type", "thinking type %q is not supported; the model's default applies", th.Type)
	}
}

func (t *translator) outputConfig(req *MessagesRequest, out *openai.ChatRequest) error {
	if len(req.OutputConfig) == 0 {
		return nil
	}
	var oc struct {
		Effort any `json:"effort"`
		Format *struct {
			Type   string          `json:"type"`
			Schema json.RawMessage `json:"schema"`
		} `json:"format"`
	}
	if err := json.Unmarshal(req.OutputConfig, &oc); err != nil {
		t.warn("output_config", "output_config could not be read and was ignored: %v", err)
		return nil
	}
	if s, ok := oc.Effort.(string); ok && s != "" {
		out.ReasoningEffort = s
	}
	if oc.Format != nil {
		schema := bytes.TrimSpace(oc.Format.Schema)
		if oc.Format.Type != "json_schema" {
			t.warn("output_config.format.type", "output format %q is not supported and was ignored", oc.Format.Type)
			return nil
		}
		if len(schema) == 0 || schema[0] != '{' {
			return invalid("output_config.format.schema", "output_config.format.schema: a JSON Schema object is required")
		}
		strict := true
		out.ResponseFormat = &openai.ResponseFormat{Type: "json_schema", JSONSchema: &openai.JSONSchema{
			Name: "output", Schema: oc.Format.Schema, Strict: &strict,
		}}
	}
	return nil
}
