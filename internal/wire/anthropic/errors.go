package anthropic

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// Anthropic error types (error.type).
const (
	ErrInvalidRequest  = "invalid_request_error"
	ErrAuthentication  = "authentication_error"
	ErrBilling         = "billing_error"
	ErrPermission      = "permission_error"
	ErrNotFound        = "not_found_error"
	ErrRequestTooLarge = "request_too_large"
	ErrRateLimit       = "rate_limit_error"
	ErrTimeout         = "timeout_error"
	ErrAPI             = "api_error"
	ErrOverloaded      = "overloaded_error"
)

// ErrorResponse is the Anthropic error envelope, as a response body and as
// the data of an "error" stream event.
type ErrorResponse struct {
	Type      string      `json:"type"` // error
	Error     ErrorObject `json:"error"`
	RequestID string      `json:"request_id,omitempty"`
}

// ErrorObject is the inside of the envelope.
type ErrorObject struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// ErrorTypeForStatus is the Anthropic error type of an HTTP status: 400
// invalid_request_error, 401 authentication_error, 402 billing_error, 403
// permission_error, 404 not_found_error, 413 request_too_large, 429
// rate_limit_error, 503 and 529 overloaded_error, 504 timeout_error, other
// 5xx api_error.
func ErrorTypeForStatus(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return ErrAuthentication
	case http.StatusPaymentRequired:
		return ErrBilling
	case http.StatusForbidden:
		return ErrPermission
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusRequestEntityTooLarge:
		return ErrRequestTooLarge
	case http.StatusTooManyRequests:
		return ErrRateLimit
	case http.StatusServiceUnavailable, StatusOverloaded:
		return ErrOverloaded
	case http.StatusGatewayTimeout:
		return ErrTimeout
	}
	if status >= 500 {
		return ErrAPI
	}
	return ErrInvalidRequest
}

// NewError returns the envelope for status with message.
func NewError(status int, message string) ErrorResponse {
	return ErrorResponse{Type: "error", Error: ErrorObject{Type: ErrorTypeForStatus(status), Message: message}}
}

// ErrorFromOpenAI maps an OpenAI-style error (a neuron's answer, or one of
// cortex's own *openai.Error) to the Anthropic envelope, keeping the
// status: the type follows the status, the message is kept, prefixed with
// the parameter path when the message does not already name it.
func ErrorFromOpenAI(status int, body openai.ErrorBody) ErrorResponse {
	msg := body.Error.Message
	if msg == "" {
		msg = http.StatusText(status)
	}
	if p := body.Error.Param; p != nil && *p != "" && !strings.Contains(msg, *p) {
		msg = fmt.Sprintf("%s: %s", *p, msg)
	}
	if c := body.Error.Code; c != nil && *c == openai.CodeOverloaded {
		// Servers at capacity, whatever the status: Anthropic's clients
		// back off on overloaded_error, not on a rate limit of their own.
		return ErrorResponse{Type: "error", Error: ErrorObject{Type: ErrOverloaded, Message: msg}}
	}
	return NewError(status, msg)
}

// StatusOverloaded is the status Anthropic answers overloaded_error with.
const StatusOverloaded = 529

// FromError renders any error as the status and Anthropic envelope to
// send: an *openai.Error keeps its status and message (an overloaded one
// becomes 529 overloaded_error), anything else is a 500 api_error that does
// not leak its text.
func FromError(err error) (int, ErrorResponse) {
	e := openai.AsError(err)
	env := ErrorFromOpenAI(e.Status, e.Body())
	if e.Code == openai.CodeOverloaded {
		return StatusOverloaded, env
	}
	return e.Status, env
}

// ToOpenAIError maps an Anthropic error envelope (with its HTTP status, 0
// when unknown, as in a stream) to an *openai.Error.
func ToOpenAIError(status int, e ErrorResponse) *openai.Error {
	if status == 0 {
		status = StatusForErrorType(e.Error.Type)
	}
	typ := openai.TypeForStatus(status)
	code := map[string]string{
		ErrInvalidRequest:  openai.CodeInvalidValue,
		ErrAuthentication:  openai.CodeInvalidAPIKey,
		ErrPermission:      openai.CodePermissionDenied,
		ErrNotFound:        openai.CodeNotFound,
		ErrRequestTooLarge: openai.CodeRequestTooLarge,
		ErrRateLimit:       openai.CodeRateLimitExceeded,
		ErrOverloaded:      openai.CodeServiceUnavailable,
		ErrAPI:             openai.CodeServerError,
		ErrTimeout:         openai.CodeServerError,
	}[e.Error.Type]
	return &openai.Error{Status: status, Type: typ, Code: code, Message: e.Error.Message}
}

// StatusForErrorType is the HTTP status of an Anthropic error type.
func StatusForErrorType(t string) int {
	switch t {
	case ErrInvalidRequest:
		return http.StatusBadRequest
	case ErrAuthentication:
		return http.StatusUnauthorized
	case ErrBilling:
		return http.StatusPaymentRequired
	case ErrPermission:
		return http.StatusForbidden
	case ErrNotFound:
		return http.StatusNotFound
	case ErrRequestTooLarge:
		return http.StatusRequestEntityTooLarge
	case ErrRateLimit:
		return http.StatusTooManyRequests
	case ErrTimeout:
		return http.StatusGatewayTimeout
	case ErrOverloaded:
		return StatusOverloaded
	default:
		return http.StatusInternalServerError
	}
}
