package chat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// thinkMode is how a grammar treats a leading think block.
type thinkMode int

const (
	thinkNone     thinkMode = iota // the template does not think
	thinkOptional                  // the model may open a block first
	thinkOpen                      // the prompt opened a block; the model must close it
)

func (t *template) prepare(req *openai.ChatRequest, conv SchemaConverter, opts Options) (*Prepared, error) {
	if req == nil {
		return nil, errors.New("preparing chat request: nil request")
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	gen, err := chatGeneration(req)
	if err != nil {
		return nil, err
	}

	mode := "none"
	if len(req.Tools) > 0 {
		mode = "auto"
	}
	var forced []int // indexes of the tools a forced call may use
	if req.ToolChoice != nil {
		mode = req.ToolChoice.Mode
	}
	switch mode {
	case "required":
		for i := range req.Tools {
			forced = append(forced, i)
		}
	case "function":
		for i, tool := range req.Tools {
			if tool.Function.Name == req.ToolChoice.Function {
				forced = append(forced, i)
			}
		}
	}
	if (mode == "required" || mode == "function") && len(forced) == 0 {
		return nil, openai.InvalidRequest("tool_choice", openai.CodeInvalidValue, "Invalid 'tool_choice': no tool in 'tools' can be called.")
	}

	in := RenderInput{Messages: req.Messages, AddGenerationPrompt: true, Kwargs: templateKwargs(req), Images: opts.Images}
	if mode != "none" {
		in.Tools = req.Tools
	}
	prompt, images, err := t.renderImages(in)
	if err != nil {
		return nil, err
	}

	p := &Prepared{Prompt: prompt, Generation: gen, Images: images}
	tail := strings.TrimRightFunc(prompt, unicode.IsSpace)
	think := thinkNone
	switch {
	case strings.HasSuffix(tail, "<think>"):
		think = thinkOpen
	case strings.HasSuffix(tail, "</think>"):
		// The template closed the block itself (thinking switched off).
	case t.thinking:
		think = thinkOptional
	}

	parallel := req.ParallelToolCalls == nil || *req.ParallelToolCalls
	p.Parse = ParserConfig{Format: t.format, InReasoning: think == thinkOpen}
	if t.shortIDs {
		p.Parse.NewID = newShortID
	}
	if mode != "none" {
		for _, tool := range req.Tools {
			p.Parse.Tools = append(p.Parse.Tools, tool.Function.Name)
		}
		if !parallel {
			p.Parse.MaxCalls = 1
		}
	}

	spec := grammarSpec{format: t.format, think: think, maxCalls: 1}
	if parallel && mode == "required" {
		// A named function is called once; "required" may call several
		// tools when parallel calls are on.
		spec.maxCalls = MaxForcedCalls
	}
	switch {
	case len(forced) > 0:
		spec.calls = toolSchemas(req.Tools, forced)
		p.Parse.MaxCalls = spec.maxCalls
	case req.ResponseFormat != nil && req.ResponseFormat.Type != "text":
		spec.content = req.ResponseFormat.Type
		if req.ResponseFormat.JSONSchema != nil {
			spec.contentSchema = req.ResponseFormat.JSONSchema.Schema
		}
		if mode == "auto" {
			// Tools stay callable: the grammar allows the JSON answer
			// or calls.
			all := make([]int, len(req.Tools))
			for i := range all {
				all[i] = i
			}
			spec.calls = toolSchemas(req.Tools, all)
		}
	case mode == "auto" && !parallel && t.format == ToolFormatHermes:
		// One call at most: stop at the end of the first; the parser
		// accepts a call whose closing tag the stop swallowed.
		p.Stop = append(p.Stop, "</tool_call>")
	}
	if spec.calls != nil || spec.content != "" {
		p.Grammar, err = spec.build(conv)
		if err != nil {
			return nil, err
		}
	}
	if t.builtin {
		// A model without a template has no end-of-turn token for ChatML;
		// without these stops it would write the next turns itself.
		p.Stop = append(p.Stop, "<|im_end|>", "<|im_start|>")
	}
	return p, nil
}

// templateKwargs are the extra template variables of a request.
func templateKwargs(req *openai.ChatRequest) map[string]any {
	if len(req.ChatTemplateKwargs) == 0 && req.ReasoningEffort == "" {
		return nil
	}
	kw := make(map[string]any, len(req.ChatTemplateKwargs)+1)
	for k, v := range req.ChatTemplateKwargs {
		kw[k] = v
	}
	if _, ok := kw["reasoning_effort"]; !ok && req.ReasoningEffort != "" {
		kw["reasoning_effort"] = req.ReasoningEffort // gpt-oss style templates read it
	}
	return kw
}

// toolSchema is a callable tool for a grammar.
type toolSchema struct {
	name   string
	params json.RawMessage
	param  string // the request field holding params, for errors
}

func toolSchemas(tools []openai.Tool, idx []int) []toolSchema {
	out := make([]toolSchema, 0, len(idx))
	for _, i := range idx {
		out = append(out, toolSchema{
			name:   tools[i].Function.Name,
			params: tools[i].Function.Parameters,
			param:  fmt.Sprintf("tools[%d].function.parameters", i),
		})
	}
	return out
}

// grammarSpec describes the output a grammar allows.
type grammarSpec struct {
	format   ToolFormat
	think    thinkMode
	calls    []toolSchema // callable tools (nil: no calls)
	maxCalls int
	// content is "json_object" or "json_schema" for a constrained answer
	// ("" when only calls are allowed).
	content       string
	contentSchema json.RawMessage
}

func (s grammarSpec) build(conv SchemaConverter) (string, error) {
	g := &gbnf{}
	var body []string
	if s.content != "" {
		rule, err := schemaRule(g, conv, s.contentSchema, "schema-", "response_format.json_schema.schema")
		if err != nil {
			return "", err
		}
		body = append(body, rule)
	}
	if len(s.calls) > 0 {
		calls, err := s.callRules(g, conv)
		if err != nil {
			return "", err
		}
		body = append(body, calls)
	}
	root := strings.Join(body, " | ")
	if len(body) > 1 {
		root = "( " + root + " )"
	}
	switch s.think {
	case thinkOptional:
		notContainingRules(g, "think-body", "</think>")
		g.rule("think-ws", `[ \t\n]{0,4}`)
		root = `( "<think>" think-body "</think>" think-ws )? ` + root
	case thinkOpen:
		notContainingRules(g, "think-body", "</think>")
		g.rule("think-ws", `[ \t\n]{0,4}`)
		root = `think-body "</think>" think-ws ` + root
	}
	return "root ::= " + root + "\n" + g.String(), nil
}

// callRules adds the rules of the calls and returns the expression of a
// run of 1..maxCalls calls in the model's format.
func (s grammarSpec) callRules(g *gbnf, conv SchemaConverter) (string, error) {
	argsKey := "arguments"
	if s.format == ToolFormatLlama3 {
		argsKey = "parameters"
	}
	alts := make([]string, 0, len(s.calls))
	for i, c := range s.calls {
		args, err := schemaRule(g, conv, c.params, fmt.Sprintf("tool%d-", i), c.param)
		if err != nil {
			return "", err
		}
		name, _ := json.Marshal(c.name)
		rule := fmt.Sprintf("call-%d", i)
		g.rule(rule, fmt.Sprintf(`%s %s "}"`, lit(`{"name": `+string(name)+`, "`+argsKey+`": `), args))
		alts = append(alts, rule)
	}
	g.rule("call", strings.Join(alts, " | "))
	more := ""
	switch s.format {
	case ToolFormatMistral:
		if s.maxCalls > 1 {
			more = fmt.Sprintf(` ( ", " call ){0,%d}`, s.maxCalls-1)
		}
		return `"[TOOL_CALLS]"? "[" call` + more + ` "]"`, nil
	case ToolFormatLlama3:
		if s.maxCalls > 1 {
			more = fmt.Sprintf(` ( "\n" call ){0,%d}`, s.maxCalls-1)
		}
		return "call" + more, nil
	default:
		g.rule("call-block", `"<tool_call>\n" call "\n</tool_call>"`)
		if s.maxCalls > 1 {
			more = fmt.Sprintf(` ( "\n" call-block ){0,%d}`, s.maxCalls-1)
		}
		return "call-block" + more, nil
	}
}

// maxSchemaDepth bounds the JSON nesting of a schema turned into a
// grammar. The converter's rule names grow with the depth, so a schema a
// few thousand levels deep (40 kB) costs seconds of CPU and megabytes of
// grammar before it fails; real schemas stay within a few dozen levels.
const maxSchemaDepth = 128

// jsonDepth is the deepest nesting of objects and arrays in data.
func jsonDepth(data []byte) int {
	depth, deepest, inString := 0, 0, false
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}

// schemaRule adds the rules for a JSON schema under prefix and returns the
// rule to reference. No schema, or no converter, means any JSON object.
func schemaRule(g *gbnf, conv SchemaConverter, schema json.RawMessage, prefix, param string) (string, error) {
	schema = bytes.TrimSpace(schema)
	if len(schema) == 0 || bytes.Equal(schema, []byte("null")) || conv == nil {
		_, object := jsonRules(g, "json-")
		return object, nil
	}
	if d := jsonDepth(schema); d > maxSchemaDepth {
		return "", openai.InvalidRequest(param, openai.CodeInvalidValue, "Invalid '%s': the JSON schema is nested %d levels deep; at most %d are supported.", param, d, maxSchemaDepth)
	}
	grammar, err := conv.SchemaToGrammar(schema)
	if err != nil {
		return "", openai.InvalidRequest(param, openai.CodeInvalidValue, "Invalid '%s': the JSON schema cannot be turned into a grammar: %v", param, err)
	}
	renamed, err := prefixRules(grammar, prefix)
	if err != nil {
		return "", fmt.Errorf("converting %s: %w", param, err)
	}
	for _, line := range strings.SplitAfter(strings.TrimRight(renamed, "\n"), "\n") {
		g.b.WriteString(line)
	}
	g.b.WriteString("\n")
	return prefix + "root", nil
}
