package llamacpp

/*
// The pinned module's own headers, through the link hack/llama-headers.sh
// makes (every make target that compiles runs it): a signature that changes
// in a module upgrade breaks this package's build, not a running neuron.
// The version in these paths is pinnedModule's; docs/development.md says
// how to upgrade. The tools/mtmd folder is for the vision bindings.
#cgo CPPFLAGS: -I${SRCDIR}/_pinned/ollama@v0.24.0/llama/llama.cpp/include
#cgo CPPFLAGS: -I${SRCDIR}/_pinned/ollama@v0.24.0/llama/llama.cpp/tools/mtmd
#cgo CPPFLAGS: -I${SRCDIR}/_pinned/ollama@v0.24.0/ml/backend/ggml/ggml/include

// Backend libraries loaded at run time (libggml-cuda.so, CPU variants)
// resolve ggml's symbols against the binary, so the binary must export
// them; Go's linker exports almost nothing by default.
#cgo linux LDFLAGS: -Wl,--export-dynamic

#include "pinned.h"

// Defined by the wrapper's build-info.cpp; declared only in llama.cpp's
// C++ common.h, which C cannot include.
extern const char *LLAMA_COMMIT;

// The Go callbacks (callbacks.go). These trampolines have the exact types
// llama.h and ggml.h declare, so the compiler checks them.
extern void cortexLlamaLog(int level, char *text, void *user_data);
extern _Bool cortexLoadProgress(float progress, uintptr_t handle);

static void cortex_log(enum ggml_log_level level, const char *text, void *user_data) {
	cortexLlamaLog((int)level, (char *)text, user_data);
}

static bool cortex_progress(float progress, void *user_data) {
	return cortexLoadProgress(progress, (uintptr_t)user_data);
}

static void cortex_install_log(void) { llama_log_set(cortex_log, NULL); }

static void cortex_set_progress(struct llama_model_params *p, uintptr_t handle) {
	p->progress_callback = cortex_progress;
	p->progress_callback_user_data = (void *)handle;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime/cgo"
	"strings"
	"unsafe"
)

// pinnedModule is the github.com/ollama/ollama version whose headers the
// #cgo lines above name; TestPinnedHeaders checks it against go.mod.
const pinnedModule = "v0.24.0"

// modelParams are the llama_model_params the engine sets.
type modelParams struct {
	devices   []uint64 // ggml device indices; none: llama.cpp's default
	gpuLayers int
	mainGPU   int
	split     []float32 // per device in devices; none: llama.cpp's default
	progress  func(float32)
}

// cModel owns a llama_model and its vocabulary. free releases both; it is
// idempotent.
type cModel struct {
	m *C.struct_llama_model
	v *C.struct_llama_vocab
}

// loadCModel reads a GGUF file. The progress callback runs on the calling
// thread, inside llama.cpp.
func loadCModel(path string, p modelParams) (*cModel, error) {
	cp := C.llama_model_default_params()
	cp.n_gpu_layers = C.int32_t(p.gpuLayers)
	cp.main_gpu = C.int32_t(p.mainGPU)
	cp.use_mmap = true
	cp.vocab_only = false
	// llama.cpp reads these arrays during the load only; C memory keeps
	// Go's pointer rules out of the way.
	if len(p.devices) > 0 {
		devs := unsafe.Slice((*C.ggml_backend_dev_t)(C.calloc(C.size_t(len(p.devices)+1), C.size_t(unsafe.Sizeof(C.ggml_backend_dev_t(nil))))), len(p.devices)+1)
		defer C.free(unsafe.Pointer(&devs[0]))
		for i, d := range p.devices {
			dev := C.ggml_backend_dev_get(C.size_t(d))
			if dev == nil {
				return nil, fmt.Errorf("ggml device %d does not exist", d)
			}
			devs[i] = dev
		}
		cp.devices = &devs[0]
	}
	if len(p.split) > 0 {
		// llama.cpp reads llama_max_devices() entries.
		n := max(len(p.split), int(C.llama_max_devices()))
		split := unsafe.Slice((*C.float)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(C.float(0))))), n)
		defer C.free(unsafe.Pointer(&split[0]))
		for i, f := range p.split {
			split[i] = C.float(f)
		}
		cp.tensor_split = &split[0]
	}
	if p.progress != nil {
		h := cgo.NewHandle(p.progress)
		defer h.Delete()
		C.cortex_set_progress(&cp, C.uintptr_t(h))
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	m := C.llama_model_load_from_file(cpath, cp)
	if m == nil {
		return nil, fmt.Errorf("llama.cpp could not load %s (the log says why)", path)
	}
	v := C.llama_model_get_vocab(m)
	if v == nil {
		C.llama_model_free(m)
		return nil, errors.New("model has no vocabulary")
	}
	return &cModel{m: m, v: v}, nil
}

func (m *cModel) free() {
	if m == nil || m.m == nil {
		return
	}
	C.llama_model_free(m.m)
	m.m, m.v = nil, nil
}

// meta reads a metadata string; ok is false when the key is absent.
func (m *cModel) meta(key string) (string, bool) {
	ck := C.CString(key)
	defer C.free(unsafe.Pointer(ck))
	n := C.llama_model_meta_val_str(m.m, ck, nil, 0)
	if n < 0 {
		return "", false
	}
	buf := make([]byte, int(n)+1)
	C.llama_model_meta_val_str(m.m, ck, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
	return string(buf[:n]), true
}

func (m *cModel) nCtxTrain() int { return int(C.llama_model_n_ctx_train(m.m)) }
func (m *cModel) nEmbd() int     { return int(C.llama_model_n_embd(m.m)) }
func (m *cModel) nHead() int     { return int(C.llama_model_n_head(m.m)) }
func (m *cModel) size() int64    { return int64(C.llama_model_size(m.m)) }
func (m *cModel) hasEncoder() bool {
	return bool(C.llama_model_has_encoder(m.m))
}
func (m *cModel) nVocab() int  { return int(C.llama_vocab_n_tokens(m.v)) }
func (m *cModel) bos() int     { return int(C.llama_vocab_bos(m.v)) }
func (m *cModel) eos() int     { return int(C.llama_vocab_eos(m.v)) }
func (m *cModel) addBOS() bool { return bool(C.llama_vocab_get_add_bos(m.v)) }
func (m *cModel) isEOG(t int) bool {
	return bool(C.llama_vocab_is_eog(m.v, C.llama_token(t)))
}

// piece renders one token. special renders control tokens as their text;
// without it they render as nothing, which is what a completion shows.
func (m *cModel) piece(t int, special bool) []byte {
	var small [32]byte
	n := C.llama_token_to_piece(m.v, C.llama_token(t), (*C.char)(unsafe.Pointer(&small[0])), C.int32_t(len(small)), 0, C.bool(special))
	if n >= 0 {
		return append([]byte(nil), small[:n]...)
	}
	buf := make([]byte, -int(n))
	n = C.llama_token_to_piece(m.v, C.llama_token(t), (*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(len(buf)), 0, C.bool(special))
	if n < 0 {
		return nil
	}
	return buf[:n]
}

// tokenize splits text into tokens; addSpecial adds BOS/EOS as the model
// asks, parseSpecial reads control-token text as those tokens.
func (m *cModel) tokenize(text string, addSpecial, parseSpecial bool) ([]int, error) {
	ct := C.CString(text)
	defer C.free(unsafe.Pointer(ct))
	size := len(text) + 2
	for range 2 {
		buf := make([]C.llama_token, size)
		n := C.llama_tokenize(m.v, ct, C.int32_t(len(text)), &buf[0], C.int32_t(len(buf)), C.bool(addSpecial), C.bool(parseSpecial))
		if n >= 0 {
			out := make([]int, n)
			for i := range out {
				out[i] = int(buf[i])
			}
			return out, nil
		}
		size = -int(n)
	}
	return nil, fmt.Errorf("tokenization failed, required %d tokens", size)
}

// detokenize renders tokens as llama.cpp does, special tokens included.
// The tokens must be inside the vocabulary.
func (m *cModel) detokenize(tokens []int) (string, error) {
	if len(tokens) == 0 {
		return "", nil
	}
	ct := make([]C.llama_token, len(tokens))
	for i, t := range tokens {
		ct[i] = C.llama_token(t)
	}
	size := max(64, len(tokens)*8)
	for range 2 {
		buf := make([]byte, size)
		n := C.llama_detokenize(m.v, &ct[0], C.int32_t(len(ct)), (*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(len(buf)), false, true)
		if n >= 0 {
			return string(buf[:n]), nil
		}
		size = -int(n)
	}
	return "", errors.New("detokenize: buffer size changed between calls")
}

// contextParams are the llama_context_params the engine sets.
type contextParams struct {
	nCtx, nBatch, nUbatch, nSeq, threads int
	flash                                llamaFlash // -1 auto, 0 off, 1 on
	kvType                               string     // f16, q8_0, q4_0
}

// cContext owns a llama_context. free is idempotent.
type cContext struct {
	c   *C.struct_llama_context
	mem C.llama_memory_t
}

// newCContext creates a context on m. It is created with embeddings on,
// so that llama.cpp sizes its buffers for them, then turned to logits only:
// generation needs nothing else, and Embed turns them on for its batches.
func newCContext(m *cModel, p contextParams) (*cContext, error) {
	cp := C.llama_context_default_params()
	cp.n_ctx = C.uint32_t(p.nCtx)
	cp.n_batch = C.uint32_t(p.nBatch)
	cp.n_ubatch = C.uint32_t(p.nUbatch)
	cp.n_seq_max = C.uint32_t(p.nSeq)
	cp.n_threads = C.int32_t(p.threads)
	cp.n_threads_batch = cp.n_threads
	cp.embeddings = true
	switch p.flash {
	case 1:
		cp.flash_attn_type = C.LLAMA_FLASH_ATTN_TYPE_ENABLED
	case 0:
		cp.flash_attn_type = C.LLAMA_FLASH_ATTN_TYPE_DISABLED
	default:
		cp.flash_attn_type = C.LLAMA_FLASH_ATTN_TYPE_AUTO
	}
	switch p.kvType {
	case "q8_0":
		cp.type_k, cp.type_v = C.GGML_TYPE_Q8_0, C.GGML_TYPE_Q8_0
	case "q4_0":
		cp.type_k, cp.type_v = C.GGML_TYPE_Q4_0, C.GGML_TYPE_Q4_0
	default:
		cp.type_k, cp.type_v = C.GGML_TYPE_F16, C.GGML_TYPE_F16
	}
	c := C.llama_init_from_model(m.m, cp)
	if c == nil {
		return nil, errors.New("llama.cpp could not create the context (the log says why)")
	}
	C.llama_set_embeddings(c, false)
	return &cContext{c: c, mem: C.llama_get_memory(c)}, nil
}

func (c *cContext) free() {
	if c == nil || c.c == nil {
		return
	}
	C.llama_free(c.c)
	c.c, c.mem = nil, nil
}

func (c *cContext) nCtxSeq() int          { return int(C.llama_n_ctx_seq(c.c)) }
func (c *cContext) nBatch() int           { return int(C.llama_n_batch(c.c)) }
func (c *cContext) nUbatch() int          { return int(C.llama_n_ubatch(c.c)) }
func (c *cContext) poolingType() int      { return int(C.llama_pooling_type(c.c)) }
func (c *cContext) setEmbeddings(on bool) { C.llama_set_embeddings(c.c, C.bool(on)) }

// errKVCacheFull is llama_decode's "no KV cache slot for the batch".
var errKVCacheFull = errors.New("could not find a kv cache slot")

// decode runs the batch through the model.
func (c *cContext) decode(b *cBatch) error {
	switch code := C.llama_decode(c.c, b.c); code {
	case 0:
		return nil
	case 1:
		return errKVCacheFull
	default:
		return fmt.Errorf("llama_decode failed with code %d", int(code))
	}
}

// seqRm drops positions [p0, p1) of sequence seq (p1 < 0: to the end). It
// is false when the memory cannot drop a part of a sequence.
func (c *cContext) seqRm(seq, p0, p1 int) bool {
	return bool(C.llama_memory_seq_rm(c.mem, C.llama_seq_id(seq), C.llama_pos(p0), C.llama_pos(p1)))
}

// logits returns a view of the logits of batch output i. It is valid until
// the next decode; i must be an index whose logits flag was set. The
// sampler reads it in place: a copy per token would only cost time.
func (c *cContext) logits(i, nVocab int) []float32 {
	p := C.llama_get_logits_ith(c.c, C.int32_t(i))
	if p == nil {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(p)), nVocab)
}

// embeddingIth is a view of the embedding of batch output i (pooling
// none), valid until the next decode.
func (c *cContext) embeddingIth(i, nEmbd int) []float32 {
	p := C.llama_get_embeddings_ith(c.c, C.int32_t(i))
	if p == nil {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(p)), nEmbd)
}

// embeddingSeq is a view of the pooled embedding of a sequence (pooling
// mean, cls, last), valid until the next decode.
func (c *cContext) embeddingSeq(seq, nEmbd int) []float32 {
	p := C.llama_get_embeddings_seq(c.c, C.llama_seq_id(seq))
	if p == nil {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(p)), nEmbd)
}

// llama.cpp's pooling types.
const (
	poolingNone = C.LLAMA_POOLING_TYPE_NONE
	poolingRank = C.LLAMA_POOLING_TYPE_RANK
)

// cBatch owns a llama_batch of token entries (or, made by newCEmbdBatch,
// of embedding rows), each in one sequence. The Go slices are views of its
// C arrays. free is idempotent.
type cBatch struct {
	c      C.struct_llama_batch
	tokens []C.llama_token
	embd   []C.float // width × n, for an embedding batch
	width  int
	pos    []C.llama_pos
	nSeq   []C.int32_t
	seq    []*C.llama_seq_id
	logits []C.int8_t
}

func newCBatch(n int) (*cBatch, error) { return newBatch(n, 0) }

// newCEmbdBatch makes a batch of n embedding rows of width floats (image
// rows for a vision model).
func newCEmbdBatch(n, width int) (*cBatch, error) {
	if width <= 0 {
		return nil, fmt.Errorf("embedding batch of width %d", width)
	}
	return newBatch(n, width)
}

func newBatch(n, width int) (*cBatch, error) {
	c := C.llama_batch_init(C.int32_t(n), C.int32_t(width), 1)
	b := &cBatch{c: c, width: width}
	if (width == 0) == (c.token == nil) || (width > 0) == (c.embd == nil) ||
		c.pos == nil || c.n_seq_id == nil || c.seq_id == nil || c.logits == nil {
		C.llama_batch_free(c)
		return nil, fmt.Errorf("out of memory for a batch of %d tokens", n)
	}
	if width > 0 {
		b.embd = unsafe.Slice(c.embd, n*width)
	} else {
		b.tokens = unsafe.Slice(c.token, n)
	}
	b.pos = unsafe.Slice(c.pos, n)
	b.nSeq = unsafe.Slice(c.n_seq_id, n)
	b.seq = unsafe.Slice(c.seq_id, n)
	b.logits = unsafe.Slice(c.logits, n)
	for _, s := range b.seq {
		if s == nil {
			C.llama_batch_free(c)
			return nil, fmt.Errorf("out of memory for a batch of %d tokens", n)
		}
	}
	return b, nil
}

func (b *cBatch) clear()   { b.c.n_tokens = 0 }
func (b *cBatch) len() int { return int(b.c.n_tokens) }

// add appends token at position pos of sequence seq; logits asks for its
// output. Overfilling the batch is a bug in the caller.
func (b *cBatch) add(token, pos int, logits bool, seq int) {
	i := int(b.c.n_tokens)
	if i >= len(b.tokens) {
		panic(fmt.Sprintf("batch of %d tokens overfilled", len(b.tokens)))
	}
	b.tokens[i] = C.llama_token(token)
	b.pos[i] = C.llama_pos(pos)
	b.nSeq[i] = 1
	*b.seq[i] = C.llama_seq_id(seq)
	b.logits[i] = 0
	if logits {
		b.logits[i] = 1
	}
	b.c.n_tokens++
}

// addEmbd appends an embedding row at position pos of sequence seq.
// Overfilling the batch or a row of the wrong width is a bug in the caller.
func (b *cBatch) addEmbd(row []float32, pos int, logits bool, seq int) {
	i := int(b.c.n_tokens)
	if b.width == 0 || len(row) != b.width || (i+1)*b.width > len(b.embd) {
		panic(fmt.Sprintf("embedding batch (width %d) given row %d of width %d", b.width, i, len(row)))
	}
	for j, v := range row {
		b.embd[i*b.width+j] = C.float(v)
	}
	b.pos[i] = C.llama_pos(pos)
	b.nSeq[i] = 1
	*b.seq[i] = C.llama_seq_id(seq)
	b.logits[i] = 0
	if logits {
		b.logits[i] = 1
	}
	b.c.n_tokens++
}

func (b *cBatch) free() {
	if b == nil || b.pos == nil {
		return
	}
	C.llama_batch_free(b.c)
	*b = cBatch{}
}

// grammar is a llama.cpp grammar sampler with a C candidate buffer. It is
// used only to mask candidates; token choice stays in Go.
type grammar struct {
	s     *C.struct_llama_sampler
	cands *C.llama_token_data // n entries, C memory
	n     int
}

// newGrammar parses a GBNF grammar against the model's vocabulary. A
// grammar llama.cpp rejects yields ErrInvalidGrammar-wrapped errors; it
// must never reach a sampler chain, where a null sampler would crash.
func newGrammar(m *cModel, gbnf string) (*grammar, error) {
	cs := C.CString(gbnf)
	defer C.free(unsafe.Pointer(cs))
	root := C.CString("root")
	defer C.free(unsafe.Pointer(root))
	s := C.llama_sampler_init_grammar(m.v, cs, root)
	if s == nil {
		return nil, errGrammarParse
	}
	n := m.nVocab()
	cands := (*C.llama_token_data)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(C.llama_token_data{}))))
	if cands == nil {
		C.llama_sampler_free(s)
		return nil, errors.New("out of memory for grammar candidates")
	}
	return &grammar{s: s, cands: cands, n: n}, nil
}

var errGrammarParse = errors.New("llama.cpp could not parse the grammar")

func (g *grammar) free() {
	if g == nil || g.s == nil {
		return
	}
	C.llama_sampler_free(g.s)
	C.free(unsafe.Pointer(g.cands))
	g.s, g.cands = nil, nil
}

// allows reports whether the grammar accepts token next.
func (g *grammar) allows(token int) bool {
	c := unsafe.Slice(g.cands, g.n)
	c[0] = C.llama_token_data{id: C.llama_token(token), logit: 0}
	arr := C.llama_token_data_array{data: g.cands, size: 1, selected: -1}
	C.llama_sampler_apply(g.s, &arr)
	return !isNegInf(float32(c[0].logit))
}

// mask sets the logits of every token the grammar rejects to -Inf.
func (g *grammar) mask(logits []float32) {
	c := unsafe.Slice(g.cands, g.n)
	for i := range c {
		c[i] = C.llama_token_data{id: C.llama_token(i), logit: C.float(logits[i])}
	}
	arr := C.llama_token_data_array{data: g.cands, size: C.size_t(g.n), selected: -1}
	C.llama_sampler_apply(g.s, &arr)
	// Samplers may reorder or shrink the array; read back by id.
	out := unsafe.Slice(arr.data, int(arr.size))
	for i := range logits {
		logits[i] = negInf
	}
	for _, e := range out {
		if id := int(e.id); id >= 0 && id < len(logits) {
			logits[id] = float32(e.logit)
		}
	}
}

// accept advances the grammar past token, which must be allowed and must
// not be an end-of-generation token (llama.cpp aborts on an EOG the
// grammar did not expect).
func (g *grammar) accept(token int) { C.llama_sampler_accept(g.s, C.llama_token(token)) }

// backendInit initialises llama.cpp's backends; the ggml backend libraries
// must be loaded first.
func backendInit() { C.llama_backend_init() }

// backendNames lists the ggml backends registered in the process, e.g.
// "CPU", "CUDA".
func backendNames() []string {
	var names []string
	for i := C.size_t(0); i < C.ggml_backend_reg_count(); i++ {
		if r := C.ggml_backend_reg_get(i); r != nil {
			names = append(names, strings.ToLower(C.GoString(C.ggml_backend_reg_name(r))))
		}
	}
	return names
}

// gpuDevice is a GPU ggml enumerates: its index among all ggml devices and
// the library that drives it ("CUDA").
type gpuDevice struct {
	index   uint64
	library string
}

// gpuDevices lists the GPUs (discrete or integrated) ggml enumerates, in
// ggml's order.
func gpuDevices() []gpuDevice {
	var out []gpuDevice
	for i := C.size_t(0); i < C.ggml_backend_dev_count(); i++ {
		dev := C.ggml_backend_dev_get(i)
		switch C.ggml_backend_dev_type(dev) {
		case C.GGML_BACKEND_DEVICE_TYPE_GPU, C.GGML_BACKEND_DEVICE_TYPE_IGPU:
			var props C.struct_ggml_backend_dev_props
			C.ggml_backend_dev_get_props(dev, &props)
			out = append(out, gpuDevice{index: uint64(i), library: C.GoString(props.library)})
		}
	}
	return out
}

// memorySplit is a tensor split over ggml devices in proportion to their
// free memory (equal when the backend reports none).
func memorySplit(devices []uint64) []float32 {
	split := make([]float32, len(devices))
	var total float64
	for i, d := range devices {
		var free, all C.size_t
		if dev := C.ggml_backend_dev_get(C.size_t(d)); dev != nil {
			C.ggml_backend_dev_memory(dev, &free, &all)
		}
		split[i] = float32(free)
		total += float64(free)
	}
	for i := range split {
		if total == 0 {
			split[i] = 1 / float32(len(split))
		} else {
			split[i] = float32(float64(split[i]) / total)
		}
	}
	return split
}

// llamaCommit is the llama.cpp revision compiled into the wrapper.
func llamaCommit() string { return C.GoString(C.LLAMA_COMMIT) }

func installLogger() { C.cortex_install_log() }
