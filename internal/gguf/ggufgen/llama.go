package ggufgen

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"

	"github.com/helexa-ai/cortex/internal/gguf"
)

// LlamaParams shapes a random-weight llama model written by
// WriteRandomLlama. Zero fields take the defaults noted.
type LlamaParams struct {
	Name    string // general.name (default "cortex-random-llama")
	Layers  int    // block_count (default 2)
	Embd    int    // embedding_length (default 64)
	Heads   int    // attention.head_count (default 4)
	HeadsKV int    // attention.head_count_kv (default Heads)
	FF      int    // feed_forward_length (default 4×Embd, rounded to 32)
	// Vocab is the tokenizer size, at least 260 (default 512): three
	// special tokens, the 256 byte-fallback tokens, SpecialTokens, and
	// generated pieces.
	Vocab   int
	Context int // context_length (default 2048)
	// WeightType stores the 2-D weights: "f32", "f16" (default), "q8_0"
	// or "q4_0". Norms are always F32.
	WeightType string
	// ChatTemplate, when set, is written as tokenizer.chat_template.
	ChatTemplate string
	// SpecialTokens are added as control tokens (e.g. "<|im_start|>",
	// "<|im_end|>"; llama.cpp treats well-known end-of-turn texts as EOG).
	SpecialTokens []string
	// UntiedOutput writes a separate output.weight instead of reusing the
	// token embeddings.
	UntiedOutput bool
	Seed         uint64

	typ gguf.GGMLType
}

func (p LlamaParams) withDefaults() (LlamaParams, error) {
	if p.Name == "" {
		p.Name = "cortex-random-llama"
	}
	if p.Layers == 0 {
		p.Layers = 2
	}
	if p.Embd == 0 {
		p.Embd = 64
	}
	if p.Heads == 0 {
		p.Heads = 4
	}
	if p.HeadsKV == 0 {
		p.HeadsKV = p.Heads
	}
	if p.FF == 0 {
		p.FF = (4*p.Embd + 31) / 32 * 32
	}
	if p.Vocab == 0 {
		p.Vocab = 512
	}
	if p.Context == 0 {
		p.Context = 2048
	}
	if p.WeightType == "" {
		p.WeightType = "f16"
	}
	t, err := gguf.ParseGGMLType(p.WeightType)
	if err != nil {
		return p, err
	}
	p.typ = t
	switch {
	case p.Layers < 1 || p.Embd < 1 || p.Heads < 1 || p.HeadsKV < 1 || p.FF < 1 || p.Context < 1:
		return p, fmt.Errorf("layers, embd, heads, heads_kv, ff and context must be positive")
	case p.Embd%p.Heads != 0:
		return p, fmt.Errorf("embd %d is not a multiple of heads %d", p.Embd, p.Heads)
	case p.Heads%p.HeadsKV != 0:
		return p, fmt.Errorf("heads %d is not a multiple of heads_kv %d", p.Heads, p.HeadsKV)
	case (p.Embd/p.Heads)%2 != 0:
		return p, fmt.Errorf("head dimension %d must be even for RoPE", p.Embd/p.Heads)
	case p.Vocab < 260+len(p.SpecialTokens):
		return p, fmt.Errorf("vocab %d is too small (at least %d)", p.Vocab, 260+len(p.SpecialTokens))
	}
	switch p.typ {
	case gguf.TypeF32, gguf.TypeF16:
	case gguf.TypeQ8_0, gguf.TypeQ4_0:
		if p.Embd%32 != 0 || p.FF%32 != 0 {
			return p, fmt.Errorf("%s weights need embd and ff to be multiples of 32", p.typ)
		}
	default:
		return p, fmt.Errorf("weight type %s is not supported by the writer", p.typ)
	}
	return p, nil
}

// LlamaParameterCount is the number of weights the parameters produce.
func LlamaParameterCount(p LlamaParams) (int64, error) {
	p, err := p.withDefaults()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, t := range llamaTensors(p) {
		e := int64(1)
		for _, d := range t.Shape {
			e *= int64(d)
		}
		n += e
	}
	return n, nil
}

