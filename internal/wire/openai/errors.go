package openai

import (
	"errors"
	"fmt"
	"net/http"
)

// Error types, as the OpenAI error envelope's error.type.
const (
	TypeInvalidRequest     = "invalid_request_error"
	TypeAuthentication     = "authentication_error"
	TypePermission         = "permission_error"
	TypeNotFound           = "not_found_error"
	TypeRateLimit          = "rate_limit_exceeded"
	TypeServer             = "server_error"
	TypeServiceUnavailable = "service_unavailable"
)

// Error codes, as error.code. They are stable: clients and tests may match
// on them.
const (
	CodeInvalidJSON            = "invalid_json"
	CodeInvalidType            = "invalid_type"
	CodeInvalidValue           = "invalid_value"
	CodeMissingParameter       = "missing_required_parameter"
	CodeUnsupportedValue       = "unsupported_value"
	CodeUnsupportedParameter   = "unsupported_parameter"
	CodeRequestTooLarge        = "request_too_large"
	CodeUnsupportedMediaType   = "unsupported_media_type"
	CodeContextLengthExceeded  = "context_length_exceeded"
	CodeInvalidAPIKey          = "invalid_api_key"
	CodePermissionDenied       = "permission_denied"
	CodeModelNotFound          = "model_not_found"
	CodeNotFound               = "not_found"
	CodeRateLimitExceeded      = "rate_limit_exceeded"
	CodeOverloaded             = "overloaded"
	CodeServerError            = "server_error"
	CodeServiceUnavailable     = "service_unavailable"
	CodePreviousResponseAbsent = "previous_response_not_found"
)

// FinishContentFilter is the finish_reason of a choice cut by a filter.
const FinishContentFilter = "content_filter"

// Error is an API error in OpenAI terms: an HTTP status and the fields of
// the error envelope. Every dialect renders it (package anthropic maps it to
// its own envelope), so request validation and translation return *Error and
// the gateway turns it into a response in the client's dialect in one place.
type Error struct {
	// Status is the HTTP status code.
	Status int
	// Type is error.type, one of the Type constants.
	Type string
	// Code is error.code, one of the Code constants, or "".
	Code string
	// Param is error.param, the JSON path of the offending field, or "".
	Param string
	// Message is error.message, written for the client.
	Message string
}

func (e *Error) Error() string {
	if e.Param != "" {
		return fmt.Sprintf("%s (%d, %s): %s", e.Type, e.Status, e.Param, e.Message)
	}
	return fmt.Sprintf("%s (%d): %s", e.Type, e.Status, e.Message)
}

// Body returns the OpenAI error envelope of e.
func (e *Error) Body() ErrorBody {
	d := ErrorDetail{Message: e.Message, Type: e.Type}
	if e.Param != "" {
		p := e.Param
		d.Param = &p
	}
	if e.Code != "" {
		c := e.Code
		d.Code = &c
	}
	return ErrorBody{Error: d}
}

// NewError builds an Error; format and args make the message.
func NewError(status int, typ, code, param, format string, args ...any) *Error {
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	return &Error{Status: status, Type: typ, Code: code, Param: param, Message: msg}
}

// InvalidRequest is a 400 invalid_request_error about param.
func InvalidRequest(param, code, format string, args ...any) *Error {
	return NewError(http.StatusBadRequest, TypeInvalidRequest, code, param, format, args...)
}

// MissingParameter is a 400 for a required field that is absent or empty.
func MissingParameter(param string) *Error {
	return InvalidRequest(param, CodeMissingParameter, "Missing required parameter: '%s'.", param)
}

// Unsupported is a 400 for a value cortex understands but cannot serve.
func Unsupported(param, format string, args ...any) *Error {
	return InvalidRequest(param, CodeUnsupportedValue, format, args...)
}

// Unauthorized is a 401 authentication_error.
func Unauthorized(format string, args ...any) *Error {
	return NewError(http.StatusUnauthorized, TypeAuthentication, CodeInvalidAPIKey, "", format, args...)
}

// ModelNotFound is the 404 for a model name nothing serves.
func ModelNotFound(model string) *Error {
	return NewError(http.StatusNotFound, TypeNotFound, CodeModelNotFound, "model",
		"The model '%s' does not exist or is not served here.", model)
}

// NotFound is a 404 not_found_error.
func NotFound(format string, args ...any) *Error {
	return NewError(http.StatusNotFound, TypeNotFound, CodeNotFound, "", format, args...)
}

// RequestTooLarge is the 413 for a body over limit bytes.
func RequestTooLarge(limit int64) *Error {
	return NewError(http.StatusRequestEntityTooLarge, TypeInvalidRequest, CodeRequestTooLarge, "",
		"Request body is larger than the %d-byte limit.", limit)
}

// RateLimited is a 429 rate_limit_exceeded.
func RateLimited(format string, args ...any) *Error {
	return NewError(http.StatusTooManyRequests, TypeRateLimit, CodeRateLimitExceeded, "", format, args...)
}

// Overloaded is the 429 for a request turned away because the servers are
// at capacity (not because of the client's own rate): its code lets other
// dialects say so in their own terms (Anthropic's 529 overloaded_error).
func Overloaded(format string, args ...any) *Error {
	return NewError(http.StatusTooManyRequests, TypeRateLimit, CodeOverloaded, "", format, args...)
}

// ServerError is a 500 server_error.
func ServerError(format string, args ...any) *Error {
	return NewError(http.StatusInternalServerError, TypeServer, CodeServerError, "", format, args...)
}

// Unavailable is a 503 service_unavailable, for a model that is not ready
// (still loading, or no capacity); the gateway adds Retry-After.
func Unavailable(format string, args ...any) *Error {
	return NewError(http.StatusServiceUnavailable, TypeServiceUnavailable, CodeServiceUnavailable, "", format, args...)
}

// ErrorFromBody rebuilds an Error from a status and an OpenAI envelope, such
// as a neuron's error answer. A missing type is inferred from the status.
func ErrorFromBody(status int, body ErrorBody) *Error {
	e := &Error{Status: status, Type: body.Error.Type, Message: body.Error.Message}
	if body.Error.Param != nil {
		e.Param = *body.Error.Param
	}
	if body.Error.Code != nil {
		e.Code = *body.Error.Code
	}
	if e.Type == "" {
		e.Type = TypeForStatus(status)
	}
	if e.Message == "" {
		e.Message = http.StatusText(status)
	}
	return e
}

// TypeForStatus is the error type cortex uses for an HTTP status.
func TypeForStatus(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return TypeAuthentication
	case status == http.StatusForbidden:
		return TypePermission
	case status == http.StatusNotFound:
		return TypeNotFound
	case status == http.StatusTooManyRequests:
		return TypeRateLimit
	case status == http.StatusServiceUnavailable:
		return TypeServiceUnavailable
	case status >= 500:
		return TypeServer
	default:
		return TypeInvalidRequest
	}
}

// AsError returns err as an *Error: itself when it is one (or wraps one),
// else a 500 that does not leak err's text to the client.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return ServerError("The server had an error while processing your request.")
}
