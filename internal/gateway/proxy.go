package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/labstack/echo/v4"

	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// upstreamCall is one request to be served by some replica of a Model.
type upstreamCall struct {
	key    string
	path   string
	body   []byte
	stream bool
	prefix []uint64
	// promptBytes is the prompt's size in the bytes prefix hashes.
	promptBytes int
	// waiting, when set, is called every KeepAliveInterval while the
	// request is held for a cold Model (a streaming client's keep-alive).
	waiting func()
}

// upstream is a neuron's answer being relayed. Close releases everything.
type upstream struct {
	resp    *http.Response
	body    io.Reader
	replica Replica
	close   func()
	// started says the first token came (dispatch).
	started func()
}

// suspectFor is how long a replica that refused a connection is skipped:
// about the time the manager needs to notice a dead neuron.
const suspectFor = 5 * time.Second

// maxErrorBody bounds how much of a failed upstream answer is read.
const maxErrorBody = 64 << 10

// dispatch sends the call to a ready replica: it holds the request while
// the Model is cold, and retries on another replica after a connection
// error, a 5xx, a full queue or a replica that no longer has the model —
// always before the first byte reaches the client, so retrying is safe.
// When every replica refuses the connection (their node died or hung) or
// answers that it no longer holds the model (unloaded, or its neuron
// restarted empty, before the Model's status said so) it holds the request
// for up to UnreachableHold while the fleet replaces them, instead of
// failing what the replicas never held.
func (g *Gateway) dispatch(c echo.Context, uc *upstreamCall) (*upstream, error) {
	ri := info(c)
	ctx := c.Request().Context()
	coldDeadline := g.clock.Now().Add(g.cfg.ColdStartTimeout)
	admitDeadline := time.Now().Add(g.cfg.Admission.Timeout)
	var tried []string
	var lastErr *apiError
	// lastNotHeld: lastErr is a neuron's "not loaded here". That must not
	// reach the client as the 404 of a model that does not exist (it
	// exists; the replica was stale), so failed makes it a 503 to retry.
	var lastNotHeld bool
	failed := func() *apiError {
		if lastErr == nil || !lastNotHeld {
			return lastErr
		}
		return newAPIError(openai.Unavailable("no replica of this model holds it at the moment; it is being placed again"), time.Second)
	}
	// unreachable: every replica tried since tried was last cleared refused
	// the connection or no longer held the model; holdUntil: when holding
	// for their replacement ends.
	unreachable := true
	var holdUntil time.Time
	// hold waits for the replicas' replacement when every one tried was
	// unreachable and the hold has time left; true means try again.
	hold := func() (bool, error) {
		if lastErr == nil || !unreachable || g.cfg.UnreachableHold <= 0 {
			return false, nil
		}
		if holdUntil.IsZero() {
			holdUntil = g.clock.Now().Add(g.cfg.UnreachableHold)
			if holdUntil.After(coldDeadline) {
				holdUntil = coldDeadline
			}
		}
		if !g.clock.Now().Before(holdUntil) {
			return false, failed() // held long enough: no more tries
		}
		start := g.clock.Now()
		err := g.holdForReplacement(ctx, uc, holdUntil)
		ri.coldWait += g.clock.Since(start)
		if err != nil {
			return false, err
		}
		tried, unreachable = nil, true
		return true, nil
	}
	for attempt := 0; ; {
		reps := g.catalog.Replicas(uc.key)
		if len(reps) == 0 {
			left := coldDeadline.Sub(g.clock.Now())
			if left <= 0 {
				return nil, errColdTimeout
			}
			start := g.clock.Now()
			var err error
			reps, err = g.waitReady(ctx, uc.key, left, uc.waiting)
			ri.coldWait += g.clock.Since(start)
			if err != nil {
				if errors.Is(err, errUnknownModel) {
					return nil, openai.ModelNotFound(ri.client)
				}
				return nil, err
			}
			// Held for a cold Model: it may wait for room until its
			// cold-start deadline (see AdmissionConfig.Timeout).
			admitDeadline = time.Now().Add(max(g.cfg.Admission.Timeout, coldDeadline.Sub(g.clock.Now())))
		}
		model, _ := g.catalog.Model(uc.key)
		s, err := g.admit.acquire(ctx, &ticket{
			model: uc.key, reps: reps, limit: g.admit.replicaLimit(model, uc.path), exclude: tried,
			prompt: Prompt{Model: uc.key, Keys: uc.prefix, Bytes: uc.promptBytes, Parallel: modelParallel(model)},
		}, waitOpts{deadline: admitDeadline, changed: g.catalog.Wait, tick: uc.waiting, tickEvery: g.cfg.KeepAliveInterval})
		if errors.Is(err, errReplicasChanged) {
			continue
		}
		if err != nil && !errors.Is(err, errAllTried) {
			return nil, err
		}
		rep, release := s.rep, s.release
		if err != nil {
			// Every ready replica failed this request once. A full queue
			// everywhere is the client's to retry; anything else (a replica
			// just evicted) is worth one look at a fresher catalog.
			if again, err := hold(); err != nil {
				return nil, err
			} else if again {
				attempt = 0
				continue
			}
			if lastErr != nil && (lastErr.err.Status == http.StatusTooManyRequests || attempt >= g.cfg.MaxAttempts) {
				if lastErr.err.Code == openai.CodeOverloaded {
					g.metrics.overloaded.WithLabelValues(uc.key, overloadUpstream).Inc()
				}
				return nil, failed()
			}
			select {
			case <-g.catalog.Wait(uc.key):
			case <-time.After(time.Second):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			tried, unreachable = nil, true
			continue
		}
		if attempt >= g.cfg.MaxAttempts {
			release()
			if again, err := hold(); err != nil {
				return nil, err
			} else if again {
				attempt = 0
				continue
			}
			return nil, failed()
		}
		attempt++
		if attempt > 1 {
			ri.retries++
			g.metrics.retries.WithLabelValues(uc.key).Inc()
		}
		// started is the first token, from a stream's first chunk (pump)
		// or a plain answer's 103 (send): the balancer hears of it, and
		// it is timed.
		started := func() {
			s.started()
			if ri.ttft == 0 {
				ri.ttft = g.clock.Since(ri.start)
				g.metrics.ttft.WithLabelValues(uc.key, ri.api).Observe(ri.ttft.Seconds())
			}
		}
		up, err := g.send(ctx, rep, uc, started)
		var se *statusError
		if err != nil && !errors.As(err, &se) && ctx.Err() == nil {
			// A connection-level failure: log the details, show the client
			// only which replica could not be reached.
			loggerOfCtx(ctx).Info("Replica unreachable", "node", rep.Node, "error", err.Error())
			err = newAPIError(openai.NewError(http.StatusBadGateway, openai.TypeServer, openai.CodeServerError, "",
				"the replica of this model on %s could not be reached", rep.Node), time.Second)
		}
		if err == nil {
			ri.node = rep.Node
			inflight := g.metrics.inFlight.WithLabelValues(uc.key, rep.Node)
			inflight.Inc()
			up.started = started
			inner := up.close
			var once sync.Once
			up.close = func() {
				once.Do(func() {
					inner()
					release()
					inflight.Dec()
				})
			}
			return up, nil
		}
		release()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		ae := toAPIError(err)
		kind := "connect"
		if se != nil {
			kind = "status"
			if !se.retryable() {
				return nil, ae
			}
		}
		g.metrics.upstreamErrors.WithLabelValues(uc.key, rep.Node, kind).Inc()
		notHeld := se != nil && se.notHeld()
		switch {
		case kind == "connect":
			g.balancer.MarkDown(rep.Endpoint, suspectFor)
		case !notHeld:
			unreachable = false
		}
		lastErr, lastNotHeld = ae, notHeld
		tried = append(tried, rep.Endpoint)
	}
}

// holdForReplacement holds a request whose every replica was unreachable
// until the Model's ready set changes (the dead node's replicas dropped,
// a new one ready), a second has passed (the process may be back on the
// same address) or until, keeping a streaming client alive meanwhile.
func (g *Gateway) holdForReplacement(ctx context.Context, uc *upstreamCall, until time.Time) error {
	changed := g.catalog.Wait(uc.key)
	retry := time.NewTimer(min(time.Second, until.Sub(g.clock.Now())))
	defer retry.Stop()
	var tickC <-chan time.Time
	if uc.waiting != nil {
		t := time.NewTicker(g.cfg.KeepAliveInterval)
		defer t.Stop()
		tickC = t.C
	}
	for {
		select {
		case <-changed:
			return nil
		case <-retry.C:
			return nil
		case <-tickC:
			uc.waiting()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// statusError is a non-2xx answer from a neuron, already translated.
type statusError struct {
	status int
	code   string
	ae     *apiError
}

func (e *statusError) Error() string { return e.ae.Error() }
func (e *statusError) Unwrap() error { return e.ae }

// retryable reports whether another replica may do better: server errors,
// a full queue, or a replica that no longer holds (or is still loading)
// the model.
func (e *statusError) retryable() bool {
	switch {
	case e.status >= 500:
		return true
	case e.status == http.StatusTooManyRequests:
		return true
	case e.notHeld():
		return true
	}
	return false
}

// notHeld reports whether the replica answered that it does not hold the
// model: its routing entry is stale, as if its node had gone.
func (e *statusError) notHeld() bool {
	return e.status == http.StatusNotFound && e.code == neuronapi.CodeModelNotFound
}

// send makes one attempt on one replica.
func (g *Gateway) send(ctx context.Context, rep Replica, uc *upstreamCall, started func()) (*upstream, error) {
	ask := !uc.stream && (uc.path == neuronapi.PathChatCompletions || uc.path == neuronapi.PathCompletions)
	if ask {
		// A plain answer's first token comes as a 103 from the neuron
		// (a stream's is its first chunk, which pump sees): the balancer
		// stops counting the prompt as waiting for prefill there.
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			if neuronapi.IsFirstToken(code, h) {
				started()
			}
			return nil
		}})
	}
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rep.Endpoint+uc.path, bytes.NewReader(uc.body))
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if ask {
		req.Header.Set(neuronapi.HeaderFirstToken, "1")
	}
	if id, ok := ctx.Value(requestIDKey{}).(string); ok {
		req.Header.Set("X-Request-Id", id)
	}
	// A stream's headers come at once (the neuron keeps the connection
	// alive during prefill), so the idle timeout covers it from the start;
	// a plain answer's headers come with the whole answer.
	headerWait := g.cfg.UpstreamHeaderTimeout
	if uc.stream {
		headerWait = g.cfg.StreamIdleTimeout
	}
	timer := time.AfterFunc(headerWait, cancel)
	resp, err := g.doNeuron(req) //nolint:bodyclose // closed by upstream.close, or below on error answers
	if err != nil {
		timer.Stop()
		cancel()
		return nil, fmt.Errorf("calling %s: %w", rep.Node, err)
	}
	if resp.StatusCode/100 != 2 {
		timer.Stop()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		_ = resp.Body.Close()
		cancel()
		return nil, upstreamError(resp, data)
	}
	if v := resp.Header.Get(neuronapi.HeaderPrefillRate); v != "" {
		if rate, err := strconv.ParseFloat(v, 64); err == nil {
			g.balancer.SetSpeed(uc.key, rep.Endpoint, rate)
		}
	}
	body := &idleReader{r: resp.Body, timer: timer, idle: g.cfg.StreamIdleTimeout}
	timer.Reset(g.cfg.StreamIdleTimeout)
	return &upstream{resp: resp, body: body, replica: rep, close: func() {
		timer.Stop()
		_ = resp.Body.Close()
		cancel()
	}}, nil
}

