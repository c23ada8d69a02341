package gateway

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
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

// authenticate checks the API key (Authorization: Bearer, or x-api-key as
// Anthropic clients send it) unless anonymous access is configured.
func (g *Gateway) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		path := c.Request().URL.Path
		if path == "/healthz" || path == "/readyz" {
			return next(c)
		}
		key := c.Request().Header.Get("x-api-key")
		if key == "" {
			if auth := c.Request().Header.Get("Authorization"); len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
				key = strings.TrimSpace(auth[7:])
			}
		}
		if name, ok := g.keys.check(key); ok {
			info(c).keyName = name
			return next(c)
		}
		if g.cfg.AllowAnonymous {
			info(c).keyName = "anonymous"
			return next(c)
		}
		if key == "" {
			return openai.Unauthorized("missing API key: send Authorization: Bearer <key> or x-api-key")
		}
		return openai.Unauthorized("invalid API key")
	}
}

// keyring holds API keys by their SHA-256, compared in constant time. It
// re-reads its file when the file changes (a rotated Secret), at most every
// few seconds.
type keyring struct {
	path string

	mu      sync.Mutex
	keys    map[[32]byte]string
	modTime time.Time
	checked time.Time
}

func loadKeyring(path string) (*keyring, error) {
	k := &keyring{path: path, keys: map[[32]byte]string{}}
	if path == "" {
		return k, nil
	}
	if err := k.reload(); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *keyring) reload() error {
	st, err := os.Stat(k.path)
	if err != nil {
		return fmt.Errorf("reading API keys: %w", err)
	}
	if st.ModTime().Equal(k.modTime) && len(k.keys) > 0 {
		return nil
	}
	f, err := os.Open(k.path)
	if err != nil {
		return fmt.Errorf("reading API keys: %w", err)
	}
	defer func() { _ = f.Close() }()
	keys := map[[32]byte]string{}
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		n++
		name, key, found := strings.Cut(line, ":")
		if !found {
			name, key = fmt.Sprintf("key-%d", n), line
		}
		keys[sha256.Sum256([]byte(strings.TrimSpace(key)))] = strings.TrimSpace(name)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading API keys: %w", err)
	}
	k.keys, k.modTime = keys, st.ModTime()
	return nil
}

func (k *keyring) check(key string) (string, bool) {
	if key == "" {
		return "", false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.path != "" && time.Since(k.checked) > 5*time.Second {
		k.checked = time.Now()
		_ = k.reload() // keep the old keys if the file is briefly absent
	}
	sum := sha256.Sum256([]byte(key))
	var name string
	found := 0
	for h, n := range k.keys {
		if subtle.ConstantTimeCompare(h[:], sum[:]) == 1 {
			name = n
			found = 1
		}
	}
	return name, found == 1
}

func loggerOf(c echo.Context) logr.Logger {
	return logr.FromContextOrDiscard(c.Request().Context())
}
