package chat

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ardanlabs/jinja"

	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// template is the compiled form behind Template.
type template struct {
	source   string
	builtin  bool
	format   ToolFormat
	thinking bool
	tokens   SpecialTokens
	jt       *jinja.Template

	// stringArgs: the template concatenates function.arguments as text
	// (DeepSeek style) instead of applying tojson to an object.
	stringArgs bool
	// shortIDs: the template insists on 9-character alphanumeric tool-call
	// ids (Mistral); other ids in the history are mapped onto such ids.
	shortIDs bool
}

// templateCacheSize bounds the cache; a neuron holds a handful of models,
// so the bound only matters against a stream of distinct overrides.
const templateCacheSize = 64

var templateCache = struct {
	sync.Mutex
	m map[[32]byte]*Template
}{m: map[[32]byte]*Template{}}

func forModel(info engine.Info, override string) (*Template, error) {
	source := info.ChatTemplate
	if override != "" {
		source = override
	}
	tokens := SpecialTokens{BOS: info.BOS, EOS: info.EOS, AddBOS: info.AddBOS}
	key := cacheKey(source, tokens)
	templateCache.Lock()
	t, ok := templateCache.m[key]
	templateCache.Unlock()
	if ok {
		return t, nil
	}
	t, err := NewTemplate(source, tokens)
	if err != nil {
		return nil, err
	}
	templateCache.Lock()
	if len(templateCache.m) >= templateCacheSize {
		clear(templateCache.m)
	}
	templateCache.m[key] = t
	templateCache.Unlock()
	return t, nil
}

