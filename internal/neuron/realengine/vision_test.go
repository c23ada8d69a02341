package realengine

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/helexa-ai/cortex/internal/chat"
	"github.com/helexa-ai/cortex/internal/gguf/ggufgen"
	"github.com/helexa-ai/cortex/internal/neuron"
	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/wire/anthropic"
	"github.com/helexa-ai/cortex/internal/wire/openai"
	"github.com/helexa-ai/cortex/internal/wire/responses"
)

// pngBase64 is a w×h PNG, base64.
func pngBase64(t testing.TB, w, h int) string {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{R: uint8(7 * x), G: uint8(5 * y), B: 90, A: 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b.Bytes())
}

// An image travels from each dialect the gateway speaks (translated as
// the gateway translates it) through the neuron into the real engine with
// a generated vision model and back, counted in usage; oversized and
// malformed images are 400s in the caller's dialect; a text-only model
// keeps its refusal.
func TestVisionDialects(t *testing.T) {
	h := startNeuron(t, func(c *neuron.Config) { c.MaxImagePixels = 64 * 64 })
	model := randomModel(t, ggufgen.LlamaParams{Embd: 64, Seed: 3})
	proj := filepath.Join(t.TempDir(), "mmproj.gguf")
	f, err := os.Create(proj)
	if err != nil {
		t.Fatal(err)
	}
	if err := ggufgen.WriteRandomProjector(f, ggufgen.ProjectorParams{TextEmbd: 64}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	perImage := ggufgen.ProjectorImageTokens(ggufgen.ProjectorParams{TextEmbd: 64})
	src := neuronapi.Source{URI: "file://" + model, ProjectorURI: "file://" + proj}
	ec := neuronapi.EngineConfig{ContextLength: 256, Parallel: 1}
	code, body := h.post(neuronapi.PathEstimate, neuronapi.EstimateRequest{Source: src, Engine: ec})
	est := decode[neuronapi.Estimate](t, body)
	textEst := func() neuronapi.Estimate {
		_, b := h.post(neuronapi.PathEstimate, neuronapi.EstimateRequest{Source: neuronapi.Source{URI: src.URI}, Engine: ec})
		return decode[neuronapi.Estimate](t, b)
	}()
	if code != http.StatusOK || est.ProjectorBytes <= 0 || est.ImageTokens != perImage || est.TotalBytes != textEst.TotalBytes+est.ProjectorBytes {
		t.Errorf("estimate = %d %+v, want projector bytes on top of %d and %d image tokens", code, est, textEst.TotalBytes, perImage)
	}
	h.load(neuronapi.LoadRequest{Name: "ns/vision", Source: src, Engine: ec})
	h.load(neuronapi.LoadRequest{Name: "ns/text", Source: neuronapi.Source{URI: "file://" + model},
		Engine: neuronapi.EngineConfig{ContextLength: 256, Parallel: 1}})

	small := pngBase64(t, 40, 30)
	send := func(req *openai.ChatRequest) (int, []byte) {
		t.Helper()
		req.MaxTokens = ptr(3)
		req.Temperature = ptr(float32(0))
		return h.post("/v1/chat/completions", req)
	}
	chatOK := func(name string, req *openai.ChatRequest) *openai.ChatResponse {
		t.Helper()
		code, body := send(req)
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", name, code, body)
		}
		resp := decode[openai.ChatResponse](t, body)
		u := resp.Usage
		if u == nil || u.PromptTokensDetails == nil || u.PromptTokensDetails.ImageTokens != perImage || u.PromptTokens <= perImage {
			t.Fatalf("%s: usage %+v, want %d image tokens inside prompt_tokens", name, u, perImage)
		}
		return &resp
	}

	// OpenAI chat: an image_url data URI.
	oa := &openai.ChatRequest{Model: "ns/vision", Messages: []openai.Message{{Role: openai.RoleUser, Content: openai.MessageContent{Parts: []openai.ContentPart{
		{Type: "text", Text: "what is in the picture?"},
		{Type: "image_url", ImageURL: &openai.ImageURL{URL: "data:image/png;base64," + small}},
	}}}}}
	chatOK("openai", oa)
	// Counting (Anthropic count_tokens) includes the image's positions.
	code, body = h.post(neuronapi.PathTokenize, neuronapi.TokenizeRequest{Model: "ns/vision", Chat: oa})
	if tr := decode[neuronapi.TokenizeResponse](t, body); code != http.StatusOK || tr.Count != len(tr.Tokens)+perImage {
		t.Errorf("tokenize: %d %s", code, body)
	}

	// Anthropic Messages: a base64 image block.
	var am anthropic.MessagesRequest
	mustJSON(t, fmt.Sprintf(`{"model":"ns/vision","max_tokens":3,"messages":[{"role":"user","content":[
		{"type":"image","source":{"type":"base64","media_type":"image/png","data":%q}},
		{"type":"text","text":"describe it"}]}]}`, small), &am)
	ac, _, err := anthropic.ToOpenAIChat(&am)
	if err != nil {
		t.Fatal(err)
	}
	ar := anthropic.FromOpenAIChat(chatOK("anthropic", ac), "ns/vision")
	if ar.Usage.InputTokens <= perImage {
		t.Errorf("anthropic usage %+v", ar.Usage)
	}

	// Responses: an input_image.
	var rr responses.Request
	mustJSON(t, fmt.Sprintf(`{"model":"ns/vision","input":[{"role":"user","content":[
		{"type":"input_text","text":"and this?"},
		{"type":"input_image","image_url":"data:image/png;base64,%s"}]}]}`, small), &rr)
	rc, _, err := responses.ToOpenAIChat(&rr)
	if err != nil {
		t.Fatal(err)
	}
	if resp := responses.FromOpenAIChat(chatOK("responses", rc), &rr); resp.Usage == nil || resp.Usage.InputTokens <= perImage {
		t.Errorf("responses usage %+v", resp.Usage)
	}

	// Refusals, as OpenAI errors and as the Anthropic errors the gateway
	// makes of them.
	withImage := func(model, url string) *openai.ChatRequest {
		return &openai.ChatRequest{Model: model, Messages: []openai.Message{{Role: openai.RoleUser, Content: openai.MessageContent{Parts: []openai.ContentPart{
			{Type: "image_url", ImageURL: &openai.ImageURL{URL: url}}, {Type: "text", Text: "hi"}}}}}}
	}
	for name, tc := range map[string]struct {
		req  *openai.ChatRequest
		code string
		msg  string
	}{
		"oversized": {withImage("ns/vision", "data:image/png;base64,"+pngBase64(t, 100, 100)), chat.CodeImageTooLarge, "100×100"},
		"malformed": {withImage("ns/vision", "data:image/png;base64,"+base64.StdEncoding.EncodeToString([]byte("not a png at all"))), chat.CodeInvalidImage, "does not decode"},
		"remote":    {withImage("ns/vision", "https://example.com/cat.png"), openai.CodeUnsupportedValue, "not fetched"},
		"text-only": {withImage("ns/text", "data:image/png;base64,"+small), openai.CodeUnsupportedValue, "does not accept images"},
	} {
		code, body := send(tc.req)
		e := decode[openai.ErrorBody](t, body)
		if code != http.StatusBadRequest || e.Error.Code == nil || *e.Error.Code != tc.code || !strings.Contains(e.Error.Message, tc.msg) {
			t.Errorf("%s: %d %s, want 400 %s containing %q", name, code, body, tc.code, tc.msg)
			continue
		}
		if ae := anthropic.ErrorFromOpenAI(code, e); ae.Error.Type != "invalid_request_error" || !strings.Contains(ae.Error.Message, tc.msg) {
			t.Errorf("%s: as Anthropic error %+v", name, ae)
		}
	}
}

func mustJSON(t testing.TB, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("%v in %s", err, s)
	}
}

func ptr[T any](v T) *T { return &v }
