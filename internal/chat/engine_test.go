package chat

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/engine/llamacpp"
	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// These tests run the package against llama.cpp on stories260K, a tiny
// story model with no chat template that knows nothing of tools or JSON:
// whatever structure comes out is the grammar's doing.

var (
	storiesOnce  sync.Once
	storiesModel engine.Model
	storiesErr   error
)

func stories(t *testing.T) engine.Model {
	t.Helper()
	path := filepath.Join("..", "..", "..", "shared", "models", "stories260K.gguf")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the shared test model is missing: %v", err)
	}
	storiesOnce.Do(func() {
		e, err := llamacpp.New(llamacpp.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			storiesErr = err
			return
		}
		storiesModel, storiesErr = e.Load(context.Background(), engine.LoadParams{Path: path, ContextLength: 2048, Parallel: 2})
	})
	if storiesErr != nil {
		t.Fatalf("loading stories260K: %v", storiesErr)
	}
	return storiesModel
}

// generateChat runs a prepared request to the end, feeding the parser as
// text streams, and checks that the events agree with the result.
func generateChat(t *testing.T, m engine.Model, p *Prepared) (Result, engine.Result) {
	t.Helper()
	toks, err := m.Tokenize(p.Prompt, true, true)
	if err != nil {
		t.Fatal(err)
	}
	parser := p.NewParser()
	var evs []Event
	res, err := m.Generate(context.Background(), p.GenerateRequest(toks), func(c engine.Chunk) error {
		evs = append(evs, parser.Feed(c.Text)...)
		return nil
	})
	if err != nil {
		t.Fatalf("generate: %v\ngrammar:\n%s", err, p.Grammar)
	}
	evs = append(evs, parser.Finish()...)
	out := parser.Result()
	checkEvents(t, mergeEvents(evs), out)
	return out, res
}

func TestStoriesForcedToolCall(t *testing.T) {
	m := stories(t)
	tmpl, err := ForModel(m.Info(), "")
	if err != nil {
		t.Fatal(err)
	}
	for seed := int64(1); seed <= 4; seed++ {
		req := chatRequest(withTools(&openai.ToolChoice{Mode: "function", Function: "get_weather"}), func(r *openai.ChatRequest) {
			r.Seed = &seed
			r.MaxTokens = ptr(400)
		})
		p, err := tmpl.Prepare(req, m)
		if err != nil {
			t.Fatal(err)
		}
		out, res := generateChat(t, m, p)
		if len(out.ToolCalls) != 1 || out.Content != "" {
			t.Fatalf("seed %d: want one call and no content, got %+v (finish %s)", seed, out, res.FinishReason)
		}
		c := out.ToolCalls[0]
		var args map[string]any
		if c.Function.Name != "get_weather" || json.Unmarshal([]byte(c.Function.Arguments), &args) != nil {
			t.Fatalf("seed %d: call %+v", seed, c)
		}
		if city, ok := args["city"].(string); !ok || len(args) != 1 {
			t.Errorf("seed %d: arguments %s do not match {city: string}", seed, c.Function.Arguments)
		} else {
			t.Logf("seed %d: get_weather(city=%q), %d tokens", seed, city, res.CompletionTokens)
		}
		if got := out.FinishReason(res.FinishReason); got != "tool_calls" {
			t.Errorf("seed %d: finish_reason %q", seed, got)
		}
	}
}

func TestStoriesRequiredParallelCalls(t *testing.T) {
	m := stories(t)
	tmpl, _ := ForModel(m.Info(), "")
	req := chatRequest(withTools(&openai.ToolChoice{Mode: "required"}), func(r *openai.ChatRequest) {
		r.Seed, r.MaxTokens = ptr[int64](7), ptr(600)
	})
	p, err := tmpl.Prepare(req, m)
	if err != nil {
		t.Fatal(err)
	}
	out, res := generateChat(t, m, p)
	if len(out.ToolCalls) == 0 || len(out.ToolCalls) > MaxForcedCalls || out.Content != "" {
		t.Fatalf("got %+v (finish %s)", out, res.FinishReason)
	}
	for _, c := range out.ToolCalls {
		if (c.Function.Name != "get_weather" && c.Function.Name != "get_time") || !json.Valid([]byte(c.Function.Arguments)) {
			t.Errorf("call %+v", c)
		}
	}
}