func cacheKey(source string, tok SpecialTokens) [32]byte {
	h := sha256.New()
	addBOS := "0"
	if tok.AddBOS {
		addBOS = "1"
	}
	for _, s := range []string{source, tok.BOS, tok.EOS, addBOS} {
		fmt.Fprintf(h, "%d:%s", len(s), s)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func compile(source string, tokens SpecialTokens) (*template, error) {
	t := &template{source: source, tokens: tokens}
	if strings.TrimSpace(source) == "" || strings.TrimSpace(source) == ChatML {
		t.source = builtinChatML
		t.builtin = true
	}
	norm, err := normalizeTemplate(t.source)
	if err != nil {
		return nil, fmt.Errorf("%w: compiling: %w", ErrTemplate, err)
	}
	jt, err := jinja.Compile(norm)
	if err != nil {
		return nil, fmt.Errorf("%w: compiling: %w", ErrTemplate, err)
	}
	t.jt = jt
	t.format = detectToolFormat(t.source)
	t.thinking = strings.Contains(t.source, "<think>")
	t.probe()
	return t, nil
}

// detectToolFormat guesses how the model writes calls from the markers its
// template renders for calls in the history.
func detectToolFormat(src string) ToolFormat {
	switch {
	case strings.Contains(src, "<tool_call>"):
		return ToolFormatHermes
	case strings.Contains(src, "[TOOL_CALLS]"):
		return ToolFormatMistral
	case strings.Contains(src, "<|python_tag|>"), strings.Contains(src, "ipython"):
		return ToolFormatLlama3
	default:
		return ToolFormatHermes
	}
}

// probe renders a conversation with a tool call to learn what the template
// expects of function.arguments (an object for tojson, or a JSON string
// it concatenates) and of tool-call ids, as transformers users learn it
// from each model card. The first combination that renders the arguments
// as JSON wins; templates that never render calls keep the defaults.
func (t *template) probe() {
	for _, c := range []struct{ stringArgs, shortIDs bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		t.stringArgs, t.shortIDs = c.stringArgs, c.shortIDs
		out, err := t.render(RenderInput{Messages: probeMessages, Tools: probeTools, AddGenerationPrompt: true})
		if err == nil && strings.Contains(out, `"probe_arg"`) && strings.Contains(out, "probe_value") {
			return
		}
	}
	t.stringArgs, t.shortIDs = false, false
}

var (
	probeTools = []openai.Tool{{Type: "function", Function: openai.FunctionDecl{
		Name:        "probe_fn",
		Description: "Probe.",
		Parameters:  json.RawMessage(`{"type":"object","properties":{"probe_arg":{"type":"string"}},"required":["probe_arg"]}`),
	}}}
	probeMessages = []openai.Message{
		{Role: openai.RoleUser, Content: openai.TextContent("probe question")},
		{Role: openai.RoleAssistant, ToolCalls: []openai.ToolCall{{ID: "call_probe_0001", Type: "function",
			Function: openai.FunctionCall{Name: "probe_fn", Arguments: `{"probe_arg":"probe_value"}`}}}},
		{Role: openai.RoleTool, ToolCallID: "call_probe_0001", Content: openai.TextContent("probe result")},
	}
)

// templateException is a template's raise_exception: the template refuses
// the conversation, which is the request's fault.
type templateException struct{ msg string }

func (e *templateException) Error() string { return e.msg }

func (t *template) render(in RenderInput) (string, error) {
	out, _, err := t.renderImages(in)
	return out, err
}

// renderImages renders the conversation and returns the images of its
// messages, in the order of the ImageMarkers that stand for them.
func (t *template) renderImages(in RenderInput) (string, []engine.Image, error) {
	var images []engine.Image
	msgs, err := t.messagesValue(in.Messages, in.Images, &images)
	if err != nil {
		return "", nil, err
	}
	now := in.Now
	if now.IsZero() {
		now = time.Now()
	}
	ctx := map[string]jinja.Value{}
	for k, v := range in.Kwargs {
		ctx[k] = goValue(v)
	}
	ctx["messages"] = msgs
	ctx["tools"] = jinja.None()
	if len(in.Tools) > 0 {
		ctx["tools"] = toolsValue(in.Tools)
	}
	ctx["add_generation_prompt"] = jinja.NewBool(in.AddGenerationPrompt)
	ctx["bos_token"] = jinja.NewString(t.tokens.BOS)
	ctx["eos_token"] = jinja.NewString(t.tokens.EOS)
	out, err := t.exec(ctx, now)
	if err != nil {
		return "", nil, err
	}
	// Tokenizing with addSpecial adds BOS already; a template that writes
	// it too would give the model two.
	if t.tokens.AddBOS && t.tokens.BOS != "" {
		out = strings.TrimPrefix(out, t.tokens.BOS)
	}
	if in.Images != nil {
		// A marker the client typed, or a template that drops or repeats
		// messages, would pair images with the wrong places.
		if n := strings.Count(out, ImageMarker); n != len(images) {
			return "", nil, openai.InvalidRequest("messages", CodeInvalidImage,
				"The conversation renders %d image places for %d images; the text must not contain %q.", n, len(images), ImageMarker)
		}
	}
	return out, images, nil
}

// exec renders with ctx plus the functions transformers provides.
func (t *template) exec(ctx map[string]jinja.Value, now time.Time) (string, error) {
	ctx["raise_exception"] = jinja.NewCallable("raise_exception", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		msg := "the chat template refused the conversation"
		if len(args) > 0 && args[0].IsString() {
			msg = args[0].AsString()
		}
		return jinja.Undefined(), &templateException{msg: msg}
	})
	ctx["strftime_now"] = jinja.NewCallable("strftime_now", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		format := "%Y-%m-%d"
		if len(args) > 0 && args[0].IsString() {
			format = args[0].AsString()
		}
		return jinja.NewString(strftime(now, format)), nil
	})
	ctx[tojsonFilter] = jinja.NewCallable("tojson", filterToJSON)
	out, err := t.jt.RenderValues(ctx)
	if err != nil {
		var te *templateException
		if errors.As(err, &te) {
			return "", openai.InvalidRequest("messages", openai.CodeInvalidValue, "The model's chat template rejected the conversation: %s", te.msg)
		}
		return "", fmt.Errorf("%w: rendering: %w", ErrTemplate, err)
	}
	return out, nil
}

