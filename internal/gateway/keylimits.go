package gateway

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// Per-key limits.
//
// A key's limits are for the whole gateway, and every gateway replica
// enforces its share of them: the limit divided by the number of gateway
// replicas, rounded up (at least 1). Requests-per-minute and
// tokens-per-minute are token buckets holding a minute's worth of the
// share and refilling at share/60 per second, so a key can burst its
// per-minute share at once and sustains exactly its rate. Concurrency is a
// count of requests in flight.
//
// Tokens are counted at admission from an estimate of the prompt (the
// body's size ÷ 4) and corrected when the request ends with the usage the
// neuron reported (prompt + completion tokens): a request that used more
// leaves the bucket in debt, one that used less is refunded.

// bytesPerToken turns a body's size into a token estimate: about four
// bytes of English text per token, which overestimates JSON a little.
const bytesPerToken = 4

// Outcomes of a request, as the per-key metric's outcome label.
const (
	outcomeOK                 = "ok"
	outcomeClientError        = "client_error"
	outcomeServerError        = "server_error"
	outcomeStreamError        = "stream_error"
	outcomeLimitRequests      = "rate_limited_requests"
	outcomeLimitTokens        = "rate_limited_tokens"
	outcomeLimitConcurrency   = "rate_limited_concurrency"
	concurrencyRetryAfterSecs = 1
)

// keyShare is a key's limits on one replica; 0 is no limit.
type keyShare struct {
	requestsPerMinute float64
	tokensPerMinute   float64
	maxConcurrent     int64
}

// share divides a gateway-wide limit among n replicas, rounding up and
// never below 1, so a small limit is not rounded to "nothing allowed".
func share(limit int64, n int) int64 {
	if limit <= 0 {
		return 0
	}
	n = max(n, 1)
	return max(1, (limit+int64(n)-1)/int64(n))
}

// shareOf is the key's share on one of n replicas.
func shareOf(k *apiKey, n int) keyShare {
	return keyShare{
		requestsPerMinute: float64(share(k.requestsPerMinute, n)),
		tokensPerMinute:   float64(share(k.tokensPerMinute, n)),
		maxConcurrent:     share(k.maxConcurrent, n),
	}
}

// bucket is a token bucket holding up to a minute's worth of its rate. The
// level may go below zero (a debt, when a request used more tokens than
// its estimate) and refills from there.
type bucket struct {
	level   float64
	last    time.Time
	started bool
}

// refill brings the bucket up to now for a per-minute capacity; a
// capacity that shrank (more replicas) clips the level.
func (b *bucket) refill(now time.Time, perMinute float64) {
	if !b.started {
		b.level, b.last, b.started = perMinute, now, true
		return
	}
	if dt := now.Sub(b.last); dt > 0 {
		b.level += perMinute * dt.Seconds() / 60
		b.last = now
	}
	b.level = math.Min(b.level, perMinute)
}

// wait is how long until the bucket holds need.
func (b *bucket) wait(need, perMinute float64) time.Duration {
	if b.level >= need {
		return 0
	}
	return time.Duration((need - b.level) / perMinute * float64(time.Minute))
}

// keyLimiter is one key's state on this replica.
type keyLimiter struct {
	mu       sync.Mutex
	inFlight int64
	requests bucket
	tokens   bucket
}

// denial says which limit refused a request, and when to retry.
type denial struct {
	outcome    string
	retryAfter time.Duration
}

// admit takes a slot, a request and an estimate of cost tokens if every
// limit allows; else it takes nothing and says which limit refused. A
// request whose estimate exceeds the whole per-minute token share is
// admitted when the bucket is full (it would never be otherwise) and
// leaves it in debt.
func (l *keyLimiter) admit(now time.Time, s keyShare, cost float64) *denial {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.maxConcurrent > 0 && l.inFlight >= s.maxConcurrent {
		return &denial{outcome: outcomeLimitConcurrency, retryAfter: concurrencyRetryAfterSecs * time.Second}
	}
	if s.requestsPerMinute > 0 {
		l.requests.refill(now, s.requestsPerMinute)
		if w := l.requests.wait(1, s.requestsPerMinute); w > 0 {
			return &denial{outcome: outcomeLimitRequests, retryAfter: w}
		}
	}
	if s.tokensPerMinute > 0 {
		l.tokens.refill(now, s.tokensPerMinute)
		if w := l.tokens.wait(math.Min(cost, s.tokensPerMinute), s.tokensPerMinute); w > 0 {
			return &denial{outcome: outcomeLimitTokens, retryAfter: w}
		}
	}
	l.inFlight++
	if s.requestsPerMinute > 0 {
		l.requests.level--
	}
	if s.tokensPerMinute > 0 {
		l.tokens.level -= cost
	}
	return nil
}