type requestIDKey struct{}

func loggerOfCtx(ctx context.Context) logr.Logger { return logr.FromContextOrDiscard(ctx) }

// upstreamError translates a neuron's error answer.
func upstreamError(resp *http.Response, data []byte) error {
	var eb struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Code    *string `json:"code"`
			Param   *string `json:"param"`
		} `json:"error"`
	}
	oe := &openai.Error{Status: resp.StatusCode, Type: openai.TypeForStatus(resp.StatusCode), Message: http.StatusText(resp.StatusCode)}
	if json.Unmarshal(data, &eb) == nil && eb.Error.Message != "" {
		oe.Message = eb.Error.Message
		if eb.Error.Type != "" {
			oe.Type = eb.Error.Type
		}
		if eb.Error.Code != nil {
			oe.Code = *eb.Error.Code
		}
		if eb.Error.Param != nil {
			oe.Param = *eb.Error.Param
		}
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		// A neuron has no clients of its own to limit: its 429 means every
		// sequence busy and its queue full, which each dialect calls
		// overloaded.
		oe.Code = openai.CodeOverloaded
	}
	if resp.StatusCode >= 500 {
		// The client sees a gateway-side outage, not a neuron's internals.
		oe.Status = http.StatusBadGateway
		if resp.StatusCode == http.StatusServiceUnavailable {
			oe.Status = http.StatusServiceUnavailable
		}
	}
	ae := &apiError{err: oe}
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && ra > 0 {
		ae.retryAfter = time.Duration(ra) * time.Second
	} else if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		ae.retryAfter = time.Second
	}
	return &statusError{status: resp.StatusCode, code: oe.Code, ae: ae}
}

// idleReader cancels the upstream request when no byte arrives for idle:
// a read timeout, not a total one, so long generations are never cut.
type idleReader struct {
	r     io.Reader
	timer *time.Timer
	idle  time.Duration
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.timer.Reset(r.idle)
	}
	return n, err
}
