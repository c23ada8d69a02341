package gguf_test

import (
	"bytes"
	"testing"

	"github.com/helexa-ai/cortex/internal/gguf"
	"github.com/helexa-ai/cortex/internal/gguf/ggufgen"
)

// fuzzSeed writes a small llama-shaped header with tiny tensors: every
// metadata key Estimate reads, scalar and per-layer forms, so mutations
// reach the arithmetic as well as the parser.
func fuzzSeed(f *testing.F, kvs []gguf.KV) []byte {
	f.Helper()
	var buf bytes.Buffer
	tensors := []ggufgen.Tensor{
		{Name: "token_embd.weight", Shape: []uint64{8, 4}, Type: gguf.TypeF32},
		{Name: "blk.0.attn_q.weight", Shape: []uint64{32, 2}, Type: gguf.TypeQ8_0},
		{Name: "output.weight", Shape: []uint64{8}, Type: gguf.TypeF16},
	}
	if err := ggufgen.Write(&buf, kvs, tensors); err != nil {
		f.Fatal(err)
	}
	return buf.Bytes()
}

// FuzzRead parses arbitrary bytes as a GGUF header (model files come from
// users and from the network) and runs every accessor and the memory
// estimate on what parses: nothing may panic, and the parser must not
// allocate for counts the input cannot back.
func FuzzRead(f *testing.F) {
	base := []gguf.KV{
		{Key: "general.architecture", Value: gguf.String("llama")},
		{Key: "llama.context_length", Value: gguf.Uint32(2048)},
		{Key: "llama.embedding_length", Value: gguf.Uint32(8)},
		{Key: "llama.block_count", Value: gguf.Uint32(2)},
		{Key: "llama.feed_forward_length", Value: gguf.Uint32(16)},
		{Key: "llama.attention.head_count", Value: gguf.Uint32(2)},
		{Key: "tokenizer.ggml.tokens", Value: gguf.Strings([]string{"<unk>", "<s>", "</s>", "a"})},
	}
	f.Add(fuzzSeed(f, base), 512, uint8(1), uint8(0), false)
	perLayer := append(append([]gguf.KV(nil), base...),
		gguf.KV{Key: "llama.attention.head_count_kv", Value: gguf.Int32s([]int32{1, 2})},
		gguf.KV{Key: "llama.attention.key_length", Value: gguf.Uint32(4)},
		gguf.KV{Key: "general.alignment", Value: gguf.Uint32(64)},
		gguf.KV{Key: "nested", Value: gguf.Arrays([]gguf.Value{gguf.Float32s([]float32{1}), gguf.Uint32s([]uint32{2})})},
	)
	f.Add(fuzzSeed(f, perLayer), 0, uint8(4), uint8(1), true)
	f.Add([]byte("GGUF\x03\x00\x00\x00"), 0, uint8(0), uint8(2), false)
	kvTypes := []string{"f16", "q8_0", "q4_0", "bogus"}
	f.Fuzz(func(t *testing.T, data []byte, ctxLen int, parallel, kvType uint8, flash bool) {
		gf, err := gguf.Read(bytes.NewReader(data))
		if err != nil {
			if gf != nil {
				t.Fatalf("error %v with a file", err)
			}
			return
		}
		_ = gf.Architecture()
		_ = gf.VocabSize()
		_ = gf.Parameters()
		_ = gf.WeightsBytes()
		for _, kv := range gf.KV {
			v := kv.Value
			_, _ = v.Uint()
			_, _ = v.Int()
			_, _ = v.Float()
			_, _ = v.Strs()
			_, _ = v.Ints()
			_, _ = v.Floats()
			_ = v.Len()
		}
		for _, ti := range gf.Tensors {
			_ = ti.Elements()
			if ti.Size < 0 {
				t.Fatalf("tensor %s has negative size %d", ti.Name, ti.Size)
			}
		}
		// Context lengths as a Model may ask for them (the API bounds
		// them), and the defaults (0).
		ctx := ctxLen % (1 << 20)
		if ctx < 0 {
			ctx = -ctx
		}
		_ = gguf.Estimate(gf, ctx, int(parallel), kvTypes[int(kvType)%len(kvTypes)], flash)
	})
}
