package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/labstack/echo/v4"

	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// API dialects, as the api label of metrics and logs.
const (
	apiOpenAI    = "openai"
	apiAnthropic = "anthropic"
	apiResponses = "responses"
)

func apiOf(path string) string {
	switch {
	case strings.HasPrefix(path, "/v1/messages"):
		return apiAnthropic
	case strings.HasPrefix(path, "/v1/responses"):
		return apiResponses
	}
	return apiOpenAI
}

// reqInfo collects one request's figures for metrics and the access log.
type reqInfo struct {
	id        string
	api       string
	keyName   string
	model     string // Model key, or "unknown"
	client    string // the model name the client sent
	node      string
	start     time.Time
	ttft      time.Duration
	genTime   time.Duration
	prompt    int
	output    int
	cached    int
	coldWait  time.Duration
	retries   int
	stream    bool
	streamErr string
	// bodyBytes is the request body's size, for the token estimate.
	bodyBytes int
	// apiKey is the key the request came with; admission its account
	// under the key's limits; keyOutcome the limit that refused it.
	apiKey     *apiKey
	admission  *keyAccount
	keyOutcome string
}

const infoKey = "cortex.req"

func info(c echo.Context) *reqInfo {
	if ri, ok := c.Get(infoKey).(*reqInfo); ok {
		return ri
	}
	ri := &reqInfo{}
	c.Set(infoKey, ri)
	return ri
}

var (
	errUnknownModel = errors.New("model not found")
	errColdTimeout  = errors.New("model did not become ready in time")
)

type ambiguousError struct {
	name string
	keys []string
}

func (e *ambiguousError) Error() string {
	return fmt.Sprintf("model %q is served in several namespaces (%s); use one of those names", e.name, strings.Join(e.keys, ", "))
}

// apiError is an error answer with an optional Retry-After.
type apiError struct {
	err        *openai.Error
	retryAfter time.Duration
}

func (e *apiError) Error() string { return e.err.Error() }
func (e *apiError) Unwrap() error { return e.err }

func newAPIError(oe *openai.Error, retryAfter time.Duration) *apiError {
	return &apiError{err: oe, retryAfter: retryAfter}
}

// toAPIError turns any error into the answer a client gets.
func toAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var oe *openai.Error
	if errors.As(err, &oe) {
		return &apiError{err: oe}
	}
	var amb *ambiguousError
	var he *echo.HTTPError
	switch {
	case errors.As(err, &amb):
		return &apiError{err: openai.InvalidRequest("model", openai.CodeModelNotFound, "%s", amb.Error())}
	case errors.Is(err, errColdTimeout):
		return &apiError{err: openai.Unavailable("the model is still loading; retry shortly"), retryAfter: 10 * time.Second}
	case errors.As(err, &he):
		msg := http.StatusText(he.Code)
		if s, ok := he.Message.(string); ok {
			msg = s
		}
		return &apiError{err: openai.NewError(he.Code, openai.TypeForStatus(he.Code), "", "", "%s", msg)}
	}
	return &apiError{err: openai.ServerError("%s", err.Error())}
}

// errorHandler renders every error in the caller's dialect, in one place.
func (g *Gateway) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	ae := toAPIError(err)
	if ae.retryAfter > 0 {
		c.Response().Header().Set("Retry-After", strconv.Itoa(int(ae.retryAfter.Round(time.Second)/time.Second)))
	}
	api := apiOf(c.Request().URL.Path)
	status, body := ae.err.Status, any(ae.err.Body())
	if api == apiAnthropic {
		status, body = anthropicError(ae.err, info(c).id)
	}
	_ = c.JSON(status, body)
}

func (g *Gateway) recoverer(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if err, ok := r.(error); ok && errors.Is(err, http.ErrAbortHandler) {
					panic(r)
				}
				logr.FromContextOrDiscard(c.Request().Context()).Error(fmt.Errorf("%v", r), "Panic serving request", "path", c.Request().URL.Path)
				err = openai.ServerError("internal error")
			}
		}()
		return next(c)
	}
}

func (g *Gateway) requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ri := info(c)
		ri.start = g.clock.Now()
		ri.api = apiOf(c.Request().URL.Path)
		ri.id = c.Request().Header.Get("X-Request-Id")
		if ri.id == "" || len(ri.id) > 128 {
			var b [12]byte
			_, _ = rand.Read(b[:])
			ri.id = "req_" + hex.EncodeToString(b[:])
		}
		c.SetRequest(c.Request().WithContext(context.WithValue(c.Request().Context(), requestIDKey{}, ri.id)))
		h := c.Response().Header()
		if g.conns.draining.Load() {
			// Shutting down: the client leaves this connection after the
			// answer (drain.go).
			h.Set("Connection", "close")
		}
		h.Set("X-Request-Id", ri.id)
		if ri.api == apiAnthropic {
			h.Set("Request-Id", ri.id)
		}
		return next(c)
	}
}

// access records metrics and writes one log line per API request.
func (g *Gateway) access(logger logr.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			err := next(c)
			if err != nil {
				c.Error(err)
			}
			path := c.Request().URL.Path
			if !strings.HasPrefix(path, "/v1/") {
				return nil
			}
			ri := info(c)
			status := c.Response().Status
			elapsed := g.clock.Since(ri.start)
			model := ri.model
			if model == "" {
				model = "unknown"
			}
			g.metrics.requests.WithLabelValues(model, ri.api, strconv.Itoa(status)).Inc()
			if c.Request().Method == http.MethodPost {
				g.metrics.duration.WithLabelValues(model, ri.api).Observe(elapsed.Seconds())
			}
			var tps float64
			if ri.output > 0 && ri.genTime > 0 {
				tps = float64(ri.output) / ri.genTime.Seconds()
				g.metrics.tokensPerSecond.WithLabelValues(model).Observe(tps)
			}
			if ri.prompt > 0 {
				g.metrics.promptTokens.WithLabelValues(model).Add(float64(ri.prompt))
			}
			if ri.output > 0 {
				g.metrics.completionToks.WithLabelValues(model).Add(float64(ri.output))
			}
			kv := []any{
				"id", ri.id, "method", c.Request().Method, "path", path, "api", ri.api, "status", status,
				"model", ri.client, "modelKey", ri.model, "node", ri.node, "key", ri.keyName,
				"durationMs", elapsed.Milliseconds(), "stream", ri.stream,
				"promptTokens", ri.prompt, "completionTokens", ri.output, "cachedTokens", ri.cached,
				"tokensPerSecond", fmt.Sprintf("%.1f", tps), "retries", ri.retries,
			}
			if ri.ttft > 0 {
				kv = append(kv, "ttftMs", ri.ttft.Milliseconds())
			}
			if ri.coldWait > 0 {
				kv = append(kv, "coldWaitMs", ri.coldWait.Milliseconds())
			}
			if ri.streamErr != "" {
				kv = append(kv, "streamError", ri.streamErr)
			}
			logger.Info("Request", kv...)
			return nil
		}
	}
}

// limitBody bounds request bodies; a larger body is a 413 in the dialect.
func (g *Gateway) limitBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if req.ContentLength > g.cfg.MaxBodyBytes {
			return openai.RequestTooLarge(g.cfg.MaxBodyBytes)
		}
		req.Body = http.MaxBytesReader(c.Response(), req.Body, g.cfg.MaxBodyBytes)
		return next(c)
	}
}
