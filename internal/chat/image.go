package chat

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	_ "image/gif" // registers GIF with image.Decode
	_ "image/jpeg"
	_ "image/png"
	"strings"

	_ "golang.org/x/image/webp"

	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// ImageMarker stands for one image in a prompt rendered for a vision
// model (the marker llama.cpp's multimodal library uses). TokenizePrompt
// turns each into engine.ImageToken.
const ImageMarker = "<__media__>"

// Image limits a neuron applies unless configured otherwise.
const (
	// DefaultMaxImageBytes bounds one image's encoded (decoded base64)
	// size.
	DefaultMaxImageBytes = 20 << 20
	// DefaultMaxImagePixels bounds one image's width × height, checked
	// from its header before the pixels are decoded, so that a small file
	// announcing a huge picture costs nothing.
	DefaultMaxImagePixels = 16 << 20
)

// ImageLimits bounds the images a request may carry.
type ImageLimits struct {
	// MaxBytes is the largest encoded image (0: DefaultMaxImageBytes).
	MaxBytes int64
	// MaxPixels is the largest width × height (0: DefaultMaxImagePixels).
	MaxPixels int64
}

func (l ImageLimits) withDefaults() ImageLimits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxImageBytes
	}
	if l.MaxPixels <= 0 {
		l.MaxPixels = DefaultMaxImagePixels
	}
	return l
}

// Error codes of refused images.
const (
	CodeInvalidImage  = "invalid_image"
	CodeImageTooLarge = "image_too_large"
)

// DecodeImage reads an image_url value: a data: URI with base64 PNG, JPEG,
// GIF (first frame) or WebP. Remote URLs are refused: a neuron reaches no
// network but its model sources, and fetching on a client's behalf would
// let a request make the cluster call any address. Errors are 400
// *openai.Error values naming param.
func DecodeImage(url string, lim ImageLimits, param string) (engine.Image, error) {
	lim = lim.withDefaults()
	url = strings.TrimSpace(url)
	if url == "" {
		return engine.Image{}, openai.MissingParameter(param + ".url")
	}
	rest, ok := cutPrefixFold(url, "data:")
	if !ok {
		if strings.HasPrefix(strings.ToLower(url), "http://") || strings.HasPrefix(strings.ToLower(url), "https://") {
			return engine.Image{}, openai.Unsupported(param+".url", "Remote image URLs are not fetched; send the image inline as a data: URI with base64 data (data:image/png;base64,…).")
		}
		return engine.Image{}, openai.InvalidRequest(param+".url", CodeInvalidImage, "Invalid '%s.url': expected a data: URI with base64 image data.", param)
	}
	meta, data, ok := strings.Cut(rest, ",")
	if !ok {
		return engine.Image{}, openai.InvalidRequest(param+".url", CodeInvalidImage, "Invalid '%s.url': the data: URI has no ',' before its data.", param)
	}
	params := strings.Split(meta, ";")
	mediaType := strings.ToLower(strings.TrimSpace(params[0]))
	b64 := false
	for _, p := range params[1:] {
		if strings.EqualFold(strings.TrimSpace(p), "base64") {
			b64 = true
		}
	}
	if !b64 {
		return engine.Image{}, openai.InvalidRequest(param+".url", CodeInvalidImage, "Invalid '%s.url': image data must be base64 (data:%s;base64,…).", param, mediaType)
	}
	switch mediaType {
	case "", "image/png", "image/jpeg", "image/jpg", "image/gif", "image/webp":
	default:
		return engine.Image{}, openai.InvalidRequest(param+".url", CodeInvalidImage, "Invalid '%s.url': media type '%s' is not supported; use image/png, image/jpeg, image/gif or image/webp.", param, mediaType)
	}
	// Checked before decoding so an oversized payload is never copied.
	if int64(base64.StdEncoding.DecodedLen(len(data))) > lim.MaxBytes+3 {
		return engine.Image{}, tooLarge(param, "is larger than %d bytes", lim.MaxBytes)
	}
	raw, err := decodeBase64(data)
	if err != nil {
		return engine.Image{}, openai.InvalidRequest(param+".url", CodeInvalidImage, "Invalid '%s.url': the base64 data does not decode: %s.", param, err.Error())
	}
	if int64(len(raw)) > lim.MaxBytes {
		return engine.Image{}, tooLarge(param, "is larger than %d bytes", lim.MaxBytes)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(raw))
	if err != nil {
		return engine.Image{}, invalidImage(param, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return engine.Image{}, openai.InvalidRequest(param+".url", CodeInvalidImage, "Invalid '%s.url': the %s image has no pixels.", param, format)
	}
	if int64(cfg.Width)*int64(cfg.Height) > lim.MaxPixels {
		return engine.Image{}, tooLarge(param, "has %d×%d pixels, more than %d", cfg.Width, cfg.Height, lim.MaxPixels)
	}
	img, _, err := image.Decode(bytes.NewReader(raw))
	if err != nil {
		return engine.Image{}, invalidImage(param, err)
	}
	return toRGB(img), nil
}

func tooLarge(param, format string, args ...any) *openai.Error {
	return openai.InvalidRequest(param+".url", CodeImageTooLarge, "Invalid '%s.url': the image %s.", param, fmt.Sprintf(format, args...))
}

func invalidImage(param string, err error) *openai.Error {
	msg := err.Error()
	if errors.Is(err, image.ErrFormat) {
		msg = "not a PNG, JPEG, GIF or WebP image"
	}
	return openai.InvalidRequest(param+".url", CodeInvalidImage, "Invalid '%s.url': the image does not decode: %s.", param, msg)
}

// decodeBase64 accepts standard and URL-safe base64, padded or not, with
// line breaks (some clients wrap long data).
func decodeBase64(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, s)
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// toRGB flattens an image onto white (transparent screenshots would
// otherwise turn black) and keeps three bytes per pixel.
func toRGB(img image.Image) engine.Image {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	rgba := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(rgba, rgba.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	draw.Draw(rgba, rgba.Bounds(), img, b.Min, draw.Over)
	out := make([]byte, 3*w*h)
	for i, j := 0, 0; i < len(rgba.Pix); i, j = i+4, j+3 {
		out[j], out[j+1], out[j+2] = rgba.Pix[i], rgba.Pix[i+1], rgba.Pix[i+2]
	}
	return engine.Image{Width: w, Height: h, RGB: out}
}

// TokenizePrompt tokenizes a prompt rendered for a vision model: the text
// between ImageMarkers with tokenize (special tokens added only at the
// start, special-token text parsed), each marker as engine.ImageToken.
func TokenizePrompt(prompt string, tokenize func(text string, addSpecial, parseSpecial bool) ([]int, error)) ([]int, error) {
	parts := strings.Split(prompt, ImageMarker)
	var out []int
	for i, p := range parts {
		if i > 0 {
			out = append(out, engine.ImageToken)
		}
		if p == "" && i > 0 {
			continue
		}
		toks, err := tokenize(p, i == 0, true)
		if err != nil {
			return nil, err
		}
		out = append(out, toks...)
	}
	return out, nil
}
