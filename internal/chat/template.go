package chat

import (
	"errors"
	"time"

	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// ChatML is the template override that selects the built-in ChatML
// template (Model.spec.engine.chatTemplate: chatml).
const ChatML = "chatml"

// ErrTemplate wraps every failure of a chat template that is not the
// request's fault: a template that does not compile, or one that fails while
// rendering. The neuron answers 500 for it (a template's own
// raise_exception, which templates use to reject a conversation, is a 400
// *openai.Error instead).
var ErrTemplate = errors.New("chat template failed")

// SpecialTokens are the model's special tokens as the template sees them.
type SpecialTokens struct {
	// BOS and EOS are the text of the beginning/end-of-sequence tokens
	// (bos_token and eos_token in the template).
	BOS, EOS string
	// AddBOS reports whether tokenizing with addSpecial adds BOS; a
	// rendered prompt that starts with BOS then has it stripped so the
	// model does not see it twice.
	AddBOS bool
}

// Template is a compiled chat template with what was detected about it.
// It is immutable and safe for concurrent use.
type Template struct {
	t *template
}

// ForModel returns the template for a loaded model: the override when set
// (ChatML selects the built-in template, anything else is Jinja source),
// else the GGUF's tokenizer.chat_template, else the built-in ChatML.
// Compiled templates are cached by source and special tokens, so calling it
// per request is cheap. Errors wrap ErrTemplate; the caller may fall back to
// ForModel(info, ChatML).
func ForModel(info engine.Info, override string) (*Template, error) {
	return forModel(info, override)
}

// NewTemplate compiles source ("" or ChatML: the built-in template) without
// caching. Errors wrap ErrTemplate.
func NewTemplate(source string, tokens SpecialTokens) (*Template, error) {
	t, err := compile(source, tokens)
	if err != nil {
		return nil, err
	}
	return &Template{t: t}, nil
}

// Builtin reports whether this is the built-in ChatML template.
func (t *Template) Builtin() bool { return t.t.builtin }

// ToolFormat is the tool-call format the template's model emits.
func (t *Template) ToolFormat() ToolFormat { return t.t.format }

// Thinking reports whether the template knows <think> blocks.
func (t *Template) Thinking() bool { return t.t.thinking }

// Source is the Jinja source of the template.
func (t *Template) Source() string { return t.t.source }

// RenderInput is what a template renders.
type RenderInput struct {
	Messages []openai.Message
	// Tools are rendered when non-empty.
	Tools []openai.Tool
	// AddGenerationPrompt ends the prompt with the assistant's turn header.
	AddGenerationPrompt bool
	// Kwargs are extra template variables (chat_template_kwargs, such as
	// enable_thinking); they cannot replace the standard ones.
	Kwargs map[string]any
	// Now is what strftime_now formats (zero: the current time).
	Now time.Time
	// Images, set for a vision model, admits image parts within these
	// limits: each renders as ImageMarker. Nil refuses them.
	Images *ImageLimits
}

// Render renders the conversation to prompt text. Request problems
// (image parts, a template's raise_exception) are *openai.Error values;
// other failures wrap ErrTemplate.
func (t *Template) Render(in RenderInput) (string, error) {
	return t.t.render(in)
}
