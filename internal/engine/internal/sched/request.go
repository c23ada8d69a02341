// Package sched holds the request plumbing shared by the llama.cpp engine
// and the pure-Go fake, so that both admit, queue, cancel, stream and stop
// requests by the same rules: admission against Parallel+QueueSize, an
// unbounded per-request buffer between the worker and the caller, stop
// sequences matched across token boundaries, and UTF-8 safe chunks.
package sched

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/helexa-ai/cortex/internal/engine"
)

// Request is one Generate or Embed call travelling from the caller's
// goroutine to a model's worker and back. The worker appends chunks with
// Emit and ends it with Finish; the caller drains them in Wait. The buffer
// is unbounded so that a slow caller never stalls the worker.
type Request struct {
	// Gen is the completion asked for (unused for embeddings).
	Gen engine.GenerateRequest
	// EmbedTokens is set for an embedding request.
	EmbedTokens []int
	// Enqueued is when the request was admitted.
	Enqueued time.Time

	cancelled atomic.Bool

	mu        sync.Mutex
	notify    chan struct{}
	chunks    []engine.Chunk
	tokens    int // completion tokens covered by the chunks emitted so far
	done      bool
	result    engine.Result
	embedding []float32
	err       error
}

// NewGenerate makes a completion request.
func NewGenerate(req engine.GenerateRequest, now time.Time) *Request {
	return &Request{Gen: req, Enqueued: now, notify: make(chan struct{}, 1)}
}

// NewEmbed makes an embedding request.
func NewEmbed(tokens []int, now time.Time) *Request {
	return &Request{EmbedTokens: tokens, Enqueued: now, notify: make(chan struct{}, 1)}
}

// IsEmbed reports whether the request asks for an embedding.
func (r *Request) IsEmbed() bool { return r.EmbedTokens != nil }

// Cancel marks the request abandoned by its caller; the worker frees its
// sequence at its next step.
func (r *Request) Cancel() { r.cancelled.Store(true) }

// Cancelled reports whether the caller abandoned the request.
func (r *Request) Cancelled() bool { return r.cancelled.Load() }

func (r *Request) wake() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// Emit hands text to the caller. completionTokens is the number of tokens
// generated so far, reported if the caller cancels.
func (r *Request) Emit(c engine.Chunk, completionTokens int) {
	r.mu.Lock()
	if r.done {
		r.mu.Unlock()
		return
	}
	if c.Text != "" || len(c.Logprobs) > 0 {
		r.chunks = append(r.chunks, c)
	}
	r.tokens = completionTokens
	r.mu.Unlock()
	r.wake()
}

// Finish ends a completion. Only the first call counts.
func (r *Request) Finish(res engine.Result, err error) {
	r.mu.Lock()
	if r.done {
		r.mu.Unlock()
		return
	}
	r.done, r.result, r.err = true, res, err
	r.mu.Unlock()
	r.wake()
}

// FinishEmbed ends an embedding request.
func (r *Request) FinishEmbed(v []float32, err error) {
	r.mu.Lock()
	if r.done {
		r.mu.Unlock()
		return
	}
	r.done, r.embedding, r.err = true, v, err
	r.mu.Unlock()
	r.wake()
}

// Fail ends the request with an error, whatever its kind.
func (r *Request) Fail(err error) {
	if r.IsEmbed() {
		r.FinishEmbed(nil, err)
		return
	}
	r.Finish(engine.Result{PromptTokens: len(r.Gen.Prompt)}, err)
}

// Done reports whether the worker has finished the request.
func (r *Request) Done() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.done
}

// Wait runs on the caller's goroutine: it passes chunks to onChunk as they
// arrive and returns the result. When ctx ends or onChunk fails, it cancels
// the request and returns at once with FinishCancelled.
func (r *Request) Wait(ctx context.Context, onChunk func(engine.Chunk) error) (engine.Result, error) {
	var batch []engine.Chunk
	for {
		r.mu.Lock()
		batch, r.chunks = r.chunks, batch[:0]
		done, res, err, tokens := r.done, r.result, r.err, r.tokens
		r.mu.Unlock()
		for _, c := range batch {
			if ctx.Err() != nil {
				break
			}
			if onChunk == nil {
				continue
			}
			if cerr := onChunk(c); cerr != nil {
				r.Cancel()
				return r.cancelledResult(tokens), cerr
			}
		}
		clear(batch)
		if ctx.Err() != nil {
			r.Cancel()
			return r.cancelledResult(tokens), ctx.Err()
		}
		if done {
			return res, err
		}
		select {
		case <-r.notify:
		case <-ctx.Done():
		}
	}
}

func (r *Request) cancelledResult(tokens int) engine.Result {
	return engine.Result{
		FinishReason:     engine.FinishCancelled,
		PromptTokens:     len(r.Gen.Prompt),
		CompletionTokens: tokens,
	}
}

