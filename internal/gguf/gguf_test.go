package gguf

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"testing"
	"time"
)

// storiesPath finds the shared test model. Its absence is a broken test
// environment, so the tests fail rather than skip.
func storiesPath(t testing.TB) string {
	t.Helper()
	p := os.Getenv("CORTEX_TEST_MODEL")
	if p == "" {
		p = filepath.Join("..", "..", "..", "shared", "models", "stories260K.gguf")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("test model missing (set CORTEX_TEST_MODEL): %v", err)
	}
	return p
}

func TestReadStories(t *testing.T) {
	f, err := Open(storiesPath(t))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"version", f.Version, uint32(3)},
		{"architecture", f.Architecture(), "llama"},
		{"file size", f.FileSize, int64(1185376)},
		{"vocab", f.VocabSize(), 512},
		{"tensors", len(f.Tensors), 48},
		{"weights", f.WeightsBytes(), int64(1171200)},
		{"data offset", f.DataOffset, int64(14176)},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	for _, k := range []struct {
		key  string
		want uint64
	}{
		{"llama.context_length", 2048}, {"llama.embedding_length", 64}, {"llama.block_count", 5},
		{"llama.attention.head_count", 8}, {"llama.attention.head_count_kv", 4}, {"tokenizer.ggml.bos_token_id", 1},
	} {
		if v, ok := f.Uint(k.key); !ok || v != k.want {
			t.Errorf("%s = %d, %v; want %d", k.key, v, ok, k.want)
		}
	}
	if m, _ := f.String("tokenizer.ggml.model"); m != "llama" {
		t.Errorf("tokenizer model = %q", m)
	}
	if eps, ok := f.Float("llama.attention.layer_norm_rms_epsilon"); !ok || eps < 9e-6 || eps > 1.1e-5 {
		t.Errorf("rms eps = %v", eps)
	}
	toks, _ := f.Strings("tokenizer.ggml.tokens")
	if len(toks) != 512 || toks[1] != "<s>" || toks[2] != "</s>" {
		t.Errorf("tokens: %d, %q %q", len(toks), toks[1], toks[2])
	}
	for _, ti := range f.Tensors {
		if ti.Type != TypeF32 {
			t.Errorf("tensor %s is %s, want F32", ti.Name, ti.Type)
		}
	}
	last := f.Tensors[len(f.Tensors)-1]
	if end := f.DataOffset + int64(last.Offset) + last.Size; end != f.FileSize {
		t.Errorf("last tensor ends at %d, file is %d", end, f.FileSize)
	}
	if _, ok := f.String("no.such.key"); ok {
		t.Error("missing key reported present")
	}
	if _, ok := f.Uint("general.architecture"); ok {
		t.Error("string reported as integer")
	}
}

func TestTensorBytes(t *testing.T) {
	tests := []struct {
		typ   GGMLType
		shape []uint64
		want  int64
	}{
		{TypeF32, []uint64{64, 512}, 131072},
		{TypeF16, []uint64{4096, 4096}, 33554432},
		{TypeBF16, []uint64{10}, 20},
		{TypeQ4_0, []uint64{4096, 4096}, 4096 * 4096 / 32 * 18},
		{TypeQ4_1, []uint64{64}, 40},
		{TypeQ5_0, []uint64{64}, 44},
		{TypeQ5_1, []uint64{64}, 48},
		{TypeQ8_0, []uint64{4096, 2}, 4096 / 32 * 34 * 2},
		{TypeQ2_K, []uint64{256}, 84},
		{TypeQ3_K, []uint64{256}, 110},
		{TypeQ4_K, []uint64{4096, 4096}, 4096 * 4096 / 256 * 144},
		{TypeQ5_K, []uint64{256}, 176},
		{TypeQ6_K, []uint64{512}, 420},
		{TypeQ8_K, []uint64{256}, 292},
		{TypeIQ2_XXS, []uint64{256}, 66},
		{TypeIQ2_XS, []uint64{256}, 74},
		{TypeIQ2_S, []uint64{256}, 82},
		{TypeIQ3_XXS, []uint64{256}, 98},
		{TypeIQ3_S, []uint64{256}, 110},
		{TypeIQ1_S, []uint64{256}, 50},
		{TypeIQ1_M, []uint64{256}, 56},
		{TypeIQ4_NL, []uint64{32}, 18},
		{TypeIQ4_XS, []uint64{256}, 136},
		{TypeTQ1_0, []uint64{256}, 54},
		{TypeTQ2_0, []uint64{256}, 66},
		{TypeMXFP4, []uint64{2880, 2}, 2880 / 32 * 17 * 2},
		{TypeI32, []uint64{3}, 12},
	}
	for _, tc := range tests {
		t.Run(tc.typ.String(), func(t *testing.T) {
			got, err := tc.typ.TensorBytes(tc.shape)
			if err != nil || got != tc.want {
				t.Fatalf("TensorBytes(%v) = %d, %v; want %d", tc.shape, got, err, tc.want)
			}
		})
	}
	if _, err := TypeQ4_K.TensorBytes([]uint64{100}); err == nil {
		t.Error("partial block accepted")
	}
	if _, err := GGMLType(4).TensorBytes([]uint64{32}); err == nil {
		t.Error("removed type accepted")
	}
	if typ, err := ParseGGMLType("q8_0"); err != nil || typ != TypeQ8_0 {
		t.Errorf("ParseGGMLType = %v, %v", typ, err)
	}
}