// WriteRandomLlama writes a llama-architecture GGUF with random weights
// and a SentencePiece-style vocabulary (byte fallback plus generated
// pieces) that llama.cpp loads and generates from. It is for tests and
// benchmarks: the text it produces is noise.
func WriteRandomLlama(w io.Writer, p LlamaParams) error {
	p, err := p.withDefaults()
	if err != nil {
		return err
	}
	tokens, scores, types := spmVocab(p.Vocab, p.SpecialTokens)
	headDim := p.Embd / p.Heads
	kvs := []gguf.KV{
		{Key: "general.architecture", Value: gguf.String("llama")},
		{Key: "general.name", Value: gguf.String(p.Name)},
		{Key: "general.alignment", Value: gguf.Uint32(gguf.DefaultAlignment)},
		{Key: "llama.context_length", Value: gguf.Uint32(uint32(p.Context))},
		{Key: "llama.embedding_length", Value: gguf.Uint32(uint32(p.Embd))},
		{Key: "llama.block_count", Value: gguf.Uint32(uint32(p.Layers))},
		{Key: "llama.feed_forward_length", Value: gguf.Uint32(uint32(p.FF))},
		{Key: "llama.attention.head_count", Value: gguf.Uint32(uint32(p.Heads))},
		{Key: "llama.attention.head_count_kv", Value: gguf.Uint32(uint32(p.HeadsKV))},
		{Key: "llama.rope.dimension_count", Value: gguf.Uint32(uint32(headDim))},
		{Key: "llama.rope.freq_base", Value: gguf.Float32(10000)},
		{Key: "llama.attention.layer_norm_rms_epsilon", Value: gguf.Float32(1e-5)},
		{Key: "llama.vocab_size", Value: gguf.Uint32(uint32(p.Vocab))},
		{Key: "tokenizer.ggml.model", Value: gguf.String("llama")},
		{Key: "tokenizer.ggml.tokens", Value: gguf.Strings(tokens)},
		{Key: "tokenizer.ggml.scores", Value: gguf.Float32s(scores)},
		{Key: "tokenizer.ggml.token_type", Value: gguf.Int32s(types)},
		{Key: "tokenizer.ggml.unknown_token_id", Value: gguf.Uint32(0)},
		{Key: "tokenizer.ggml.bos_token_id", Value: gguf.Uint32(1)},
		{Key: "tokenizer.ggml.eos_token_id", Value: gguf.Uint32(2)},
		{Key: "tokenizer.ggml.add_bos_token", Value: gguf.Bool(true)},
		{Key: "tokenizer.ggml.add_eos_token", Value: gguf.Bool(false)},
	}
	if p.ChatTemplate != "" {
		kvs = append(kvs, gguf.KV{Key: "tokenizer.chat_template", Value: gguf.String(p.ChatTemplate)})
	}
	tensors := llamaTensors(p)
	rng := rand.New(rand.NewPCG(p.Seed, p.Seed^0x9e3779b97f4a7c15))
	for i := range tensors {
		t := &tensors[i]
		switch {
		case len(t.Shape) == 1:
			n := int(t.Shape[0])
			t.Fill = func(w io.Writer) error { return fillConst(w, n, 1) }
		default:
			fanIn := int(t.Shape[0])
			n := int(t.Shape[0] * t.Shape[1])
			scale := float32(math.Sqrt(3 / float64(fanIn)))
			typ := t.Type
			t.Fill = func(w io.Writer) error { return fillRandom(w, rng, typ, n, scale) }
		}
	}
	return Write(w, kvs, tensors)
}

func llamaTensors(p LlamaParams) []Tensor {
	e, f, v := uint64(p.Embd), uint64(p.FF), uint64(p.Vocab)
	kv := uint64(p.Embd / p.Heads * p.HeadsKV)
	ts := []Tensor{{Name: "token_embd.weight", Shape: []uint64{e, v}, Type: p.typ}}
	for i := 0; i < p.Layers; i++ {
		b := fmt.Sprintf("blk.%d.", i)
		ts = append(ts,
			Tensor{Name: b + "attn_norm.weight", Shape: []uint64{e}, Type: gguf.TypeF32},
			Tensor{Name: b + "attn_q.weight", Shape: []uint64{e, e}, Type: p.typ},
			Tensor{Name: b + "attn_k.weight", Shape: []uint64{e, kv}, Type: p.typ},
			Tensor{Name: b + "attn_v.weight", Shape: []uint64{e, kv}, Type: p.typ},
			Tensor{Name: b + "attn_output.weight", Shape: []uint64{e, e}, Type: p.typ},
			Tensor{Name: b + "ffn_norm.weight", Shape: []uint64{e}, Type: gguf.TypeF32},
			Tensor{Name: b + "ffn_gate.weight", Shape: []uint64{e, f}, Type: p.typ},
			Tensor{Name: b + "ffn_up.weight", Shape: []uint64{e, f}, Type: p.typ},
			Tensor{Name: b + "ffn_down.weight", Shape: []uint64{f, e}, Type: p.typ},
		)
	}
	ts = append(ts, Tensor{Name: "output_norm.weight", Shape: []uint64{e}, Type: gguf.TypeF32})
	if p.UntiedOutput {
		ts = append(ts, Tensor{Name: "output.weight", Shape: []uint64{e, v}, Type: p.typ})
	}
	return ts
}

// SentencePiece token types, as llama.cpp numbers them.
const (
	tokNormal  = 1
	tokUnknown = 2
	tokControl = 3
	tokByte    = 6
)

