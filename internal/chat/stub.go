package chat

import (
	"errors"

	"github.com/helexa-ai/cortex/internal/wire/openai"
)

var errNotYet = errors.New("chat: not implemented yet")

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