func TestStoriesJSONSchema(t *testing.T) {
	m := stories(t)
	tmpl, _ := ForModel(m.Info(), "")
	schema := json.RawMessage(`{"type":"object","properties":{"name":{"type":"string","maxLength":24},"age":{"type":"integer","minimum":0,"maximum":120}},"required":["name","age"],"additionalProperties":false}`)
	for seed := int64(1); seed <= 3; seed++ {
		req := chatRequest(func(r *openai.ChatRequest) {
			r.Seed, r.MaxTokens = &seed, ptr(300)
			r.ResponseFormat = &openai.ResponseFormat{Type: "json_schema", JSONSchema: &openai.JSONSchema{Name: "person", Schema: schema}}
		})
		p, err := tmpl.Prepare(req, m)
		if err != nil {
			t.Fatal(err)
		}
		out, res := generateChat(t, m, p)
		var v struct {
			Name *string `json:"name"`
			Age  *int    `json:"age"`
		}
		dec := json.NewDecoder(strings.NewReader(out.Content))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil || v.Name == nil || v.Age == nil || len(*v.Name) > 24*4 || *v.Age < 0 || *v.Age > 120 {
			t.Fatalf("seed %d: content %q (finish %s) does not match the schema: %v", seed, out.Content, res.FinishReason, err)
		}
		t.Logf("seed %d: %s", seed, out.Content)
	}
}

func TestStoriesJSONObject(t *testing.T) {
	m := stories(t)
	tmpl, _ := ForModel(m.Info(), "")
	for seed := int64(1); seed <= 3; seed++ {
		req := chatRequest(func(r *openai.ChatRequest) {
			r.Seed, r.MaxTokens = &seed, ptr(120)
			r.ResponseFormat = &openai.ResponseFormat{Type: "json_object"}
		})
		p, err := tmpl.Prepare(req, m)
		if err != nil {
			t.Fatal(err)
		}
		out, res := generateChat(t, m, p)
		if res.FinishReason == engine.FinishStop {
			var v map[string]any
			if err := json.Unmarshal([]byte(out.Content), &v); err != nil {
				t.Errorf("seed %d: content %q is not a JSON object: %v", seed, out.Content, err)
			}
			continue
		}
		// Nothing bounds a story model's strings, so an answer may be cut
		// at the limit; it must still be the start of an object.
		var sc jsonScanner
		for i := 0; i < len(out.Content); i++ {
			if sc.step(out.Content[i]) == scanError || (i == 0 && out.Content[0] != '{') {
				t.Fatalf("seed %d: cut answer %q is not the start of a JSON object", seed, out.Content)
			}
		}
	}
}

// TestStoriesGrammarsAccepted has llama.cpp parse every shape of grammar
// Prepare writes: each format, each think mode, composed schemas.
func TestStoriesGrammarsAccepted(t *testing.T) {
	m := stories(t)
	specs := loadSpecs(t)
	type variant struct {
		name string
		mod  func(*openai.ChatRequest)
	}
	variants := []variant{
		{"required", withTools(&openai.ToolChoice{Mode: "required"})},
		{"named single", func(r *openai.ChatRequest) {
			withTools(&openai.ToolChoice{Mode: "function", Function: "get_time"})(r)
			r.ParallelToolCalls = ptr(false)
		}},
		{"json object", func(r *openai.ChatRequest) { r.ResponseFormat = &openai.ResponseFormat{Type: "json_object"} }},
		{"json schema or calls", func(r *openai.ChatRequest) {
			withTools(nil)(r)
			r.ResponseFormat = &openai.ResponseFormat{Type: "json_schema", JSONSchema: &openai.JSONSchema{Name: "w", Schema: cityParams}}
		}},
	}
	for _, name := range []string{"chatml", "qwen3", "deepseek_r1", "llama31", "mistral"} {
		spec := specs[name]
		src, err := os.ReadFile(filepath.Join("testdata", spec.File))
		if err != nil {
			t.Fatal(err)
		}
		tmpl, err := NewTemplate(string(src), SpecialTokens{BOS: spec.BOS, EOS: spec.EOS})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range variants {
			t.Run(name+"/"+v.name, func(t *testing.T) {
				req := chatRequest(v.mod, func(r *openai.ChatRequest) {
					r.Messages = r.Messages[1:]
					r.MaxTokens = ptr(4)
				})
				p, err := tmpl.Prepare(req, m)
				if err != nil {
					t.Fatal(err)
				}
				if p.Grammar == "" {
					t.Fatal("no grammar")
				}
				toks, err := m.Tokenize("Once upon a time", true, false)
				if err != nil {
					t.Fatal(err)
				}
				_, err = m.Generate(context.Background(), p.GenerateRequest(toks), func(engine.Chunk) error { return nil })
				if errors.Is(err, engine.ErrInvalidGrammar) || err != nil {
					t.Fatalf("llama.cpp refused the grammar: %v\n%s", err, p.Grammar)
				}
			})
		}
	}
}
