package ggufgen

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/helexa-ai/cortex/internal/gguf"
)

// ProjectorParams shapes a random-weight vision projector written by
// WriteRandomProjector: a small CLIP-style vision transformer with a LLaVA
// MLP projector ("mlp"), the simplest projector llama.cpp's multimodal
// library reads. Zero fields take the defaults noted.
type ProjectorParams struct {
	// TextEmbd is the embedding width of the text model the projector
	// feeds (required): llama.cpp refuses a projector of another width.
	TextEmbd int
	Embd     int // vision embedding width (default 32)
	Heads    int // vision attention heads (default 4)
	FF       int // vision feed-forward width (default 2×Embd)
	// Layers is the encoder's block count (default 2); LLaVA reads the
	// features of the second-to-last block.
	Layers int
	// ImageSize is the square side images are resized to, and PatchSize
	// the side of a patch (defaults 32 and 8): each image becomes
	// (ImageSize/PatchSize)² embedding rows.
	ImageSize, PatchSize int
	Hidden               int // projector hidden width (default TextEmbd)
	Seed                 uint64
}

func (p ProjectorParams) withDefaults() (ProjectorParams, error) {
	if p.Embd == 0 {
		p.Embd = 32
	}
	if p.Heads == 0 {
		p.Heads = 4
	}
	if p.FF == 0 {
		p.FF = 2 * p.Embd
	}
	if p.Layers == 0 {
		p.Layers = 2
	}
	if p.ImageSize == 0 {
		p.ImageSize = 32
	}
	if p.PatchSize == 0 {
		p.PatchSize = 8
	}
	if p.Hidden == 0 {
		p.Hidden = p.TextEmbd
	}
	switch {
	case p.TextEmbd < 1:
		return p, fmt.Errorf("the text model's embedding width is required")
	case p.Embd < 1 || p.Heads < 1 || p.FF < 1 || p.Layers < 1 || p.Hidden < 1:
		return p, fmt.Errorf("embd, heads, ff, layers and hidden must be positive")
	case p.Embd%p.Heads != 0:
		return p, fmt.Errorf("embd %d is not a multiple of heads %d", p.Embd, p.Heads)
	case p.FF == p.Embd:
		// llama.cpp takes a feed-forward block whose down projection has
		// the model's width for one exported with up and down swapped.
		return p, fmt.Errorf("ff must differ from embd")
	case p.PatchSize < 1 || p.ImageSize < p.PatchSize || p.ImageSize%p.PatchSize != 0:
		return p, fmt.Errorf("image size %d is not a positive multiple of patch size %d", p.ImageSize, p.PatchSize)
	}
	return p, nil
}

// ProjectorImageTokens is the number of embedding rows one image takes.
func ProjectorImageTokens(p ProjectorParams) int {
	p, _ = p.withDefaults()
	n := p.ImageSize / p.PatchSize
	return n * n
}

