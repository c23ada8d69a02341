package llamacpp

/*
// llama.cpp's multimodal library (tools/mtmd), compiled into the pinned
// module, through its own header (cgo.go's #cgo lines put it on the path).
#include "pinned.h"
#include <mtmd.h>

extern void cortexLlamaLog(int level, char *text, void *user_data);

static void cortex_mtmd_log(enum ggml_log_level level, const char *text, void *user_data) {
	cortexLlamaLog((int)level, (char *)text, user_data);
}

static void cortex_mtmd_install_log(void) { mtmd_log_set(cortex_mtmd_log, NULL); }

// cortex_mtmd_tokenize runs mtmd_tokenize on one bitmap, so that Go never
// builds the C array of bitmap pointers.
static int32_t cortex_mtmd_tokenize(struct mtmd_context *ctx, struct mtmd_input_chunks *out, const struct mtmd_input_text *text, const struct mtmd_bitmap *bitmap) {
	const struct mtmd_bitmap *bitmaps[1] = { bitmap };
	return mtmd_tokenize(ctx, out, text, bitmaps, 1);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// mtmd chunk types (enum mtmd_input_chunk_type).
const (
	mtmdChunkText  = 0
	mtmdChunkImage = 1
)

// projector is a loaded multimodal projector (mtmd_context). Only the
// thread that loaded it and then the device worker use it.
type projector struct {
	c         *C.struct_mtmd_context
	nEmbd     int  // width of one embedding row: the text model's input width
	nonCausal bool // images attend to themselves in both directions
}

// loadProjector reads an mmproj GGUF for the text model of cm. The model
// must stay loaded while the projector lives.
func loadProjector(path string, cm *cModel, threads int, gpu bool) (*projector, error) {
	C.cortex_mtmd_install_log()
	cp := C.mtmd_context_params_default()
	cp.use_gpu = C.bool(gpu)
	cp.print_timings = false
	cp.n_threads = C.int(threads)
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	c := C.mtmd_init_from_file(cpath, cm.m, cp)
	if c == nil {
		// mtmd logs the reason (a wrong projector width, a missing tensor),
		// which the engine's logger carries.
		return nil, fmt.Errorf("llama.cpp could not load the projector %s (see the engine log: a projector for another model, or not a projector)", path)
	}
	p := &projector{c: c, nEmbd: int(C.llama_model_n_embd_inp(cm.m))}
	switch {
	case !bool(C.mtmd_support_vision(c)):
		p.free()
		return nil, fmt.Errorf("the projector %s has no vision encoder", path)
	case bool(C.mtmd_decode_use_mrope(c)):
		// M-RoPE (Qwen2-VL and later) gives image tokens 2-D positions,
		// which the engine's batches do not carry.
		p.free()
		return nil, fmt.Errorf("the projector %s needs M-RoPE image positions, which this engine does not support yet", path)
	}
	p.nonCausal = bool(C.mtmd_decode_use_non_causal(c))
	return p, nil
}

func (p *projector) free() {
	if p != nil && p.c != nil {
		C.mtmd_free(p.c)
		p.c = nil
	}
}

// imagePiece is one part of an image as the model reads it: text tokens
// the projector frames images with, or embedding rows.
type imagePiece struct {
	tokens []int
	// chunk is the index of the image chunk in the tokenizer's output
	// (embedding rows come from encoding it); n is its row count.
	chunk int
	n     int
}

func (pc imagePiece) isImage() bool { return pc.tokens == nil }

// len is the number of positions the piece takes.
func (pc imagePiece) len() int {
	if pc.isImage() {
		return pc.n
	}
	return len(pc.tokens)
}

// chunks is a tokenized image: mtmd's chunks for the media marker alone
// with one bitmap.
type chunks struct {
	c *C.struct_mtmd_input_chunks
}

// tokenize preprocesses an image (resizing, slicing) into chunks; it does
// not run the encoder.
func (p *projector) tokenize(w, h int, rgb []byte) (chunks, error) {
	if w <= 0 || h <= 0 || len(rgb) != 3*w*h {
		return chunks{}, errors.New("image is not whole RGB pixels")
	}
	bm := C.mtmd_bitmap_init(C.uint32_t(w), C.uint32_t(h), (*C.uchar)(unsafe.Pointer(&rgb[0])))
	if bm == nil {
		return chunks{}, errors.New("out of memory for an image")
	}
	defer C.mtmd_bitmap_free(bm)
	txt := C.mtmd_input_text_init(C.mtmd_default_marker(), false, true)
	if txt == nil {
		return chunks{}, errors.New("out of memory for an image")
	}
	defer C.mtmd_input_text_free(txt)
	out := C.mtmd_input_chunks_init()
	if out == nil {
		return chunks{}, errors.New("out of memory for an image")
	}
	if rc := C.cortex_mtmd_tokenize(p.c, out, txt, bm); rc != 0 {
		C.mtmd_input_chunks_free(out)
		return chunks{}, fmt.Errorf("llama.cpp could not preprocess the image (code %d)", int(rc))
	}
	return chunks{c: out}, nil
}

func (c chunks) free() {
	if c.c != nil {
		C.mtmd_input_chunks_free(c.c)
	}
}

// pieces lists the chunks as text tokens and image row counts. Audio
// chunks cannot occur: only a bitmap was given.
func (c chunks) pieces() ([]imagePiece, error) {
	n := int(C.mtmd_input_chunks_size(c.c))
	var out []imagePiece
	for i := range n {
		ch := C.mtmd_input_chunks_get(c.c, C.size_t(i))
		switch C.mtmd_input_chunk_get_type(ch) {
		case mtmdChunkText:
			var nt C.size_t
			p := C.mtmd_input_chunk_get_tokens_text(ch, &nt)
			if nt == 0 || p == nil {
				continue
			}
			toks := make([]int, int(nt))
			for j, t := range unsafe.Slice(p, int(nt)) {
				toks[j] = int(t)
			}
			out = append(out, imagePiece{tokens: toks})
		case mtmdChunkImage:
			rows := int(C.mtmd_input_chunk_get_n_tokens(ch))
			if pos := int(C.mtmd_input_chunk_get_n_pos(ch)); pos != rows {
				return nil, fmt.Errorf("image chunk takes %d positions for %d embeddings", pos, rows)
			}
			if rows <= 0 {
				return nil, errors.New("image chunk has no embeddings")
			}
			out = append(out, imagePiece{chunk: i, n: rows})
		default:
			return nil, fmt.Errorf("unexpected chunk type %d", int(C.mtmd_input_chunk_get_type(ch)))
		}
	}
	return out, nil
}

// encode runs the vision encoder on image chunk i and copies its rows
// (n × nEmbd floats) into Go memory.
func (p *projector) encode(c chunks, i, n int) ([]float32, error) {
	ch := C.mtmd_input_chunks_get(c.c, C.size_t(i))
	if ch == nil {
		return nil, fmt.Errorf("no chunk %d", i)
	}
	if rc := C.mtmd_encode_chunk(p.c, ch); rc != 0 {
		return nil, fmt.Errorf("llama.cpp could not encode the image (code %d)", int(rc))
	}
	e := C.mtmd_get_output_embd(p.c)
	if e == nil {
		return nil, errors.New("llama.cpp returned no image embeddings")
	}
	return append([]float32(nil), unsafe.Slice((*float32)(unsafe.Pointer(e)), n*p.nEmbd)...), nil
}

// setCausal switches the context's attention between causal (text) and
// bidirectional (images of projectors that need it).
func (c cContext) setCausal(on bool) { C.llama_set_causal_attn(c.c, C.bool(on)) }