// messagesValue builds the messages as transformers passes them: content a
// string (or None), tool_calls and other optional keys present only when
// set, because templates test `'tool_calls' in message`.
func (t *template) messagesValue(msgs []openai.Message, vision *ImageLimits, images *[]engine.Image) (jinja.Value, error) {
	items := make([]jinja.Value, 0, len(msgs))
	for i, m := range msgs {
		d := jinja.NewDict()
		dd := d.AsDict()
		role := m.Role
		if role == openai.RoleDeveloper {
			role = openai.RoleSystem // templates predate the developer role
		}
		dd.Set("role", jinja.NewString(role))
		content, err := textContent(m.Content, i, vision, images)
		if err != nil {
			return jinja.Value{}, err
		}
		if m.Content.IsNull() {
			dd.Set("content", jinja.None())
		} else {
			dd.Set("content", jinja.NewString(content))
		}
		if m.Name != "" {
			dd.Set("name", jinja.NewString(m.Name))
		}
		if m.ReasoningContent != "" {
			dd.Set("reasoning_content", jinja.NewString(m.ReasoningContent))
		}
		if len(m.ToolCalls) > 0 {
			calls := make([]jinja.Value, 0, len(m.ToolCalls))
			for _, tc := range m.ToolCalls {
				calls = append(calls, t.toolCallValue(tc))
			}
			dd.Set("tool_calls", jinja.NewList(calls))
		}
		if m.ToolCallID != "" {
			dd.Set("tool_call_id", jinja.NewString(t.mapID(m.ToolCallID)))
		}
		items = append(items, d)
	}
	return jinja.NewList(items), nil
}

func (t *template) toolCallValue(tc openai.ToolCall) jinja.Value {
	fn := jinja.NewDict()
	fn.AsDict().Set("name", jinja.NewString(tc.Function.Name))
	args := strings.TrimSpace(tc.Function.Arguments)
	if args == "" {
		args = "{}"
	}
	switch v, err := jsonValue([]byte(args)); {
	case t.stringArgs || err != nil:
		// Invalid JSON from a client is passed on as the text it sent
		// rather than refused: the model sees what it saw last turn.
		fn.AsDict().Set("arguments", jinja.NewString(args))
	default:
		fn.AsDict().Set("arguments", v)
	}
	typ := tc.Type
	if typ == "" {
		typ = "function"
	}
	d := jinja.NewDict()
	d.AsDict().Set("id", jinja.NewString(t.mapID(tc.ID)))
	d.AsDict().Set("type", jinja.NewString(typ))
	d.AsDict().Set("function", fn)
	return d
}

// mapID maps a tool-call id onto 9 alphanumerics for templates that insist
// on them; the mapping is a hash, so a call and its result still match.
func (t *template) mapID(id string) string {
	if !t.shortIDs || isShortID(id) {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	b := make([]byte, 9)
	for i := range b {
		b[i] = idAlphabet[int(sum[i])%len(idAlphabet)]
	}
	return string(b)
}

func isShortID(id string) bool {
	if len(id) != 9 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !strings.ContainsRune(idAlphabet, rune(id[i])) {
			return false
		}
	}
	return true
}

