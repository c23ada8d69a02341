package neuronapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// APIError is a non-2xx answer from a neuron.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("neuron answered %d %s: %s", e.Status, e.Code, e.Message)
	}
	return fmt.Sprintf("neuron answered %d: %s", e.Status, e.Message)
}

// Retryable reports whether the same request may succeed later.
func (e *APIError) Retryable() bool {
	return e.Status >= 500 && e.Status != http.StatusInsufficientStorage || e.Status == http.StatusTooManyRequests
}

// Client calls neurons' control API. One Client serves every neuron; the
// endpoint is passed per call.
type Client struct {
	// HTTP is the transport; its Timeout should be unset (per-call
	// deadlines come from Timeout below).
	HTTP *http.Client
	// Token is sent as a bearer token, unless Tokens is set.
	Token string
	// Tokens, when set, supplies the bearer token on every call, so a
	// rotated token file takes effect without a restart; a call refused
	// with 401 is retried once with its Fallback.
	Tokens *TokenSource
	// Timeout bounds one attempt of one call.
	Timeout time.Duration
	// Attempts is how many times an idempotent call is tried on connection
	// errors and retryable statuses.
	Attempts int
	// Backoff is the wait before the second attempt; it doubles after.
	Backoff time.Duration
}

// NewClient returns a Client with sensible defaults.
func NewClient(token string) *Client {
	return &Client{
		HTTP: &http.Client{Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 8,
			IdleConnTimeout:     90 * time.Second,
		}},
		Token:    token,
		Timeout:  10 * time.Second,
		Attempts: 3,
		Backoff:  200 * time.Millisecond,
	}
}

// Models is GET /models.
func (c *Client) Models(ctx context.Context, endpoint string) (*ModelsResponse, error) {
	var out ModelsResponse
	if err := c.do(ctx, http.MethodGet, endpoint, PathModels, nil, &out); err != nil {
		return nil, fmt.Errorf("listing models on %s: %w", endpoint, err)
	}
	return &out, nil
}

// Discovery is GET /discovery.
func (c *Client) Discovery(ctx context.Context, endpoint string) (*Discovery, error) {
	var out Discovery
	if err := c.do(ctx, http.MethodGet, endpoint, PathDiscovery, nil, &out); err != nil {
		return nil, fmt.Errorf("discovering %s: %w", endpoint, err)
	}
	return &out, nil
}

// Load is POST /models/load. It returns once the neuron has accepted the
// load (state loading) or finds the model already loaded; callers watch
// Models for the state to turn ready.
func (c *Client) Load(ctx context.Context, endpoint string, req LoadRequest) (*ModelStatus, error) {
	var out ModelStatus
	if err := c.do(ctx, http.MethodPost, endpoint, PathLoad, req, &out); err != nil {
		return nil, fmt.Errorf("loading %s on %s: %w", req.Name, endpoint, err)
	}
	return &out, nil
}

// Unload is POST /models/unload.
func (c *Client) Unload(ctx context.Context, endpoint, name string) error {
	if err := c.do(ctx, http.MethodPost, endpoint, PathUnload, UnloadRequest{Name: name}, nil); err != nil {
		return fmt.Errorf("unloading %s on %s: %w", name, endpoint, err)
	}
	return nil
}

// Estimate is POST /models/estimate.
func (c *Client) Estimate(ctx context.Context, endpoint string, req EstimateRequest) (*Estimate, error) {
	var out Estimate
	if err := c.do(ctx, http.MethodPost, endpoint, PathEstimate, req, &out); err != nil {
		return nil, fmt.Errorf("estimating %s on %s: %w", req.Source.URI, endpoint, err)
	}
	return &out, nil
}

// do runs one call with retries. Every control call is idempotent, so
// retrying after a connection error or a retryable status is safe.
func (c *Client) do(ctx context.Context, method, endpoint, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("encoding request: %w", err)
		}
	}
	attempts := max(c.Attempts, 1)
	backoff := c.Backoff
	var lastErr error
	for i := range attempts {
		if i > 0 {
			select {
			case <-ctx.Done():
				return errors.Join(lastErr, ctx.Err())
			case <-time.After(backoff):
			}
			backoff *= 2
		}
		url := strings.TrimRight(endpoint, "/") + path
		tok := c.token()
		err := c.once(ctx, method, url, body, out, tok)
		if alt := c.fallback(err, tok); alt != "" {
			// The token rotated on one side first: one more try, not
			// counted as an attempt.
			err = c.once(ctx, method, url, body, out, alt)
		}
		if err == nil {
			return nil
		}
		lastErr = err
		var ae *APIError
		if errors.As(err, &ae) && !ae.Retryable() {
			return err
		}
		if ctx.Err() != nil {
			return err
		}
	}
	return lastErr
}

// token is the bearer token for the next call.
func (c *Client) token() string {
	if c.Tokens != nil {
		return c.Tokens.Token()
	}
	return c.Token
}

// fallback is the token to retry a call refused with 401 with, or "".
func (c *Client) fallback(err error, sent string) string {
	var ae *APIError
	if c.Tokens == nil || !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		return ""
	}
	return c.Tokens.Fallback(sent)
}

func (c *Client) once(ctx context.Context, method, url string, body []byte, out any, token string) error {
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("reading answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		ae := &APIError{Status: resp.StatusCode, Message: strings.TrimSpace(string(data))}
		var eb ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error.Message != "" {
			ae.Code, ae.Message = eb.Error.Code, eb.Error.Message
		}
		return ae
	}
	if out == nil || len(data) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decoding answer: %w", err)
	}
	return nil
}