// release ends an admitted request: its slot back, and its token charge
// corrected from the estimate to what it used (used < 0: unknown, the
// estimate stands).
func (l *keyLimiter) release(now time.Time, s keyShare, charged, used float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inFlight--
	if s.tokensPerMinute > 0 && used >= 0 {
		l.tokens.refill(now, s.tokensPerMinute)
		l.tokens.level -= used - charged
		l.tokens.level = math.Min(l.tokens.level, s.tokensPerMinute)
	}
}

// keyLimiters holds each key's limiter by key name, so a reloaded keys
// file keeps the state of the keys it still has.
type keyLimiters struct {
	mu     sync.Mutex
	byName map[string]*keyLimiter
}

func (ls *keyLimiters) get(name string) *keyLimiter {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.byName == nil {
		ls.byName = map[string]*keyLimiter{}
	}
	l := ls.byName[name]
	if l == nil {
		l = &keyLimiter{}
		ls.byName[name] = l
	}
	return l
}

// keyAccount is an admitted request's account, settled when it ends.
type keyAccount struct {
	lim     *keyLimiter
	share   keyShare
	charged float64
}

// admitKey applies the request's key limits to an inference request (a
// POST), once its Model is resolved. Over a limit it is a 429 with
// Retry-After, which the error handler renders in the caller's dialect
// (Anthropic: rate_limit_error).
func (g *Gateway) admitKey(c echo.Context) error {
	ri := info(c)
	ak := ri.apiKey
	if c.Request().Method != http.MethodPost || ak == nil || !ak.limited() || ri.admission != nil {
		return nil
	}
	s := shareOf(ak, g.peers.count())
	cost := float64((ri.bodyBytes + bytesPerToken - 1) / bytesPerToken)
	if c.Request().URL.Path == "/v1/messages/count_tokens" {
		cost = 0 // counting is not processing
	}
	lim := g.keyLimiters.get(ak.name)
	if d := lim.admit(g.clock.Now(), s, cost); d != nil {
		ri.keyOutcome = d.outcome
		return newAPIError(openai.RateLimited("%s", limitMessage(ak, s, d, g.peers.count())), roundUpSecond(d.retryAfter))
	}
	ri.admission = &keyAccount{lim: lim, share: s, charged: cost}
	g.keyMetrics.inFlight.WithLabelValues(ak.name).Inc()
	return nil
}

func limitMessage(ak *apiKey, s keyShare, d *denial, replicas int) string {
	var what string
	switch d.outcome {
	case outcomeLimitConcurrency:
		what = fmt.Sprintf("concurrent requests (limit %d; %d per gateway replica)", ak.maxConcurrent, s.maxConcurrent)
	case outcomeLimitRequests:
		what = fmt.Sprintf("requests per minute (limit %d; %.0f per gateway replica)", ak.requestsPerMinute, s.requestsPerMinute)
	default:
		what = fmt.Sprintf("tokens per minute (limit %d; %.0f per gateway replica)", ak.tokensPerMinute, s.tokensPerMinute)
	}
	msg := fmt.Sprintf("Rate limit reached for API key %q on %s. Please try again in %s.", ak.name, what, roundUpSecond(d.retryAfter))
	if replicas > 1 {
		msg += " Limits are shared among " + strconv.Itoa(replicas) + " gateway replicas."
	}
	return msg
}

func roundUpSecond(d time.Duration) time.Duration {
	return max(time.Second, ((d+time.Second-1)/time.Second)*time.Second)
}

// settle closes a request's account with its key: the concurrency slot,
// the token charge reconciled with the neuron's usage, and the per-key
// metrics. err is what the handlers returned (not yet rendered).
func (g *Gateway) settle(c echo.Context, err error) {
	ri := info(c)
	ak := ri.apiKey
	if ak == nil {
		return
	}
	if a := ri.admission; a != nil {
		used := -1.0
		if ri.prompt > 0 || ri.output > 0 || c.Request().URL.Path == "/v1/messages/count_tokens" {
			used = float64(ri.prompt + ri.output)
		}
		a.lim.release(g.clock.Now(), a.share, a.charged, used)
		g.keyMetrics.inFlight.WithLabelValues(ak.name).Dec()
	}
	if len(c.Request().URL.Path) < 4 || c.Request().URL.Path[:4] != "/v1/" {
		return
	}
	outcome := ri.keyOutcome
	if outcome == "" {
		status := c.Response().Status
		if err != nil && !c.Response().Committed {
			status = toAPIError(err).err.Status
		}
		switch {
		case status >= 500:
			outcome = outcomeServerError
		case status >= 400:
			outcome = outcomeClientError
		case ri.streamErr != "":
			outcome = outcomeStreamError
		default:
			outcome = outcomeOK
		}
	}
	g.keyMetrics.observe(ak.name, outcome, ri.prompt, ri.output)
}
