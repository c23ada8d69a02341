package chat

import (
	"errors"

	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// Temporary: the API above is committed first so the neuron can build
// against it; the implementation replaces this file.

var errNotYet = errors.New("chat: not implemented yet")

type template struct {
	source   string
	builtin  bool
	format   ToolFormat
	thinking bool
}

func forModel(engine.Info, string) (*Template, error)  { return nil, errNotYet }
func compile(string, SpecialTokens) (*template, error) { return nil, errNotYet }
func (t *template) render(RenderInput) (string, error) { return "", errNotYet }
func (t *template) prepare(*openai.ChatRequest, SchemaConverter) (*Prepared, error) {
	return nil, errNotYet
}
func chatGeneration(*openai.ChatRequest) (Generation, error) { return Generation{}, errNotYet }
func completionGeneration(*openai.CompletionRequest) (Generation, error) {
	return Generation{}, errNotYet
}

type parserState struct{ res Result }

func (s *parserState) init(ParserConfig)   {}
func (s *parserState) feed(string) []Event { return nil }
func (s *parserState) finish() []Event     { return nil }
func (s *parserState) result() Result      { return s.res }
