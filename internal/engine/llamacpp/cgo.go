package llamacpp

/*
// Backend libraries loaded at run time (libggml-cuda.so, CPU variants)
// resolve ggml's symbols against the binary, so the binary must export
// them; Go's linker exports almost nothing by default.
#cgo linux LDFLAGS: -Wl,--export-dynamic

#include <stdlib.h>
#include <stdint.h>
#include <stdbool.h>

// llama.cpp's own headers are not on this package's include path (they
// live in the ollama module), so the few pointer-and-scalar functions the
// Go wrapper lacks are declared here against the ABI of the pinned
// revision (llama.cpp ec98e2002). Structs passed by value are left to the
// wrapper; only these two small public structs are mirrored, for grammar
// masking: they match llama_token_data and llama_token_data_array.
struct llama_model;
struct llama_context;
struct llama_vocab;
struct llama_sampler;

typedef struct cortex_token_data {
	int32_t id;
	float   logit;
	float   p;
} cortex_token_data;

typedef struct cortex_token_data_array {
	cortex_token_data *data;
	size_t  size;
	int64_t selected;
	bool    sorted;
} cortex_token_data_array;

extern const char *LLAMA_COMMIT;

const struct llama_model *llama_get_model(const struct llama_context *ctx);
void     llama_free(struct llama_context *ctx);
uint32_t llama_n_ctx(const struct llama_context *ctx);
uint32_t llama_n_ctx_seq(const struct llama_context *ctx);
uint32_t llama_n_batch(const struct llama_context *ctx);
uint32_t llama_n_ubatch(const struct llama_context *ctx);
uint32_t llama_n_seq_max(const struct llama_context *ctx);
int      llama_pooling_type(const struct llama_context *ctx);
void     llama_set_embeddings(struct llama_context *ctx, bool embeddings);
float   *llama_get_logits_ith(struct llama_context *ctx, int32_t i);
float   *llama_get_embeddings_ith(struct llama_context *ctx, int32_t i);
float   *llama_get_embeddings_seq(struct llama_context *ctx, int32_t seq_id);

const struct llama_vocab *llama_model_get_vocab(const struct llama_model *model);
int32_t  llama_model_n_ctx_train(const struct llama_model *model);
int32_t  llama_model_n_embd(const struct llama_model *model);
int32_t  llama_model_n_layer(const struct llama_model *model);
int32_t  llama_model_n_head(const struct llama_model *model);
int32_t  llama_model_meta_val_str(const struct llama_model *model, const char *key, char *buf, size_t buf_size);
uint64_t llama_model_size(const struct llama_model *model);
uint64_t llama_model_n_params(const struct llama_model *model);
bool     llama_model_has_encoder(const struct llama_model *model);

int32_t  llama_vocab_n_tokens(const struct llama_vocab *vocab);
int32_t  llama_vocab_bos(const struct llama_vocab *vocab);
int32_t  llama_vocab_eos(const struct llama_vocab *vocab);
bool     llama_vocab_get_add_bos(const struct llama_vocab *vocab);
bool     llama_vocab_is_eog(const struct llama_vocab *vocab, int32_t token);
int32_t  llama_token_to_piece(const struct llama_vocab *vocab, int32_t token, char *buf, int32_t length, int32_t lstrip, bool special);
int32_t  llama_detokenize(const struct llama_vocab *vocab, const int32_t *tokens, int32_t n_tokens, char *text, int32_t text_len_max, bool remove_special, bool unparse_special);

struct llama_sampler *llama_sampler_init_grammar(const struct llama_vocab *vocab, const char *grammar_str, const char *grammar_root);
void     llama_sampler_apply(struct llama_sampler *smpl, cortex_token_data_array *cur_p);
void     llama_sampler_accept(struct llama_sampler *smpl, int32_t token);
void     llama_sampler_free(struct llama_sampler *smpl);

typedef struct ggml_backend_device *ggml_backend_dev_t;
ggml_backend_dev_t ggml_backend_dev_get(size_t index);
void ggml_backend_dev_memory(ggml_backend_dev_t device, size_t *free, size_t *total);

typedef struct ggml_backend_reg *ggml_backend_reg_t;
size_t      ggml_backend_reg_count(void);
ggml_backend_reg_t ggml_backend_reg_get(size_t index);
const char *ggml_backend_reg_name(ggml_backend_reg_t reg);

typedef void (*cortex_log_callback)(int level, const char *text, void *user_data);
void llama_log_set(cortex_log_callback cb, void *user_data);

extern void cortexLlamaLog(int level, char *text, void *user_data);

static void cortex_install_log(void) {
	llama_log_set((cortex_log_callback)cortexLlamaLog, NULL);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"unsafe"

	"github.com/ollama/ollama/llama"
)

// rawPointer extracts the C pointer the wrapper keeps in its unexported
// field c. The wrapper (ollama v0.24.0) does not expose it, and this
// package needs it for the calls the wrapper lacks. The field is checked
// by name and kind so that a changed wrapper fails loudly instead of
// handing llama.cpp a wrong pointer.
func rawPointer(v any) (unsafe.Pointer, error) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return nil, fmt.Errorf("llama wrapper: %T is not a non-nil pointer", v)
	}
	f := rv.Elem().FieldByName("c")
	if !f.IsValid() || f.Kind() != reflect.Pointer {
		return nil, fmt.Errorf("llama wrapper: %T has no C pointer field", v)
	}
	p := f.UnsafePointer()
	if p == nil {
		return nil, fmt.Errorf("llama wrapper: %T holds a nil C pointer", v)
	}
	return p, nil
}

// cModel is a loaded llama_model with its vocabulary.
type cModel struct {
	m *C.struct_llama_model
	v *C.struct_llama_vocab
}

func newCModel(m *llama.Model) (cModel, error) {
	p, err := rawPointer(m)
	if err != nil {
		return cModel{}, err
	}
	cm := (*C.struct_llama_model)(p)
	v := C.llama_model_get_vocab(cm)
	if v == nil {
		return cModel{}, errors.New("model has no vocabulary")
	}
	return cModel{m: cm, v: (*C.struct_llama_vocab)(unsafe.Pointer(v))}, nil
}

func (m cModel) ptr() unsafe.Pointer { return unsafe.Pointer(m.m) }

// meta reads a metadata string; ok is false when the key is absent.
func (m cModel) meta(key string) (string, bool) {
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

func (m cModel) nCtxTrain() int { return int(C.llama_model_n_ctx_train(m.m)) }
func (m cModel) nEmbd() int     { return int(C.llama_model_n_embd(m.m)) }
func (m cModel) nHead() int     { return int(C.llama_model_n_head(m.m)) }
func (m cModel) size() int64    { return int64(C.llama_model_size(m.m)) }
func (m cModel) hasEncoder() bool {
	return bool(C.llama_model_has_encoder(m.m))
}
func (m cModel) nVocab() int  { return int(C.llama_vocab_n_tokens(m.v)) }
func (m cModel) bos() int     { return int(C.llama_vocab_bos(m.v)) }
func (m cModel) eos() int     { return int(C.llama_vocab_eos(m.v)) }
func (m cModel) addBOS() bool { return bool(C.llama_vocab_get_add_bos(m.v)) }
func (m cModel) isEOG(t int) bool {
	return bool(C.llama_vocab_is_eog(m.v, C.int32_t(t)))
}

// piece renders one token. special renders control tokens as their text;
// without it they render as nothing, which is what a completion shows.
func (m cModel) piece(t int, special bool) []byte {
	var small [32]byte
	n := C.llama_token_to_piece(m.v, C.int32_t(t), (*C.char)(unsafe.Pointer(&small[0])), C.int32_t(len(small)), 0, C.bool(special))
	if n >= 0 {
		return append([]byte(nil), small[:n]...)
	}
	buf := make([]byte, -n)
	n = C.llama_token_to_piece(m.v, C.int32_t(t), (*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(len(buf)), 0, C.bool(special))
	if n < 0 {
		return nil
	}
	return buf[:n]
}

// detokenize renders tokens as llama.cpp does, special tokens included.
// The tokens must be inside the vocabulary.
func (m cModel) detokenize(tokens []int) (string, error) {
	if len(tokens) == 0 {
		return "", nil
	}
	ct := make([]C.int32_t, len(tokens))
	for i, t := range tokens {
		ct[i] = C.int32_t(t)
	}
	size := max(64, len(tokens)*8)
	for range 2 {
		buf := make([]byte, size)
		n := C.llama_detokenize(m.v, &ct[0], C.int32_t(len(ct)), (*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(len(buf)), false, true)
		if n >= 0 {
			return string(buf[:n]), nil
		}
		size = int(-n)
	}
	return "", errors.New("detokenize: buffer size changed between calls")
}

// cContext is a llama_context.
type cContext struct {
	c *C.struct_llama_context
}

func newCContext(c *llama.Context) (cContext, error) {
	p, err := rawPointer(c)
	if err != nil {
		return cContext{}, err
	}
	return cContext{c: (*C.struct_llama_context)(p)}, nil
}

func (c cContext) free() {
	if c.c != nil {
		C.llama_free(c.c)
	}
}
func (c cContext) nCtxSeq() int          { return int(C.llama_n_ctx_seq(c.c)) }
func (c cContext) nBatch() int           { return int(C.llama_n_batch(c.c)) }
func (c cContext) nUbatch() int          { return int(C.llama_n_ubatch(c.c)) }
func (c cContext) poolingType() int      { return int(C.llama_pooling_type(c.c)) }
func (c cContext) setEmbeddings(on bool) { C.llama_set_embeddings(c.c, C.bool(on)) }

// modelOf returns the model the context was created from, to check that
// the pointers extracted from the wrapper belong together.
func (c cContext) modelOf() unsafe.Pointer { return unsafe.Pointer(C.llama_get_model(c.c)) }

// logits returns a view of the logits of batch output i. It is valid until
// the next decode; i must be an index whose logits flag was set.
func (c cContext) logits(i, nVocab int) []float32 {
	p := C.llama_get_logits_ith(c.c, C.int32_t(i))
	if p == nil {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(p)), nVocab)
}

// embeddingIth is the embedding of batch output i (pooling none).
func (c cContext) embeddingIth(i, nEmbd int) []float32 {
	p := C.llama_get_embeddings_ith(c.c, C.int32_t(i))
	if p == nil {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(p)), nEmbd)
}

// embeddingSeq is the pooled embedding of a sequence (pooling mean, cls,
// last).
func (c cContext) embeddingSeq(seq, nEmbd int) []float32 {
	p := C.llama_get_embeddings_seq(c.c, C.int32_t(seq))
	if p == nil {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(p)), nEmbd)
}

// llama.cpp's pooling types.
const (
	poolingNone = 0
	poolingRank = 4
)

// grammar is a llama.cpp grammar sampler with a C candidate buffer. It is
// used only to mask candidates; token choice stays in Go.
type grammar struct {
	s     *C.struct_llama_sampler
	cands *C.cortex_token_data // n entries, C memory
	n     int
}

// newGrammar parses a GBNF grammar against the model's vocabulary. A
// grammar llama.cpp rejects yields ErrInvalidGrammar-wrapped errors; it
// must never reach a sampler chain, where a null sampler would crash.
func newGrammar(m cModel, gbnf string) (*grammar, error) {
	cs := C.CString(gbnf)
	defer C.free(unsafe.Pointer(cs))
	root := C.CString("root")
	defer C.free(unsafe.Pointer(root))
	s := C.llama_sampler_init_grammar(m.v, cs, root)
	if s == nil {
		return nil, errGrammarParse
	}
	n := m.nVocab()
	cands := (*C.cortex_token_data)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(C.cortex_token_data{}))))
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
	c[0] = C.cortex_token_data{id: C.int32_t(token), logit: 0}
	arr := C.cortex_token_data_array{data: g.cands, size: 1, selected: -1}
	C.llama_sampler_apply(g.s, &arr)
	return !isNegInf(float32(c[0].logit))
}

// mask sets the logits of every token the grammar rejects to -Inf.
func (g *grammar) mask(logits []float32) {
	c := unsafe.Slice(g.cands, g.n)
	for i := range c {
		c[i] = C.cortex_token_data{id: C.int32_t(i), logit: C.float(logits[i])}
	}
	arr := C.cortex_token_data_array{data: g.cands, size: C.size_t(g.n), selected: -1}
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
func (g *grammar) accept(token int) { C.llama_sampler_accept(g.s, C.int32_t(token)) }

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