// spmVocab builds a vocabulary llama.cpp's SPM tokenizer accepts: <unk>,
// <s>, </s>, the 256 byte-fallback tokens it requires (it looks up <0x0A>
// for newlines), the special tokens, then distinct pieces: "▁", printable
// ASCII, "▁"+letter, and letter n-grams, scored so shorter pieces merge
// first.
func spmVocab(n int, special []string) ([]string, []float32, []int32) {
	tokens := make([]string, 0, n)
	scores := make([]float32, 0, n)
	types := make([]int32, 0, n)
	add := func(s string, score float32, typ int32) {
		tokens = append(tokens, s)
		scores = append(scores, score)
		types = append(types, typ)
	}
	add("<unk>", 0, tokUnknown)
	add("<s>", 0, tokControl)
	add("</s>", 0, tokControl)
	for b := 0; b < 256; b++ {
		add(fmt.Sprintf("<0x%02X>", b), 0, tokByte)
	}
	for _, s := range special {
		add(s, 0, tokControl)
	}
	seen := make(map[string]bool, n)
	for _, t := range tokens {
		seen[t] = true
	}
	next := pieceGenerator()
	for len(tokens) < n {
		s := next()
		if seen[s] {
			continue
		}
		seen[s] = true
		add(s, -float32(len(tokens)), tokNormal)
	}
	return tokens, scores, types
}

// pieceGenerator yields an endless sequence of distinct pieces.
func pieceGenerator() func() string {
	var queue []string
	queue = append(queue, "▁")
	for c := byte('!'); c <= '~'; c++ {
		queue = append(queue, string(c))
	}
	for c := byte('a'); c <= 'z'; c++ {
		queue = append(queue, "▁"+string(c))
	}
	letters := "etaoinshrdlucmfwypvbgkjqxz"
	// n-grams over letters, breadth first, each also with a "▁" prefix.
	level := []string{""}
	return func() string {
		for len(queue) == 0 {
			var nextLevel []string
			for _, prefix := range level {
				for i := 0; i < len(letters); i++ {
					s := prefix + letters[i:i+1]
					nextLevel = append(nextLevel, s)
					if len(s) > 1 {
						queue = append(queue, s, "▁"+s)
					}
				}
			}
			level = nextLevel
		}
		s := queue[0]
		queue = queue[1:]
		return s
	}
}

func fillConst(w io.Writer, n int, v float32) error {
	buf := make([]byte, 4*n)
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
	}
	_, err := w.Write(buf)
	return err
}

// fillRandom writes n weights uniform in [-scale, scale].
func fillRandom(w io.Writer, rng *rand.Rand, t gguf.GGMLType, n int, scale float32) error {
	const chunk = 1 << 16 // elements per write, a multiple of 32
	switch t {
	case gguf.TypeQ8_0:
		d := f32ToF16(scale / 127)
		buf := make([]byte, chunk/32*34)
		for done := 0; done < n; done += chunk {
			k := min(chunk, n-done) / 32
			b := buf[:k*34]
			for i := 0; i < k; i++ {
				blk := b[i*34 : i*34+34]
				binary.LittleEndian.PutUint16(blk, d)
				for j := 0; j < 32; j += 8 {
					binary.LittleEndian.PutUint64(blk[2+j:], rng.Uint64())
				}
				// -128 would make the range asymmetric; fold it to -127.
				for j := 2; j < 34; j++ {
					if blk[j] == 0x80 {
						blk[j] = 0x81
					}
				}
			}
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
	case gguf.TypeQ4_0:
		// 32 4-bit values q, each weighing (q-8)·d: [-8d, 7d].
		d := f32ToF16(scale / 8)
		buf := make([]byte, chunk/32*18)
		for done := 0; done < n; done += chunk {
			k := min(chunk, n-done) / 32
			b := buf[:k*18]
			for i := 0; i < k; i++ {
				blk := b[i*18 : i*18+18]
				binary.LittleEndian.PutUint16(blk, d)
				binary.LittleEndian.PutUint64(blk[2:], rng.Uint64())
				binary.LittleEndian.PutUint64(blk[10:], rng.Uint64())
			}
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
	case gguf.TypeF16, gguf.TypeF32:
		size := 2
		if t == gguf.TypeF32 {
			size = 4
		}
		buf := make([]byte, chunk*size)
		for done := 0; done < n; done += chunk {
			k := min(chunk, n-done)
			b := buf[:k*size]
			for i := 0; i < k; i++ {
				x := (rng.Float32()*2 - 1) * scale
				if size == 2 {
					binary.LittleEndian.PutUint16(b[2*i:], f32ToF16(x))
				} else {
					binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
				}
			}
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("cannot generate %s weights", t)
	}
	return nil
}

// f32ToF16 converts to IEEE half precision, rounding to nearest even.
func f32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23&0xff) - 127 + 15
	mant := b & 0x7fffff
	switch {
	case b&0x7fffffff == 0:
		return sign
	case exp >= 0x1f:
		if b>>23&0xff == 0xff && mant != 0 {
			return sign | 0x7e00 // NaN
		}
		return sign | 0x7c00 // overflow to infinity
	case exp <= 0:
		if exp < -10 {
			return sign // underflow to zero
		}
		mant |= 0x800000
		shift := uint32(14 - exp)
		h := mant >> shift
		rem := mant & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && h&1 == 1) {
			h++
		}
		return sign | uint16(h)
	}
	h := uint32(exp)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
		h++ // may carry into the exponent, which is still correct
	}
	return sign | uint16(h)
}