// textContent flattens a message's content to text. For a vision model
// (vision set) an image part becomes ImageMarker and its decoded image is
// appended to images; any other part, and images for a text-only model,
// are refused rather than silently dropped.
func textContent(c openai.MessageContent, msg int, vision *ImageLimits, images *[]engine.Image) (string, error) {
	if c.Text != nil {
		return *c.Text, nil
	}
	var b strings.Builder
	for j, p := range c.Parts {
		param := fmt.Sprintf("messages[%d].content[%d]", msg, j)
		switch p.Type {
		case "text", "input_text", "output_text":
			b.WriteString(p.Text)
		case "image_url", "input_image", "image":
			if vision == nil {
				return "", openai.Unsupported(param, "This model does not accept images: it reads text only.")
			}
			if p.ImageURL == nil {
				return "", openai.MissingParameter(param + ".image_url")
			}
			im, err := DecodeImage(p.ImageURL.URL, *vision, param+".image_url")
			if err != nil {
				return "", err
			}
			*images = append(*images, im)
			b.WriteString(ImageMarker)
		case "input_audio", "audio":
			return "", openai.Unsupported(param, "This model does not accept audio: it reads text only.")
		case "file", "input_file":
			return "", openai.Unsupported(param, "This model does not accept files: it reads text only.")
		default:
			return "", openai.Unsupported(param+".type", "Content parts of type '%s' are not supported; use 'text'.", p.Type)
		}
	}
	return b.String(), nil
}

// toolsValue builds tools as transformers passes them: {type, function:
// {name, description, parameters}}, with the schema's key order kept.
func toolsValue(tools []openai.Tool) jinja.Value {
	items := make([]jinja.Value, 0, len(tools))
	for _, tool := range tools {
		fn := jinja.NewDict()
		fd := fn.AsDict()
		fd.Set("name", jinja.NewString(tool.Function.Name))
		if tool.Function.Description != "" {
			fd.Set("description", jinja.NewString(tool.Function.Description))
		}
		params, err := jsonValue(tool.Function.Parameters)
		if len(bytes.TrimSpace(tool.Function.Parameters)) == 0 || err != nil {
			params, _ = jsonValue([]byte(`{"type": "object", "properties": {}}`))
		}
		fd.Set("parameters", params)
		typ := tool.Type
		if typ == "" {
			typ = "function"
		}
		d := jinja.NewDict()
		d.AsDict().Set("type", jinja.NewString(typ))
		d.AsDict().Set("function", fn)
		items = append(items, d)
	}
	return jinja.NewList(items)
}

// goValue converts a decoded JSON value (chat_template_kwargs) for the
// template. encoding/json makes every number a float64; a whole number is
// given as an integer, as Python's json would have read it.
func goValue(v any) jinja.Value {
	switch v := v.(type) {
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return jinja.NewInt(int64(v))
		}
	case []any:
		items := make([]jinja.Value, len(v))
		for i, it := range v {
			items[i] = goValue(it)
		}
		return jinja.NewList(items)
	case map[string]any:
		d := jinja.NewDict()
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			d.AsDict().Set(k, goValue(v[k]))
		}
		return d
	}
	return jinja.FromGoValue(v)
}

// jsonValue decodes JSON into template values, keeping object key order
// (tojson must render a schema as the client wrote it) and integers as
// integers.
func jsonValue(data []byte) (jinja.Value, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return jinja.Value{}, err
	}
	if _, err := dec.Token(); err == nil {
		return jinja.Value{}, errors.New("trailing data after JSON value")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder) (jinja.Value, error) {
	tok, err := dec.Token()
	if err != nil {
		return jinja.Value{}, err
	}
	switch tok := tok.(type) {
	case json.Delim:
		switch tok {
		case '{':
			d := jinja.NewDict()
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return jinja.Value{}, err
				}
				key, _ := kt.(string)
				v, err := decodeValue(dec)
				if err != nil {
					return jinja.Value{}, err
				}
				d.AsDict().Set(key, v)
			}
			if _, err := dec.Token(); err != nil {
				return jinja.Value{}, err
			}
			return d, nil
		case '[':
			var items []jinja.Value
			for dec.More() {
				v, err := decodeValue(dec)
				if err != nil {
					return jinja.Value{}, err
				}
				items = append(items, v)
			}
			if _, err := dec.Token(); err != nil {
				return jinja.Value{}, err
			}
			if items == nil {
				items = []jinja.Value{}
			}
			return jinja.NewList(items), nil
		}
		return jinja.Value{}, fmt.Errorf("unexpected %v", tok)
	default:
		return jinja.FromGoValue(tok), nil
	}
}