// WriteRandomProjector writes an mmproj GGUF with random weights that
// llama.cpp's multimodal library loads for a text model of width
// p.TextEmbd and encodes images with. It is for tests: the embeddings it
// produces are noise.
func WriteRandomProjector(w io.Writer, p ProjectorParams) error {
	p, err := p.withDefaults()
	if err != nil {
		return err
	}
	kvs := []gguf.KV{
		{Key: "general.architecture", Value: gguf.String("clip")},
		{Key: "general.name", Value: gguf.String("cortex-random-projector")},
		{Key: "general.alignment", Value: gguf.Uint32(gguf.DefaultAlignment)},
		{Key: "clip.has_vision_encoder", Value: gguf.Bool(true)},
		{Key: "clip.projector_type", Value: gguf.String("mlp")},
		{Key: "clip.use_gelu", Value: gguf.Bool(true)},
		{Key: "clip.vision.embedding_length", Value: gguf.Uint32(uint32(p.Embd))},
		{Key: "clip.vision.feed_forward_length", Value: gguf.Uint32(uint32(p.FF))},
		{Key: "clip.vision.block_count", Value: gguf.Uint32(uint32(p.Layers))},
		{Key: "clip.vision.projection_dim", Value: gguf.Uint32(uint32(p.TextEmbd))},
		{Key: "clip.vision.attention.head_count", Value: gguf.Uint32(uint32(p.Heads))},
		{Key: "clip.vision.attention.layer_norm_epsilon", Value: gguf.Float32(1e-5)},
		{Key: "clip.vision.image_size", Value: gguf.Uint32(uint32(p.ImageSize))},
		{Key: "clip.vision.patch_size", Value: gguf.Uint32(uint32(p.PatchSize))},
		{Key: "clip.vision.image_mean", Value: gguf.Float32s([]float32{0.5, 0.5, 0.5})},
		{Key: "clip.vision.image_std", Value: gguf.Float32s([]float32{0.5, 0.5, 0.5})},
	}
	tensors := projectorTensors(p)
	rng := rand.New(rand.NewPCG(p.Seed, p.Seed^0x2545f4914f6cdd1d))
	for i := range tensors {
		t := &tensors[i]
		n := 1
		for _, d := range t.Shape {
			n *= int(d)
		}
		switch {
		case len(t.Shape) == 1 && isNormWeight(t.Name):
			t.Fill = func(w io.Writer) error { return fillConst(w, n, 1) }
		case len(t.Shape) == 1:
			t.Fill = func(w io.Writer) error { return fillConst(w, n, 0) }
		default:
			fanIn := int(t.Shape[0])
			if len(t.Shape) == 4 { // the patch convolution: kernel × kernel × channels in
				fanIn = int(t.Shape[0] * t.Shape[1] * t.Shape[2])
			}
			scale := float32(math.Sqrt(3 / float64(fanIn)))
			t.Fill = func(w io.Writer) error { return fillRandom(w, rng, gguf.TypeF32, n, scale) }
		}
	}
	return Write(w, kvs, tensors)
}

func isNormWeight(name string) bool {
	return strings.HasSuffix(name, "ln1.weight") || strings.HasSuffix(name, "ln2.weight")
}

// projectorTensors names the tensors as llama.cpp's clip loader looks
// them up (tools/mtmd/clip-impl.h), all F32.
func projectorTensors(p ProjectorParams) []Tensor {
	e, f := uint64(p.Embd), uint64(p.FF)
	k := uint64(p.PatchSize)
	side := uint64(p.ImageSize / p.PatchSize)
	f32 := gguf.TypeF32
	ts := []Tensor{
		{Name: "v.patch_embd.weight", Shape: []uint64{k, k, 3, e}, Type: f32},
		{Name: "v.patch_embd.bias", Shape: []uint64{e}, Type: f32},
		{Name: "v.position_embd.weight", Shape: []uint64{e, side * side}, Type: f32},
	}
	for i := 0; i < p.Layers; i++ {
		b := fmt.Sprintf("v.blk.%d.", i)
		for _, n := range []string{"attn_q", "attn_k", "attn_v", "attn_out"} {
			ts = append(ts,
				Tensor{Name: b + n + ".weight", Shape: []uint64{e, e}, Type: f32},
				Tensor{Name: b + n + ".bias", Shape: []uint64{e}, Type: f32})
		}
		ts = append(ts,
			Tensor{Name: b + "ln1.weight", Shape: []uint64{e}, Type: f32},
			Tensor{Name: b + "ln1.bias", Shape: []uint64{e}, Type: f32},
			Tensor{Name: b + "ln2.weight", Shape: []uint64{e}, Type: f32},
			Tensor{Name: b + "ln2.bias", Shape: []uint64{e}, Type: f32},
			Tensor{Name: b + "ffn_up.weight", Shape: []uint64{e, f}, Type: f32},
			Tensor{Name: b + "ffn_up.bias", Shape: []uint64{f}, Type: f32},
			Tensor{Name: b + "ffn_down.weight", Shape: []uint64{f, e}, Type: f32},
			Tensor{Name: b + "ffn_down.bias", Shape: []uint64{e}, Type: f32},
		)
	}
	h, t := uint64(p.Hidden), uint64(p.TextEmbd)
	ts = append(ts,
		Tensor{Name: "mm.0.weight", Shape: []uint64{e, h}, Type: f32},
		Tensor{Name: "mm.0.bias", Shape: []uint64{h}, Type: f32},
		Tensor{Name: "mm.2.weight", Shape: []uint64{h, t}, Type: f32},
		Tensor{Name: "mm.2.bias", Shape: []uint64{t}, Type: f32},
	)
	return ts
}
