package gguf

import "strings"

// Engine defaults the estimate mirrors (engine/internal/sched and
// engine/llamacpp): 4 sequences, the trained context capped at 8192, and
// micro-batches of 512 tokens.
const (
	estDefaultParallel   = 4
	estDefaultMaxContext = 8192
	estUbatch            = 512
	estEmbedOutputs      = 128 // rows the engine's Embed decodes at once
	// estMaxLayers is llama.cpp's LLAMA_MAX_LAYERS: a header claiming more
	// layers does not load, and costing its claim would allocate per layer.
	estMaxLayers = 512
)

// MemoryEstimate is the memory a model needs in the engine, in bytes.
type MemoryEstimate struct {
	// Weights is the size of all tensors.
	Weights int64
	// KVCache is the key/value cache of all sequences.
	KVCache int64
	// Compute is llama.cpp's graph (compute) buffer for one micro-batch.
	Compute int64
	// Output is the host buffer for logits and embeddings.
	Output int64
	// Total is the sum of the above.
	Total int64

	// ContextLength and Parallel are the values estimated for, after
	// defaults; Cells is the number of KV cells per sequence (llama.cpp
	// rounds sequences up to a multiple of 256 cells).
	ContextLength, Parallel, Cells int
}

// Estimate predicts the memory the engine allocates for a model loaded
// with ctxLen tokens per sequence (0: trained context capped at 8192) and
// parallel sequences (0: 4), with a KV cache of kvType ("f16", "q8_0",
// "q4_0"; anything else is costed as f16, the largest) and flash attention
// on or off. It assumes every layer on one device.
//
// KV cache: for each layer, (n_embd_k_gqa + n_embd_v_gqa) × cells ×
// parallel × bytes per element, where n_embd_*_gqa = head size ×
// head_count_kv of that layer (head_count_kv may be a per-layer array;
// layers with none, as in hybrid models, hold no cache). Sliding-window
// layers are costed in full, because the engine keeps llama.cpp's default
// full-size cache for them (swa_full), which lets prompts be reused.
//
// Compute buffer, with u = 512 (the micro-batch), n_kv = cells per
// sequence, V = vocabulary, all intermediate values f32:
//
//	4·u·V                                  logits of a full micro-batch
//	+ u·n_kv·(flash ? 6 : 4)               attention mask (f32, plus f16 for flash attention)
//	+ (flash ? 0 : 4·u·n_kv·n_head)        attention scores without flash attention
//	+ 4·u·(3·n_ff + 4·n_embd + 2·n_embd_kv) feed-forward and hidden states
//	+ 1 MiB
//
// llama.cpp reuses memory between these, so the sum is an upper bound:
// against the allocations llama.cpp logged for stories260K and generated
// llamas (ctx 512–8192, 1–4 sequences, vocab 512–32000, flash attention on
// and off) it was 1.0–1.9× the actual compute buffer, never below.
//
// Output buffer: (V + n_embd) × 4 bytes for max(parallel, 128) rows, the
// most the engine decodes with outputs at once (embeddings use 128).
func Estimate(f *File, ctxLen, parallel int, kvType string, flashAttention bool) MemoryEstimate {
	arch := f.Architecture()
	u64 := func(key string) int64 {
		v, _ := f.Uint(arch + "." + key)
		return int64(v)
	}
	// perLayer reads a value that may be a scalar or a per-layer array.
	perLayer := func(key string, n int, def int64) []int64 {
		out := make([]int64, n)
		vals, ok := f.Ints(arch + "." + key)
		for i := range out {
			switch {
			case !ok || len(vals) == 0:
				out[i] = def
			case len(vals) == 1:
				out[i] = vals[0]
			case i < len(vals):
				out[i] = vals[i]
			}
		}
		return out
	}
	maxOf := func(v []int64) int64 {
		var m int64
		for _, x := range v {
			m = max(m, x)
		}
		return m
	}

	e := MemoryEstimate{Weights: f.WeightsBytes(), ContextLength: ctxLen, Parallel: parallel}
	if e.Parallel <= 0 {
		e.Parallel = estDefaultParallel
	}
	if e.ContextLength <= 0 {
		e.ContextLength = estDefaultMaxContext
		if t := int(u64("context_length")); t > 0 {
			e.ContextLength = min(t, estDefaultMaxContext)
		}
	}
	// llama.cpp pads the whole context to 256, then each sequence's share.
	nCtx := alignUp(int64(e.ContextLength)*int64(e.Parallel), 256)
	e.Cells = int(alignUp(nCtx/int64(e.Parallel), 256))

	nLayer := int(min(max(u64("block_count"), 0), estMaxLayers))
	nEmbd := u64("embedding_length")
	heads := perLayer("attention.head_count", nLayer, 0)
	nHead := maxOf(heads)
	headsKV := perLayer("attention.head_count_kv", nLayer, nHead)
	var headK, headV int64
	if nHead > 0 {
		headK, headV = nEmbd/nHead, nEmbd/nHead
	}
	if k := u64("attention.key_length"); k > 0 {
		headK = k
	}
	if v := u64("attention.value_length"); v > 0 {
		headV = v
	}
	var kvElems, maxKV int64
	for l := 0; l < nLayer; l++ {
		per := headK*headsKV[l] + headV*headsKV[l]
		kvElems += per
		maxKV = max(maxKV, per/2)
	}
	cellsTotal := int64(e.Cells) * int64(e.Parallel)
	e.KVCache = int64(float64(kvElems*cellsTotal) * kvBytesPerElement(kvType))

	vocab := int64(f.VocabSize())
	nFF := maxOf(perLayer("feed_forward_length", max(nLayer, 1), 0))
	u := min(int64(estUbatch), int64(e.ContextLength)*int64(e.Parallel))
	nKV := int64(e.Cells)
	mask := int64(4)
	if flashAttention {
		mask = 6
	}
	e.Compute = 4*u*vocab + u*nKV*mask + 4*u*(3*nFF+4*nEmbd+2*maxKV) + 1<<20
	if !flashAttention {
		e.Compute += 4 * u * nKV * nHead
	}
	e.Output = int64(max(e.Parallel, estEmbedOutputs)) * (vocab + nEmbd) * 4
	e.Total = e.Weights + e.KVCache + e.Compute + e.Output
	return e
}