func TestHTTPReaderAt(t *testing.T) {
	path := storiesPath(t)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer t" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		requests.Add(1)
		http.ServeContent(w, r, "m.gguf", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	ctx := context.Background()
	hr, err := NewHTTPReaderAt(ctx, srv.Client(), srv.URL+"/m.gguf?sig=secret", http.Header{"Authorization": {"Bearer t"}})
	if err != nil {
		t.Fatal(err)
	}
	if hr.Size() != int64(len(data)) {
		t.Fatalf("size %d", hr.Size())
	}
	remote, err := Read(hr)
	if err != nil {
		t.Fatal(err)
	}
	local, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(remote.KV, local.KV) || !reflect.DeepEqual(remote.Tensors, local.Tensors) {
		t.Error("remote and local headers differ")
	}
	if n := requests.Load(); n > 3 {
		t.Errorf("%d requests for a 14 KB header", n)
	}
	buf := make([]byte, 10)
	if n, err := hr.ReadAt(buf, int64(len(data))-4); n != 4 || !errors.Is(err, io.EOF) || !bytes.Equal(buf[:4], data[len(data)-4:]) {
		t.Errorf("read at the end: %d, %v", n, err)
	}

	noRange := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(data)
	}))
	defer noRange.Close()
	if _, err := NewHTTPReaderAt(ctx, nil, noRange.URL, nil); err == nil {
		t.Error("server without range support accepted")
	}
	if _, err := NewHTTPReaderAt(ctx, srv.Client(), srv.URL, nil); err == nil {
		t.Error("unauthorised answer accepted")
	}
}

func TestEstimate(t *testing.T) {
	f, err := Open(storiesPath(t))
	if err != nil {
		t.Fatal(err)
	}
	// stories260K: 5 layers, 4 KV heads of 8, 2048 trained context.
	e := Estimate(f, 0, 0, "f16", true)
	if e.ContextLength != 2048 || e.Parallel != 4 || e.Cells != 2048 {
		t.Errorf("defaults: %+v", e)
	}
	if want := int64(5 * (32 + 32) * 2048 * 4 * 2); e.KVCache != want {
		t.Errorf("KV = %d, want %d", e.KVCache, want)
	}
	if e.Weights != 1171200 || e.Total != e.Weights+e.KVCache+e.Compute+e.Output {
		t.Errorf("weights %d total %d", e.Weights, e.Total)
	}
	tests := []struct {
		name string
		a, b MemoryEstimate
		less func(a, b MemoryEstimate) bool
	}{
		{"q8_0 KV smaller than f16", Estimate(f, 4096, 2, "q8_0", true), Estimate(f, 4096, 2, "f16", true),
			func(a, b MemoryEstimate) bool { return a.KVCache < b.KVCache }},
		{"q4_0 KV smaller than q8_0", Estimate(f, 4096, 2, "q4_0", true), Estimate(f, 4096, 2, "q8_0", true),
			func(a, b MemoryEstimate) bool { return a.KVCache < b.KVCache }},
		{"flash attention saves compute", Estimate(f, 4096, 2, "f16", true), Estimate(f, 4096, 2, "f16", false),
			func(a, b MemoryEstimate) bool { return a.Compute < b.Compute }},
		{"more sequences need more KV", Estimate(f, 1024, 2, "f16", true), Estimate(f, 1024, 4, "f16", true),
			func(a, b MemoryEstimate) bool { return a.KVCache*2 == b.KVCache }},
		{"contexts round up to 256 cells", Estimate(f, 1000, 1, "f16", true), Estimate(f, 1024, 1, "f16", true),
			func(a, b MemoryEstimate) bool { return a.KVCache == b.KVCache && a.Cells == 1024 }},
		{"unknown kv type costed as f16", Estimate(f, 1024, 1, "bogus", true), Estimate(f, 1024, 1, "f16", true),
			func(a, b MemoryEstimate) bool { return a.KVCache == b.KVCache }},
	}
	for _, tc := range tests {
		if !tc.less(tc.a, tc.b) {
			t.Errorf("%s: %+v vs %+v", tc.name, tc.a, tc.b)
		}
	}
}
