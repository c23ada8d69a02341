package gguf_test

// These tests build their files with package ggufgen, which imports gguf,
// so they live in the external test package.

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/helexa-ai/cortex/internal/gguf"
	"github.com/helexa-ai/cortex/internal/gguf/ggufgen"
)

func TestReadCorrupt(t *testing.T) {
	var good bytes.Buffer
	if err := ggufgen.WriteRandomLlama(&good, ggufgen.LlamaParams{Layers: 1, Embd: 32, Heads: 2, FF: 64, Vocab: 300}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"not gguf", []byte("GGML0000000000000000000000")},
		{"version 1", []byte("GGUF\x01\x00\x00\x00")},
		{"big endian", []byte("GGUF\x00\x00\x00\x03")},
		{"truncated header", good.Bytes()[:100]},
		{"truncated tensors", good.Bytes()[:good.Len()-100]},
		{"huge kv count", append([]byte("GGUF\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f)},
		{"huge string", append([]byte("GGUF\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00"), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := gguf.Read(bytes.NewReader(tc.data)); err == nil {
				t.Fatal("corrupt file accepted")
			}
		})
	}
	if _, err := gguf.Read(bytes.NewReader(nil)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("empty input: %v", err)
	}
	// Flipping any single header byte must never panic.
	hdr := good.Bytes()[:4096]
	for i := 0; i < len(hdr); i++ {
		b := bytes.Clone(hdr)
		b[i] ^= 0xff
		_, _ = gguf.Read(bytes.NewReader(b))
	}
}

// Per-layer head counts (hybrid and sliding-window models) are summed
// layer by layer; layers without gguf.KV heads hold no cache.
func TestEstimatePerLayerHeads(t *testing.T) {
	kvs := []gguf.KV{
		{Key: "general.architecture", Value: gguf.String("test")},
		{Key: "test.block_count", Value: gguf.Uint32(3)},
		{Key: "test.embedding_length", Value: gguf.Uint32(128)},
		{Key: "test.context_length", Value: gguf.Uint32(100000)},
		{Key: "test.feed_forward_length", Value: gguf.Uint32s([]uint32{256, 512, 256})},
		{Key: "test.attention.head_count", Value: gguf.Uint32(4)},
		{Key: "test.attention.head_count_kv", Value: gguf.Int32s([]int32{2, 0, 4})},
		{Key: "test.vocab_size", Value: gguf.Uint32(1000)},
	}
	var buf bytes.Buffer
	if err := ggufgen.Write(&buf, kvs, nil); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Read(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	e := gguf.Estimate(f, 0, 1, "f16", true)
	if e.ContextLength != 8192 {
		t.Errorf("context %d, want the 8192 cap", e.ContextLength)
	}
	// (2+0+4) heads × 32 dims × (K+V) × 8192 cells × 2 bytes.
	if want := int64(6 * 32 * 2 * 8192 * 2); e.KVCache != want {
		t.Errorf("KV = %d, want %d", e.KVCache, want)
	}
	if e.Compute < 4*512*1000 {
		t.Errorf("compute %d below the logits alone", e.Compute)
	}
}
