package gateway

import (
	"math"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestShare(t *testing.T) {
	for _, tc := range []struct {
		limit    int64
		replicas int
		want     int64
	}{
		{0, 3, 0}, {60, 1, 60}, {60, 3, 20}, {61, 3, 21}, {2, 3, 1}, {1, 5, 1}, {100, 0, 100},
	} {
		if got := share(tc.limit, tc.replicas); got != tc.want {
			t.Errorf("share(%d, %d) = %d, want %d", tc.limit, tc.replicas, got, tc.want)
		}
	}
}

func TestRequestsPerMinuteBucket(t *testing.T) {
	var l keyLimiter
	s := keyShare{requestsPerMinute: 3}
	for i := range 3 {
		if d := l.admit(t0, s, 0); d != nil {
			t.Fatalf("request %d refused: %+v", i, d)
		}
		l.release(t0, s, 0, 0)
	}
	d := l.admit(t0, s, 0)
	if d == nil || d.outcome != outcomeLimitRequests || d.retryAfter != 20*time.Second {
		t.Fatalf("4th request within the minute: %+v, want requests limit with retry in 20s", d)
	}
	// One request's worth refills in 60 s ÷ 3.
	if d := l.admit(t0.Add(19*time.Second), s, 0); d == nil {
		t.Fatal("admitted before a request's worth refilled")
	}
	if d := l.admit(t0.Add(20*time.Second), s, 0); d != nil {
		t.Fatalf("refused after 20s: %+v", d)
	}
	// The bucket never holds more than a minute's worth.
	l.release(t0, s, 0, 0)
	later := t0.Add(time.Hour)
	for i := range 3 {
		if d := l.admit(later, s, 0); d != nil {
			t.Fatalf("after an idle hour, request %d refused", i)
		}
	}
	if d := l.admit(later, s, 0); d == nil {
		t.Fatal("an idle hour banked more than a minute's worth")
	}
}

func TestTokensPerMinuteReconcile(t *testing.T) {
	var l keyLimiter
	s := keyShare{tokensPerMinute: 600} // 10 tokens a second
	if d := l.admit(t0, s, 100); d != nil {
		t.Fatalf("refused: %+v", d)
	}
	// The neuron reported 400 tokens: 300 more than estimated are charged.
	l.release(t0, s, 100, 400)
	if got := l.tokens.level; got != 200 {
		t.Fatalf("level after reconcile = %v, want 200", got)
	}
	// An estimate of 300 does not fit in 200: wait for 100 more.
	d := l.admit(t0, s, 300)
	if d == nil || d.outcome != outcomeLimitTokens || d.retryAfter != 10*time.Second {
		t.Fatalf("over budget: %+v, want tokens limit with retry in 10s", d)
	}
	// Used less than estimated: the difference is refunded.
	if d := l.admit(t0, s, 150); d != nil {
		t.Fatalf("refused: %+v", d)
	}
	l.release(t0, s, 150, 50)
	if got := l.tokens.level; got != 150 {
		t.Fatalf("level after refund = %v, want 150", got)
	}
	// Unknown usage (the client left before the usage came): the
	// estimate stands.
	if d := l.admit(t0, s, 50); d != nil {
		t.Fatalf("refused: %+v", d)
	}
	l.release(t0, s, 50, -1)
	if got := l.tokens.level; got != 100 {
		t.Fatalf("level with unknown usage = %v, want 100", got)
	}
}

func TestOversizedRequestPassesOnAFullBucketAndLeavesDebt(t *testing.T) {
	var l keyLimiter
	s := keyShare{tokensPerMinute: 60}
	if d := l.admit(t0, s, 1000); d != nil {
		t.Fatalf("a request larger than the whole budget must pass on a full bucket: %+v", d)
	}
	l.release(t0, s, 1000, 1000)
	d := l.admit(t0, s, 1)
	if d == nil || d.outcome != outcomeLimitTokens {
		t.Fatalf("after the debt: %+v", d)
	}
	// 940 tokens of debt plus 1 to spend, at 1 token a second.
	if want := 941 * time.Second; d.retryAfter != want {
		t.Fatalf("retry after %s, want %s", d.retryAfter, want)
	}
}

func TestConcurrencyLimitAndAllOrNothing(t *testing.T) {
	var l keyLimiter
	s := keyShare{maxConcurrent: 2, requestsPerMinute: 10}
	for range 2 {
		if d := l.admit(t0, s, 0); d != nil {
			t.Fatalf("refused: %+v", d)
		}
	}
	d := l.admit(t0, s, 0)
	if d == nil || d.outcome != outcomeLimitConcurrency || d.retryAfter != time.Second {
		t.Fatalf("third concurrent: %+v", d)
	}
	// The refused request took no request from the bucket.
	if got := l.requests.level; math.Abs(got-8) > 1e-9 {
		t.Fatalf("requests left = %v, want 8", got)
	}
	l.release(t0, s, 0, 0)
	if d := l.admit(t0, s, 0); d != nil {
		t.Fatalf("after a release: %+v", d)
	}
}

func TestShrinkingShareClipsTheBucket(t *testing.T) {
	var l keyLimiter
	if d := l.admit(t0, keyShare{requestsPerMinute: 60}, 0); d != nil {
		t.Fatal(d)
	}
	// A second replica joined: the share halves and the level with it.
	s := keyShare{requestsPerMinute: 30}
	for i := range 30 {
		if d := l.admit(t0, s, 0); d != nil {
			t.Fatalf("request %d refused", i)
		}
	}
	if d := l.admit(t0, s, 0); d == nil {
		t.Fatal("admitted beyond the shrunk share")
	}
}

func TestRoundUpSecond(t *testing.T) {
	for in, want := range map[time.Duration]time.Duration{
		0: time.Second, time.Millisecond: time.Second, time.Second: time.Second,
		1001 * time.Millisecond: 2 * time.Second, 20 * time.Second: 20 * time.Second,
	} {
		if got := roundUpSecond(in); got != want {
			t.Errorf("roundUpSecond(%s) = %s, want %s", in, got, want)
		}
	}
}
