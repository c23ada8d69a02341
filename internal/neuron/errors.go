package neuron

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/helexa-ai/cortex/internal/chat"
	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/sources"
	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// retryError is an API error that tells the client when to try again.
type retryError struct {
	err   *openai.Error
	after time.Duration
}

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

func withRetry(err *openai.Error, after time.Duration) error {
	return &retryError{err: err, after: after}
}

// Errors of the neuron's own vocabulary (neuronapi codes).

func errModelNotReady(name string, state neuronapi.ModelState, detail string, after time.Duration) error {
	msg := fmt.Sprintf("Model '%s' is %s on this neuron", name, state)
	if detail != "" {
		msg += " (" + detail + ")"
	}
	return withRetry(openai.NewError(http.StatusServiceUnavailable, openai.TypeServiceUnavailable,
		neuronapi.CodeModelNotReady, "model", "%s; retry later.", msg), after)
}

func errQueueFull(name string) error {
	return withRetry(openai.NewError(http.StatusTooManyRequests, openai.TypeRateLimit, neuronapi.CodeQueueFull, "",
		"Model '%s' is at capacity: every sequence is busy and its queue is full; retry later.", name), time.Second)
}

func errContextLength(limit, got int, what string) error {
	return openai.InvalidRequest(what, openai.CodeContextLengthExceeded,
		"This model's maximum context length is %d tokens. However, your request has %d tokens. Please reduce the length of the %s.", limit, got, what)
}

func errConflict(format string, args ...any) error {
	return openai.NewError(http.StatusConflict, openai.TypeInvalidRequest, neuronapi.CodeConflict, "", format, args...)
}

func errInsufficientMemory(msg string) error {
	return openai.NewError(http.StatusInsufficientStorage, openai.TypeServer, neuronapi.CodeInsufficientMemory, "", "%s", msg)
}

func errInvalid(param, format string, args ...any) error {
	return openai.NewError(http.StatusBadRequest, openai.TypeInvalidRequest, neuronapi.CodeInvalidRequest, param, format, args...)
}

// sourceError maps a source failure: a request that cannot succeed is a 422
// (or 400 for a malformed URI), an upstream that may recover a 502.
func sourceError(err error) error {
	code := sources.Code(err)
	switch {
	case code == neuronapi.CodeInvalidRequest:
		return openai.NewError(http.StatusBadRequest, openai.TypeInvalidRequest, code, "source.uri", "%s", err.Error())
	case sources.IsPermanent(err):
		return openai.NewError(http.StatusUnprocessableEntity, openai.TypeInvalidRequest, code, "source", "%s", err.Error())
	default:
		return withRetry(openai.NewError(http.StatusBadGateway, openai.TypeServer, code, "source", "%s", err.Error()), 5*time.Second)
	}
}

// inferenceError maps what the engine and the chat layer return to an API
// error, in one place. It returns nil for a client that went away.
func inferenceError(name string, err error) error {
	var oe *openai.Error
	var re *retryError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &re), errors.As(err, &oe):
		return err
	case errors.Is(err, context.Canceled):
		return nil
	case errors.Is(err, engine.ErrQueueFull):
		return errQueueFull(name)
	case errors.Is(err, engine.ErrContextLengthExceeded):
		return openai.InvalidRequest("messages", openai.CodeContextLengthExceeded, "%s.", capitalise(err.Error()))
	case errors.Is(err, engine.ErrClosed):
		return errModelNotReady(name, neuronapi.StateUnloading, "it was unloaded", time.Second)
	case errors.Is(err, engine.ErrPoisoned):
		return errModelNotReady(name, neuronapi.StateLoading, "it failed and is being reloaded", 5*time.Second)
	case errors.Is(err, engine.ErrInvalidGrammar):
		return openai.InvalidRequest("response_format", openai.CodeInvalidValue, "The requested output format could not be turned into a grammar: %s.", err.Error())
	case errors.Is(err, engine.ErrNoEmbeddings):
		return openai.Unsupported("model", "Model '%s' does not produce embeddings.", name)
	case errors.Is(err, engine.ErrInvalidRequest):
		return openai.InvalidRequest("", openai.CodeInvalidValue, "%s.", capitalise(err.Error()))
	case errors.Is(err, chat.ErrTemplate):
		return openai.ServerError("The model's chat template failed: %s.", err.Error())
	default:
		return openai.ServerError("The server had an error while processing your request.")
	}
}

func capitalise(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// writeError answers err in the OpenAI envelope, with Retry-After when the
// error carries one.
func writeError(w http.ResponseWriter, err error) {
	oe := openai.AsError(err)
	var re *retryError
	if errors.As(err, &re) && re.after > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((re.after+time.Second-1)/time.Second)))
	}
	writeJSON(w, oe.Status, oe.Body())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		data = []byte(`{"error":{"message":"encoding the answer failed","type":"server_error","param":null,"code":"internal_error"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(data, '\n'))
}

// failureReason labels a refused load for metrics.
func failureReason(err error) string {
	oe := openai.AsError(err)
	switch oe.Code {
	case neuronapi.CodeInsufficientMemory:
		return "memory"
	case neuronapi.CodeChecksumMismatch, neuronapi.CodeSourceUnavailable:
		return "source"
	case neuronapi.CodeInvalidRequest:
		return "invalid"
	}
	return "other"
}

// errText is an error's message for a status field: the client-facing
// message of an API error, the error text otherwise.
func errText(err error) string {
	var oe *openai.Error
	if errors.As(err, &oe) {
		return oe.Message
	}
	return err.Error()
}
