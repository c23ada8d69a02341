package ggufgen

import (
	"bytes"
	"io"
	"reflect"
	"testing"

	"github.com/helexa-ai/cortex/internal/gguf"
)

func TestWriteReadRoundTrip(t *testing.T) {
	kvs := []gguf.KV{
		{Key: "general.architecture", Value: gguf.String("test")},
		{Key: "a.u8", Value: gguf.Uint8(7)},
		{Key: "a.u32", Value: gguf.Uint32(1 << 31)},
		{Key: "a.u64", Value: gguf.Uint64(1 << 40)},
		{Key: "a.i32", Value: gguf.Int32(-5)},
		{Key: "a.i64", Value: gguf.Int64(-1 << 40)},
		{Key: "a.f32", Value: gguf.Float32(1.5)},
		{Key: "a.f64", Value: gguf.Float64(-2.25)},
		{Key: "a.bool", Value: gguf.Bool(true)},
		{Key: "a.strs", Value: gguf.Strings([]string{"x", "", "zz"})},
		{Key: "a.f32s", Value: gguf.Float32s([]float32{1, -1})},
		{Key: "a.i32s", Value: gguf.Int32s([]int32{3, -4})},
		{Key: "a.u32s", Value: gguf.Uint32s([]uint32{8, 9})},
		{Key: "a.nested", Value: gguf.Arrays([]gguf.Value{gguf.Int32s([]int32{1}), gguf.Int32s([]int32{2, 3})})},
	}
	tensors := []Tensor{
		{Name: "t0", Shape: []uint64{3}, Type: gguf.TypeF32, Fill: func(w io.Writer) error { _, err := w.Write(make([]byte, 12)); return err }},
		{Name: "t1", Shape: []uint64{64, 2}, Type: gguf.TypeQ8_0},
		{Name: "t2", Shape: []uint64{5, 1, 1, 2}, Type: gguf.TypeF16},
	}
	var buf bytes.Buffer
	if err := Write(&buf, kvs, tensors); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Read(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.KV, kvs) {
		t.Errorf("KV round trip:\n got %+v\nwant %+v", f.KV, kvs)
	}
	wantSizes := []int64{12, 136, 20}
	for i, ti := range f.Tensors {
		if ti.Name != tensors[i].Name || !reflect.DeepEqual(ti.Shape, tensors[i].Shape) || ti.Type != tensors[i].Type || ti.Size != wantSizes[i] {
			t.Errorf("tensor %d = %+v", i, ti)
		}
		if ti.Offset%gguf.DefaultAlignment != 0 {
			t.Errorf("tensor %s offset %d unaligned", ti.Name, ti.Offset)
		}
	}
	if f.DataOffset%gguf.DefaultAlignment != 0 || int64(buf.Len()) < f.DataOffset+int64(f.Tensors[2].Offset)+20 {
		t.Errorf("data offset %d, file %d", f.DataOffset, buf.Len())
	}
	if v, _ := f.Int("a.i64"); v != -1<<40 {
		t.Errorf("a.i64 = %d", v)
	}
	if v, ok := f.Uint("a.i32"); ok {
		t.Errorf("negative value read as unsigned: %d", v)
	}
	if v, _ := f.Ints("a.u32s"); !reflect.DeepEqual(v, []int64{8, 9}) {
		t.Errorf("a.u32s = %v", v)
	}
}

func TestWriteRejectsShortFill(t *testing.T) {
	err := Write(io.Discard, nil, []Tensor{{Name: "t", Shape: []uint64{4}, Type: gguf.TypeF32,
		Fill: func(w io.Writer) error { _, err := w.Write(make([]byte, 3)); return err }}})
	if err == nil {
		t.Fatal("short tensor data accepted")
	}
}

func TestWriteRandomLlama(t *testing.T) {
	p := LlamaParams{Layers: 3, Embd: 64, Heads: 4, HeadsKV: 2, FF: 128, Vocab: 400, Context: 512,
		ChatTemplate: "{{ messages }}", SpecialTokens: []string{"<|im_start|>", "<|im_end|>"}, WeightType: "q8_0"}
	var buf bytes.Buffer
	if err := WriteRandomLlama(&buf, p); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Read(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if f.Architecture() != "llama" || f.VocabSize() != 400 {
		t.Fatalf("arch %q vocab %d", f.Architecture(), f.VocabSize())
	}
	if tmpl, _ := f.String("tokenizer.chat_template"); tmpl != p.ChatTemplate {
		t.Errorf("chat template %q", tmpl)
	}
	toks, _ := f.Strings("tokenizer.ggml.tokens")
	seen := map[string]bool{}
	for _, tok := range toks {
		if seen[tok] {
			t.Fatalf("duplicate token %q", tok)
		}
		seen[tok] = true
	}
	if toks[259] != "<|im_start|>" || !seen["<0x0A>"] {
		t.Errorf("special or byte tokens missing")
	}
	if k, _ := f.Tensor("blk.2.attn_k.weight"); !reflect.DeepEqual(k.Shape, []uint64{64, 32}) || k.Type != gguf.TypeQ8_0 {
		t.Errorf("attn_k = %+v", k)
	}
	n, err := LlamaParameterCount(p)
	if err != nil || uint64(n) != f.Parameters() {
		t.Errorf("parameter count %d, file has %d", n, f.Parameters())
	}
	// Q4_0 writes 18-byte blocks that the reader sizes the same way.
	p4 := p
	p4.WeightType = "q4_0"
	var q4 bytes.Buffer
	if err := WriteRandomLlama(&q4, p4); err != nil {
		t.Fatal(err)
	}
	f4, err := gguf.Read(bytes.NewReader(q4.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if k, _ := f4.Tensor("blk.2.ffn_down.weight"); k.Type != gguf.TypeQ4_0 || f4.Parameters() != f.Parameters() || q4.Len() >= buf.Len() {
		t.Errorf("q4_0: ffn_down %+v, %d parameters (q8_0 %d), %d bytes (q8_0 %d)", k, f4.Parameters(), f.Parameters(), q4.Len(), buf.Len())
	}
	// The same seed gives the same file.
	var again bytes.Buffer
	if err := WriteRandomLlama(&again, p); err != nil || !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("generation is not deterministic")
	}
	for _, bad := range []LlamaParams{{Embd: 30, Heads: 4}, {Vocab: 100}, {Heads: 4, HeadsKV: 3}, {WeightType: "q4_k"}} {
		if err := WriteRandomLlama(io.Discard, bad); err == nil {
			t.Errorf("params %+v accepted", bad)
		}
	}
}

func TestF32ToF16(t *testing.T) {
	tests := []struct {
		in   float32
		want uint16
	}{
		{0, 0}, {1, 0x3c00}, {-2, 0xc000}, {0.5, 0x3800}, {65504, 0x7bff}, {1e6, 0x7c00},
		{5.960464477539063e-08, 0x0001}, {1e-9, 0}, {0.1, 0x2e66}, {float32(1) / 3, 0x3555},
	}
	for _, tc := range tests {
		if got := f32ToF16(tc.in); got != tc.want {
			t.Errorf("f32ToF16(%v) = %#04x, want %#04x", tc.in, got, tc.want)
		}
	}
}
