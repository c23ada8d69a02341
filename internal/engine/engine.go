// Package engine declares the contract of cortex's inference engine: the
// Engine and Model interfaces, their request and result types, and the
// sentinel errors. It is pure Go so that the layers above build and test
// without cgo. The llama.cpp implementation lives in engine/llamacpp (the
// only package of cortex that imports "C"); a pure-Go fake in
// engine/enginefake implements the same interfaces for fast tests.
package engine

import (
	"context"
	"errors"
	"time"
)

// Errors the engine returns; the neuron maps them to HTTP answers in one
// place.
var (
	// ErrQueueFull: the model's request queue is full; retry later.
	ErrQueueFull = errors.New("request queue is full")
	// ErrContextLengthExceeded: the prompt (plus the tokens asked for, where
	// the caller insists) does not fit in one sequence's context.
	ErrContextLengthExceeded = errors.New("prompt exceeds the context length")
	// ErrClosed: the model was unloaded.
	ErrClosed = errors.New("model is closed")
	// ErrPoisoned: a fatal engine error on this model; it must be reloaded.
	ErrPoisoned = errors.New("model worker failed and must be reloaded")
	// ErrInvalidGrammar: the grammar did not parse.
	ErrInvalidGrammar = errors.New("invalid grammar")
	// ErrNoEmbeddings: the model cannot produce embeddings.
	ErrNoEmbeddings = errors.New("model does not produce embeddings")
	// ErrInvalidRequest: the request itself is malformed (empty prompt, a
	// token outside the vocabulary, a sampling parameter out of range);
	// the wrapped message says which.
	ErrInvalidRequest = errors.New("invalid request")
)

// Engine loads models.
type Engine interface {
	// Load reads a GGUF file and creates a context for it. It blocks until
	// the model is ready or ctx ends.
	Load(ctx context.Context, p LoadParams) (Model, error)
	// Backends lists the compute backends the engine found, e.g. "cpu",
	// "cuda".
	Backends() []string
	// Version identifies the engine build (llama.cpp revision).
	Version() string
}

// LoadParams configures one loaded model.
type LoadParams struct {
	// Path is the local GGUF file.
	Path string
	// ContextLength is the context per sequence, in tokens (0: the model's
	// trained context, capped at 8192).
	ContextLength int
	// Parallel is the number of sequences decoded together (0: 4).
	Parallel int
	// GPULayers is the number of layers offloaded; negative means all.
	GPULayers int
	// Devices are the CUDA device ordinals to use; empty with GPULayers != 0
	// means the engine's default device. Ignored on a CPU-only build.
	Devices []int
	// FlashAttention is "auto", "enabled" or "disabled".
	FlashAttention string
	// KVCacheType is "f16", "q8_0" or "q4_0".
	KVCacheType string
	// Threads for CPU compute (0: a sensible default).
	Threads int
	// QueueSize bounds requests waiting for a free sequence (0: 4×Parallel).
	QueueSize int
	// Progress, when set, receives load progress in [0,1].
	Progress func(float32)
	// ProjectorPath, when set, is the multimodal projector (the "mmproj"
	// GGUF of a vision model) loaded with the model, so that prompts may
	// carry images. Its output width must match the model's embeddings.
	ProjectorPath string
}

// Info describes a loaded model.
type Info struct {
	Architecture string
	// ContextLength is the effective context per sequence.
	ContextLength int
	// TrainedContextLength is the model's own maximum.
	TrainedContextLength int
	Parallel             int
	VocabSize            int
	EmbeddingLength      int
	// ChatTemplate is the GGUF's tokenizer.chat_template ("" when absent).
	ChatTemplate string
	// BOS and EOS are the text of the beginning/end-of-sequence tokens.
	BOS, EOS string
	// AddBOS reports whether tokenizing with special tokens adds BOS.
	AddBOS bool
	// SizeBytes is the size of the weights (the projector's not included).
	SizeBytes int64
	// Vision reports that a projector is loaded: prompts may carry images.
	Vision bool
}

// Sampling configures token selection for one request.
type Sampling struct {
	// Temperature 0 means greedy.
	Temperature float32
	TopP        float32 // 0 or 1: off
	TopK        int     // 0: off
	MinP        float32 // 0: off
	// Seed makes sampling reproducible; nil picks a random seed.
	Seed *uint32
	// RepeatPenalty (0 or 1: off) applies over the last RepeatLastN tokens
	// of prompt and completion (0: 64, -1: the whole context).
	RepeatPenalty float32
	RepeatLastN   int
	// PresencePenalty and FrequencyPenalty (0: off) apply, as in OpenAI's
	// API, to the tokens generated so far.
	PresencePenalty  float32
	FrequencyPenalty float32
}

