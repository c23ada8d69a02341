package llamacpp

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/gguf/ggufgen"
)

// writeVisionModel writes a generated llama and a projector for it.
func writeVisionModel(t testing.TB, pp ggufgen.ProjectorParams) (model, proj string) {
	t.Helper()
	model = writeRandomModel(t, ggufgen.LlamaParams{Embd: 64, Seed: 7})
	pp.TextEmbd = 64
	proj = filepath.Join(t.TempDir(), "mmproj.gguf")
	f, err := os.Create(proj)
	if err != nil {
		t.Fatal(err)
	}
	if err := ggufgen.WriteRandomProjector(f, pp); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return model, proj
}

// testImage is a w×h gradient.
func testImage(w, h int, seed byte) engine.Image {
	rgb := make([]byte, 3*w*h)
	for i := range rgb {
		rgb[i] = byte(i) * seed
	}
	return engine.Image{Width: w, Height: h, RGB: rgb}
}

func imagePrompt(t testing.TB, m engine.Model, before, after string, n int) []int {
	t.Helper()
	p, err := m.Tokenize(before, true, true)
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		p = append(p, engine.ImageToken)
	}
	rest, err := m.Tokenize(after, false, true)
	if err != nil {
		t.Fatal(err)
	}
	return append(p, rest...)
}

// An image flows through the projector into the prompt: its rows take
// positions (counted in PromptTokens and ImageTokens), and the same image
// sent again is reused from the sequence's cache, not decoded again.
func TestVisionGenerate(t *testing.T) {
	model, proj := writeVisionModel(t, ggufgen.ProjectorParams{})
	m := loadModelT(t, engine.LoadParams{Path: model, ProjectorPath: proj, ContextLength: 256, Parallel: 1})
	if !m.Info().Vision {
		t.Fatal("Info().Vision is false with a projector loaded")
	}
	per := ggufgen.ProjectorImageTokens(ggufgen.ProjectorParams{})
	prompt := imagePrompt(t, m, "look", "what is it", 1)
	req := engine.GenerateRequest{Prompt: prompt, Images: []engine.Image{testImage(40, 24, 3)}, MaxTokens: 4}
	out, res := generate(t, m, "", req)
	if res.ImageTokens != per || res.PromptTokens != len(prompt)-1+per {
		t.Fatalf("result = %+v, want %d image tokens of %d", res, per, len(prompt)-1+per)
	}
	if res.CompletionTokens == 0 {
		t.Fatalf("no completion: %q %+v", out, res)
	}
	// The same request again reuses the cached prefix, image included.
	_, res2 := generate(t, m, "", req)
	if res2.CachedTokens < len(prompt)-2+per {
		t.Errorf("second run cached %d tokens, want at least %d", res2.CachedTokens, len(prompt)-2+per)
	}
	// Another image with the same text must not reuse the first image.
	req.Images = []engine.Image{testImage(40, 24, 5)}
	_, res3 := generate(t, m, "", req)
	if res3.CachedTokens >= len(prompt)-2+per {
		t.Errorf("a different image reused %d cached tokens", res3.CachedTokens)
	}
	// The rows reach the model: two images give different next-token
	// distributions for the same text.
	first := func(im engine.Image) []engine.TopLogprob {
		var top []engine.TopLogprob
		r := engine.GenerateRequest{Prompt: prompt, Images: []engine.Image{im}, MaxTokens: 1, Logprobs: true, TopLogprobs: 5}
		_, err := m.Generate(context.Background(), r, func(c engine.Chunk) error {
			if len(c.Logprobs) > 0 && top == nil {
				top = c.Logprobs[0].Top
			}
			return nil
		})
		if err != nil || len(top) == 0 {
			t.Fatalf("logprobs: %v %v", top, err)
		}
		return top
	}
	if a, b := first(testImage(40, 24, 3)), first(testImage(40, 24, 11)); a[0].Logprob == b[0].Logprob && a[1].Logprob == b[1].Logprob {
		t.Errorf("two images gave the same distribution: %v", a)
	}
	// Two images.
	req = engine.GenerateRequest{Prompt: imagePrompt(t, m, "two", "compare", 2), MaxTokens: 2,
		Images: []engine.Image{testImage(8, 8, 1), testImage(300, 200, 2)}}
	if _, res := generate(t, m, "", req); res.ImageTokens != 2*per {
		t.Errorf("two images: %+v", res)
	}
}

func TestVisionRefusals(t *testing.T) {
	model, proj := writeVisionModel(t, ggufgen.ProjectorParams{})
	text := loadModelT(t, engine.LoadParams{Path: model, ContextLength: 256, Parallel: 1})
	if text.Info().Vision {
		t.Fatal("a model without projector reports vision")
	}
	img := []engine.Image{testImage(8, 8, 1)}
	_, err := text.Generate(context.Background(), engine.GenerateRequest{Prompt: imagePrompt(t, text, "a", "b", 1), Images: img}, nil)
	if !errors.Is(err, engine.ErrInvalidRequest) || !strings.Contains(err.Error(), "text only") {
		t.Errorf("image to a text model: %v", err)
	}

	m := loadModelT(t, engine.LoadParams{Path: model, ProjectorPath: proj, ContextLength: 32, Parallel: 1})
	for name, req := range map[string]engine.GenerateRequest{
		"placeholders without images": {Prompt: imagePrompt(t, m, "a", "b", 1)},
		"image at the end":            {Prompt: append(imagePrompt(t, m, "a", "", 0), engine.ImageToken), Images: img},
		"short pixels":                {Prompt: imagePrompt(t, m, "a", "b", 1), Images: []engine.Image{{Width: 4, Height: 4, RGB: make([]byte, 5)}}},
	} {
		if _, err := m.Generate(context.Background(), req, nil); !errors.Is(err, engine.ErrInvalidRequest) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// 16 image positions and the text overflow a context of 32.
	req := engine.GenerateRequest{Prompt: imagePrompt(t, m, "a long text that goes on and on", "and more", 1), Images: img}
	if _, err := m.Generate(context.Background(), req, nil); !errors.Is(err, engine.ErrContextLengthExceeded) {
		t.Errorf("overflowing image: %v", err)
	}
}

func TestVisionProjectorMismatch(t *testing.T) {
	model := writeRandomModel(t, ggufgen.LlamaParams{Embd: 64})
	proj := filepath.Join(t.TempDir(), "mmproj.gguf")
	f, err := os.Create(proj)
	if err != nil {
		t.Fatal(err)
	}
	if err := ggufgen.WriteRandomProjector(f, ggufgen.ProjectorParams{TextEmbd: 32}); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	_, err = newTestEngine(t).Load(context.Background(), engine.LoadParams{Path: model, ProjectorPath: proj, Threads: 1})
	if err == nil || !strings.Contains(err.Error(), "projector") {
		t.Fatalf("loading a projector of the wrong width: %v", err)
	}
	// A text model given as projector.
	_, err = newTestEngine(t).Load(context.Background(), engine.LoadParams{Path: model, ProjectorPath: model, Threads: 1})
	if err == nil {
		t.Fatal("a text model loaded as projector")
	}
}