func kvBytesPerElement(kvType string) float64 {
	switch strings.ToLower(kvType) {
	case "q8_0":
		return TypeQ8_0.bytesPerElement()
	case "q4_0":
		return TypeQ4_0.bytesPerElement()
	}
	return TypeF16.bytesPerElement()
}

// ProjectorEstimate is the memory a vision projector (mmproj GGUF) needs
// next to its model, in bytes, and what one image costs the context.
type ProjectorEstimate struct {
	// Weights is the size of the projector's tensors.
	Weights int64
	// Compute is the encoder's graph buffer for one image.
	Compute int64
	// Total is Weights + Compute.
	Total int64
	// ImageTokens is the number of context positions one image takes
	// (for projectors that resize to a fixed square; 0 when the file does
	// not say).
	ImageTokens int
}

// EstimateProjector predicts the memory of a vision projector. The
// encoder sees one image of image_size² pixels as (image_size /
// patch_size)² patches (n) of width e with h heads and feed-forward f,
// all f32:
//
//	4·3·image_size²                   the input image
//	+ 4·n·(8·e + 2·f)                 hidden states, attention and feed-forward
//	+ 4·n²·h                          attention scores
//	+ 4·n·(hidden + n_embd_text)·2    projector layers
//	+ 1 MiB
//
// The sum is an upper bound for the same reason as Estimate's: ggml
// reuses buffers between these. It has not been measured against
// llama.cpp's own accounting for large projectors.
func EstimateProjector(f *File) ProjectorEstimate {
	u := func(key string) int64 {
		v, _ := f.Uint("clip.vision." + key)
		return int64(v)
	}
	size, patch := u("image_size"), u("patch_size")
	e, ff, heads := u("embedding_length"), u("feed_forward_length"), u("attention.head_count")
	var n int64
	if size > 0 && patch > 0 {
		n = (size / patch) * (size / patch)
	}
	var proj int64
	for _, name := range []string{"mm.0.weight", "mm.2.weight"} {
		if t, ok := f.Tensor(name); ok && len(t.Shape) == 2 {
			proj += int64(t.Shape[1])
		}
	}
	pe := ProjectorEstimate{Weights: f.WeightsBytes(), ImageTokens: int(n)}
	pe.Compute = 4*3*size*size + 4*n*(8*e+2*ff) + 4*n*n*heads + 4*n*proj*2 + 1<<20
	pe.Total = pe.Weights + pe.Compute
	return pe
}