// WaitEmbed waits for an embedding; ctx ending cancels the request.
func (r *Request) WaitEmbed(ctx context.Context) ([]float32, error) {
	for {
		r.mu.Lock()
		done, v, err := r.done, r.embedding, r.err
		r.mu.Unlock()
		if done {
			return v, err
		}
		select {
		case <-r.notify:
		case <-ctx.Done():
			r.Cancel()
			return nil, ctx.Err()
		}
	}
}

// MaxTopLogprobs bounds GenerateRequest.TopLogprobs, as OpenAI does.
const MaxTopLogprobs = 20

// Validate checks a completion request against a model's vocabulary size
// and per-sequence context length.
func Validate(req *engine.GenerateRequest, vocab, ctxLen int) error {
	if len(req.Prompt) == 0 {
		return fmt.Errorf("%w: the prompt has no tokens", engine.ErrInvalidRequest)
	}
	if err := validateImages(req); err != nil {
		return err
	}
	for i, t := range req.Prompt {
		if t == engine.ImageToken {
			continue // checked by validateImages
		}
		if t < 0 || t >= vocab {
			return fmt.Errorf("%w: token %d at position %d is outside the vocabulary of %d", engine.ErrInvalidRequest, t, i, vocab)
		}
	}
	if len(req.Prompt) >= ctxLen {
		return fmt.Errorf("%w: %d prompt tokens leave no room in a context of %d", engine.ErrContextLengthExceeded, len(req.Prompt), ctxLen)
	}
	s := req.Sampling
	switch {
	case req.MaxTokens < 0:
		return fmt.Errorf("%w: max tokens %d is negative", engine.ErrInvalidRequest, req.MaxTokens)
	case s.Temperature < 0 || isNaN(s.Temperature):
		return fmt.Errorf("%w: temperature %v is negative", engine.ErrInvalidRequest, s.Temperature)
	case s.TopP < 0 || s.TopP > 1 || isNaN(s.TopP):
		return fmt.Errorf("%w: top_p %v is outside [0,1]", engine.ErrInvalidRequest, s.TopP)
	case s.MinP < 0 || s.MinP > 1 || isNaN(s.MinP):
		return fmt.Errorf("%w: min_p %v is outside [0,1]", engine.ErrInvalidRequest, s.MinP)
	case s.TopK < 0:
		return fmt.Errorf("%w: top_k %d is negative", engine.ErrInvalidRequest, s.TopK)
	case s.RepeatPenalty < 0 || isNaN(s.RepeatPenalty):
		return fmt.Errorf("%w: repeat penalty %v is negative", engine.ErrInvalidRequest, s.RepeatPenalty)
	case s.RepeatLastN < -1:
		return fmt.Errorf("%w: repeat_last_n %d is below -1", engine.ErrInvalidRequest, s.RepeatLastN)
	case isNaN(s.PresencePenalty) || isNaN(s.FrequencyPenalty):
		return fmt.Errorf("%w: penalty is not a number", engine.ErrInvalidRequest)
	case req.TopLogprobs < 0 || req.TopLogprobs > MaxTopLogprobs:
		return fmt.Errorf("%w: top_logprobs %d is outside [0,%d]", engine.ErrInvalidRequest, req.TopLogprobs, MaxTopLogprobs)
	}
	for _, st := range req.Stop {
		if len(st) > 1024 {
			return fmt.Errorf("%w: a stop sequence is longer than 1024 bytes", engine.ErrInvalidRequest)
		}
	}
	return nil
}

// validateImages checks that the prompt's image placeholders and images
// agree and that every image is a whole picture.
func validateImages(req *engine.GenerateRequest) error {
	n := 0
	for _, t := range req.Prompt {
		if t == engine.ImageToken {
			n++
		}
	}
	if n != len(req.Images) {
		return fmt.Errorf("%w: the prompt has %d image placeholders for %d images", engine.ErrInvalidRequest, n, len(req.Images))
	}
	if n > 0 && req.Prompt[len(req.Prompt)-1] == engine.ImageToken {
		return fmt.Errorf("%w: the prompt ends with an image; it must end with text", engine.ErrInvalidRequest)
	}
	for i, im := range req.Images {
		if im.Width <= 0 || im.Height <= 0 || len(im.RGB) != 3*im.Width*im.Height {
			return fmt.Errorf("%w: image %d is not %d×%d RGB pixels", engine.ErrInvalidRequest, i, im.Width, im.Height)
		}
	}
	return nil
}

// ValidateTokens checks that every token is inside the vocabulary.
func ValidateTokens(tokens []int, vocab int) error {
	for i, t := range tokens {
		if t < 0 || t >= vocab {
			return fmt.Errorf("%w: token %d at position %d is outside the vocabulary of %d", engine.ErrInvalidRequest, t, i, vocab)
		}
	}
	return nil
}

func isNaN(f float32) bool { return f != f }
