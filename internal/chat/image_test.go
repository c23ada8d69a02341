package chat

import (
	"bytes"
	"encoding/base64"
	"errors"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"slices"
	"strings"
	"testing"

	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/wire/openai"
)

func encodeImage(t *testing.T, format string, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{R: uint8(x), G: uint8(y), B: 200, A: 255})
		}
	}
	var b bytes.Buffer
	var err error
	switch format {
	case "png":
		err = png.Encode(&b, img)
	case "jpeg":
		err = jpeg.Encode(&b, img, nil)
	case "gif":
		err = gif.Encode(&b, img, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func dataURI(mediaType string, data []byte) string {
	return "data:" + mediaType + ";base64," + base64.StdEncoding.EncodeToString(data)
}

func TestDecodeImage(t *testing.T) {
	pngData := encodeImage(t, "png", 30, 20)
	// A transparent pixel is flattened onto white.
	transparent := image.NewNRGBA(image.Rect(0, 0, 1, 1))
	var tb bytes.Buffer
	if err := png.Encode(&tb, transparent); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		url        string
		lim        ImageLimits
		w, h       int
		code       string // "" accepted
		msgContain string
	}{
		"png":              {url: dataURI("image/png", pngData), w: 30, h: 20},
		"jpeg":             {url: dataURI("image/jpeg", encodeImage(t, "jpeg", 16, 9)), w: 16, h: 9},
		"gif":              {url: dataURI("image/gif", encodeImage(t, "gif", 5, 7)), w: 5, h: 7},
		"no media type":    {url: "data:;base64," + base64.StdEncoding.EncodeToString(pngData), w: 30, h: 20},
		"url-safe base64":  {url: "data:image/png;base64," + base64.RawURLEncoding.EncodeToString(pngData), w: 30, h: 20},
		"wrapped base64":   {url: "data:image/png;base64," + wrap(base64.StdEncoding.EncodeToString(pngData)), w: 30, h: 20},
		"transparent":      {url: dataURI("image/png", tb.Bytes()), w: 1, h: 1},
		"remote":           {url: "https://example.com/cat.png", code: openai.CodeUnsupportedValue, msgContain: "not fetched"},
		"not a uri":        {url: "cat.png", code: CodeInvalidImage},
		"not base64":       {url: "data:image/png,rawbytes", code: CodeInvalidImage, msgContain: "base64"},
		"no comma":         {url: "data:image/png;base64", code: CodeInvalidImage},
		"svg":              {url: "data:image/svg+xml;base64,PHN2Zz4=", code: CodeInvalidImage, msgContain: "image/svg+xml"},
		"bad base64":       {url: "data:image/png;base64,@@@@", code: CodeInvalidImage, msgContain: "base64"},
		"not an image":     {url: dataURI("image/png", []byte("hello, this is text")), code: CodeInvalidImage, msgContain: "not a PNG"},
		"truncated png":    {url: dataURI("image/png", pngData[:len(pngData)/2]), code: CodeInvalidImage},
		"too many bytes":   {url: dataURI("image/png", pngData), lim: ImageLimits{MaxBytes: 64}, code: CodeImageTooLarge, msgContain: "64 bytes"},
		"too many pixels":  {url: dataURI("image/png", pngData), lim: ImageLimits{MaxPixels: 599}, code: CodeImageTooLarge, msgContain: "30×20"},
		"exactly the size": {url: dataURI("image/png", pngData), lim: ImageLimits{MaxPixels: 600, MaxBytes: int64(len(pngData))}, w: 30, h: 20},
	} {
		t.Run(name, func(t *testing.T) {
			im, err := DecodeImage(tc.url, tc.lim, "messages[0].content[1].image_url")
			if tc.code == "" {
				if err != nil {
					t.Fatal(err)
				}
				if im.Width != tc.w || im.Height != tc.h || len(im.RGB) != 3*tc.w*tc.h {
					t.Fatalf("decoded %d×%d with %d bytes", im.Width, im.Height, len(im.RGB))
				}
				return
			}
			var oe *openai.Error
			if !errors.As(err, &oe) || oe.Status != 400 || oe.Code != tc.code || !strings.Contains(oe.Message, tc.msgContain) {
				t.Fatalf("error = %#v, want 400 %s containing %q", err, tc.code, tc.msgContain)
			}
			if oe.Param != "messages[0].content[1].image_url.url" {
				t.Errorf("param = %q", oe.Param)
			}
		})
	}
	// The pixels come through: the PNG's top-left pixel is (0, 0, 200), a
	// transparent one turns white.
	im, _ := DecodeImage(dataURI("image/png", pngData), ImageLimits{}, "p")
	if !slices.Equal(im.RGB[:3], []byte{0, 0, 200}) || !slices.Equal(im.RGB[3:6], []byte{1, 0, 200}) {
		t.Errorf("first pixels = %v", im.RGB[:6])
	}
	im, _ = DecodeImage(dataURI("image/png", tb.Bytes()), ImageLimits{}, "p")
	if !slices.Equal(im.RGB, []byte{255, 255, 255}) {
		t.Errorf("transparent pixel = %v", im.RGB)
	}
}

func wrap(s string) string {
	var b strings.Builder
	for len(s) > 60 {
		b.WriteString(s[:60] + "\r\n")
		s = s[60:]
	}
	b.WriteString(s)
	return b.String()
}

func TestTokenizePrompt(t *testing.T) {
	var calls []string
	tok := func(text string, addSpecial, parseSpecial bool) ([]int, error) {
		calls = append(calls, text)
		out := []int{}
		if addSpecial {
			out = append(out, 1)
		}
		for range text {
			out = append(out, 7)
		}
		return out, nil
	}
	got, err := TokenizePrompt("ab"+ImageMarker+ImageMarker+"c", tok)
	if err != nil {
		t.Fatal(err)
	}
	want := []int{1, 7, 7, engine.ImageToken, engine.ImageToken, 7}
	if !slices.Equal(got, want) || !slices.Equal(calls, []string{"ab", "c"}) {
		t.Errorf("TokenizePrompt = %v (calls %q), want %v", got, calls, want)
	}
}

func TestPrepareImages(t *testing.T) {
	tmpl, err := NewTemplate("", SpecialTokens{})
	if err != nil {
		t.Fatal(err)
	}
	img := dataURI("image/png", encodeImage(t, "png", 4, 3))
	req := &openai.ChatRequest{Model: "m", Messages: []openai.Message{{Role: openai.RoleUser, Content: openai.MessageContent{Parts: []openai.ContentPart{
		{Type: "text", Text: "what is this? "},
		{Type: "image_url", ImageURL: &openai.ImageURL{URL: img}},
	}}}}}
	// A text-only model keeps its refusal.
	_, err = tmpl.Prepare(req, nil)
	var oe *openai.Error
	if !errors.As(err, &oe) || oe.Status != 400 || !strings.Contains(oe.Message, "does not accept images") {
		t.Fatalf("text-only Prepare: %v", err)
	}
	p, err := tmpl.PrepareWith(req, nil, Options{Images: &ImageLimits{}})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Images) != 1 || p.Images[0].Width != 4 || !strings.Contains(p.Prompt, "what is this? "+ImageMarker) {
		t.Fatalf("prepared %d images, prompt %q", len(p.Images), p.Prompt)
	}
	if gr := p.GenerateRequest([]int{1, engine.ImageToken, 2}); len(gr.Images) != 1 {
		t.Errorf("GenerateRequest carries %d images", len(gr.Images))
	}
	// The marker typed by the client would misplace images.
	req.Messages[0].Content.Parts[0].Text = "see " + ImageMarker
	if _, err := tmpl.PrepareWith(req, nil, Options{Images: &ImageLimits{}}); !errors.As(err, &oe) || oe.Code != CodeInvalidImage {
		t.Errorf("typed marker: %v", err)
	}
	// An oversized image is a 400 naming the part.
	req.Messages[0].Content.Parts[0].Text = "hi"
	_, err = tmpl.PrepareWith(req, nil, Options{Images: &ImageLimits{MaxPixels: 11}})
	if !errors.As(err, &oe) || oe.Code != CodeImageTooLarge || oe.Param != "messages[0].content[1].image_url.url" {
		t.Errorf("oversized: %#v", err)
	}
}
