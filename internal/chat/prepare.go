package chat

import (
	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// MaxForcedCalls bounds the calls a forced tool_choice grammar allows when
// parallel_tool_calls is on, so a model cannot loop on calls until the
// token limit.
const MaxForcedCalls = 8

// SchemaConverter converts a JSON schema to a GBNF grammar whose start rule
// is root. engine.Model implements it (through llama.cpp).
type SchemaConverter interface {
	SchemaToGrammar(schema []byte) (string, error)
}

// SchemaConverterFunc adapts a function to SchemaConverter.
type SchemaConverterFunc func(schema []byte) (string, error)

// SchemaToGrammar calls f.
func (f SchemaConverterFunc) SchemaToGrammar(schema []byte) (string, error) { return f(schema) }

// Generation holds the decoding settings of a request that do not depend
// on the template.
type Generation struct {
	// MaxTokens bounds the completion (0: until the context is full).
	MaxTokens int
	Sampling  engine.Sampling
	// Stop are the client's stop sequences, then any the template needs.
	Stop        []string
	Logprobs    bool
	TopLogprobs int
}

// ChatGeneration maps a chat request's sampling fields to engine settings.
// Invalid values are 400 *openai.Error values naming the field.
func ChatGeneration(req *openai.ChatRequest) (Generation, error) {
	return chatGeneration(req)
}

// CompletionGeneration maps a legacy completions request's sampling fields
// to engine settings, with the same defaults as chat.
func CompletionGeneration(req *openai.CompletionRequest) (Generation, error) {
	return completionGeneration(req)
}

// Prepared is a chat request made ready for the engine.
type Prepared struct {
	// Prompt is the rendered conversation. Tokenize it with addSpecial and
	// parseSpecial both true.
	Prompt string
	// Grammar is the GBNF grammar that constrains decoding ("" for none).
	Grammar string
	Generation
	// Parse configures the output parser.
	Parse ParserConfig
	// Images are the request's pictures, in the order of the
	// ImageMarkers in Prompt (vision models only); tokenize such a prompt
	// with TokenizePrompt.
	Images []engine.Image
}

// Options tune Prepare.
type Options struct {
	// Images, set for a vision model, admits image parts within these
	// limits. Nil refuses them with a 400.
	Images *ImageLimits
}

// Prepare validates req, renders its messages (and tools) with the template
// and derives the grammar, stops and sampling. conv converts JSON schemas
// (tool parameters, response_format) to grammar; it may be nil when the
// request needs none. Client errors are 400 *openai.Error values; template
// failures wrap ErrTemplate.
func (t *Template) Prepare(req *openai.ChatRequest, conv SchemaConverter) (*Prepared, error) {
	return t.t.prepare(req, conv, Options{})
}

// PrepareWith is Prepare with options (images for a vision model).
func (t *Template) PrepareWith(req *openai.ChatRequest, conv SchemaConverter, opts Options) (*Prepared, error) {
	return t.t.prepare(req, conv, opts)
}

// GenerateRequest is the engine request for the tokenized prompt.
func (p *Prepared) GenerateRequest(prompt []int) engine.GenerateRequest {
	return engine.GenerateRequest{
		Prompt:      prompt,
		Images:      p.Images,
		MaxTokens:   p.MaxTokens,
		Sampling:    p.Sampling,
		Grammar:     p.Grammar,
		Stop:        p.Stop,
		Logprobs:    p.Logprobs,
		TopLogprobs: p.TopLogprobs,
	}
}

// NewParser returns a parser for this request's output.
func (p *Prepared) NewParser() *Parser { return NewParser(p.Parse) }