// ImageToken stands in GenerateRequest.Prompt for one image: the engine
// replaces it with the image's embeddings (and any tokens the projector
// frames them with), which take several positions of the context.
const ImageToken = -1

// Image is a decoded picture: Width×Height pixels, three bytes (R, G, B)
// each, row by row from the top left.
type Image struct {
	Width, Height int
	RGB           []byte
}

// GenerateRequest is one completion.
type GenerateRequest struct {
	// Prompt is the tokenized prompt; an ImageToken entry stands for the
	// next image of Images.
	Prompt []int
	// Images are the pictures of the prompt, in the order of its
	// ImageToken entries. Only a model with Info.Vision accepts them; the
	// prompt must not end with one.
	Images []Image
	// MaxTokens bounds the completion (0: until the context is full).
	MaxTokens int
	Sampling  Sampling
	// Grammar, when set, is a GBNF grammar that constrains decoding.
	Grammar string
	// Stop sequences end the completion; they are matched across token
	// boundaries and never emitted.
	Stop []string
	// Logprobs asks for each emitted token's log-probability and the
	// TopLogprobs most likely alternatives.
	Logprobs    bool
	TopLogprobs int
}

// TokenLogprob is the log-probability of one emitted token.
type TokenLogprob struct {
	Token   string
	Logprob float32
	Bytes   []byte
	Top     []TopLogprob
}

// TopLogprob is one alternative at a position.
type TopLogprob struct {
	Token   string
	Logprob float32
	Bytes   []byte
}

// Chunk is text emitted by a generation.
type Chunk struct {
	Text     string
	Logprobs []TokenLogprob
}

// FinishReason says why a generation ended.
type FinishReason string

const (
	FinishStop      FinishReason = "stop"      // end-of-generation token or stop sequence
	FinishLength    FinishReason = "length"    // MaxTokens or context full
	FinishCancelled FinishReason = "cancelled" // ctx ended
)

// Result summarises a finished generation.
type Result struct {
	FinishReason FinishReason
	// StopSequence is the request's stop string that ended the generation
	// (FinishStop); empty when an end-of-generation token did.
	StopSequence string
	// PromptTokens counts every position the prompt took, images
	// included; ImageTokens is the part the images took.
	PromptTokens     int
	ImageTokens      int
	CompletionTokens int
	// CachedTokens are prompt tokens reused from the sequence's KV cache.
	CachedTokens int
	// QueueTime is spent waiting for a free sequence; PromptTime
	// processing the prompt; GenerateTime producing the completion.
	QueueTime    time.Duration
	PromptTime   time.Duration
	GenerateTime time.Duration
}

// Stats is a snapshot of a model's load.
type Stats struct {
	// Active requests hold a sequence; Queued wait for one.
	Active, Queued int
	// Slots is the number of sequences (Parallel).
	Slots int
	// PromptTokens and GeneratedTokens count all tokens processed since load.
	PromptTokens, GeneratedTokens int64
	// Poisoned reports that a fatal engine error hit the model: every
	// request now fails with ErrPoisoned and the model must be reloaded.
	Poisoned bool
}

// Model is one loaded model. All methods are safe for concurrent use.
type Model interface {
	Info() Info
	// Tokenize converts text to tokens; addSpecial adds BOS where the model
	// wants it; parseSpecial turns special-token text into special tokens.
	Tokenize(text string, addSpecial, parseSpecial bool) ([]int, error)
	// Detokenize converts tokens to text.
	Detokenize(tokens []int) (string, error)
	// Generate runs one completion. It blocks until the completion ends and
	// calls onChunk on the caller's goroutine as text becomes final; a slow
	// onChunk never stalls other requests. An error returned by onChunk, or
	// ctx ending, stops the generation and frees its sequence at once;
	// Generate then returns a Result with FinishCancelled together with
	// ctx.Err() or the onChunk error.
	Generate(ctx context.Context, req GenerateRequest, onChunk func(Chunk) error) (Result, error)
	// Embed returns the pooled, L2-normalised embedding of the tokens.
	Embed(ctx context.Context, tokens []int) ([]float32, error)
	// SchemaToGrammar converts a JSON schema to a GBNF grammar.
	SchemaToGrammar(schema []byte) (string, error)
	Stats() Stats
	// Close frees the model. It is idempotent; requests in flight end with
	// ErrClosed.
	Close() error
}
