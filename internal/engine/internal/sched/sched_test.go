package sched

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/helexa-ai/cortex/internal/engine"
)

func TestTextStream(t *testing.T) {
	tests := []struct {
		name    string
		stops   []string
		pieces  []string
		chunks  []string // text of each Push, then of Flush when not stopped
		stopped bool
	}{
		{"plain", nil, []string{"Hello", ",", " world"}, []string{"Hello", ",", " world", ""}, false},
		{"stop inside one token", []string{"lo,"}, []string{"Hello, world"}, []string{"Hel"}, true},
		{"stop across tokens", []string{"\n\n"}, []string{"a", "\n", "\n", "b"}, []string{"a", "", ""}, true},
		{"false start released", []string{"END"}, []string{"E", "N", "x"}, []string{"", "", "ENx", ""}, false},
		{"held prefix flushed at end", []string{"END"}, []string{"ab", "EN"}, []string{"ab", "", "EN"}, false},
		{"earliest of several", []string{"cd", "bc"}, []string{"abcd"}, []string{"a"}, true},
		{"stop at start", []string{"x"}, []string{"xyz"}, []string{""}, true},
		{"utf8 split over tokens", nil, []string{"caf", "\xc3", "\xa9!"}, []string{"caf", "", "é!", ""}, false},
		{"4-byte rune in three tokens", nil, []string{"\xf0\x9f", "\x98", "\x80"}, []string{"", "", "😀", ""}, false},
		{"invalid byte not held", nil, []string{"a\xff", "b"}, []string{"a\uFFFD", "b", ""}, false},
		{"dangling lead byte at end", nil, []string{"a\xe2\x82"}, []string{"a", "\uFFFD"}, false},
		{"stop after multibyte", []string{"é!"}, []string{"caf\xc3", "\xa9!"}, []string{"caf", ""}, true},
		{"empty stop ignored", []string{""}, []string{"ab"}, []string{"ab", ""}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewTextStream(tc.stops)
			var got []string
			stopped := false
			for _, p := range tc.pieces {
				c, st := s.Push(p, nil)
				got = append(got, c.Text)
				if st {
					stopped = true
					break
				}
			}
			if !stopped {
				got = append(got, s.Flush().Text)
			}
			if stopped != tc.stopped {
				t.Errorf("stopped = %v, want %v", stopped, tc.stopped)
			}
			if strings.Join(got, "|") != strings.Join(tc.chunks, "|") {
				t.Errorf("chunks = %q, want %q", got, tc.chunks)
			}
		})
	}
}

func TestTextStreamLogprobs(t *testing.T) {
	s := NewTextStream([]string{"STOP"})
	lp := func(tok string) *engine.TokenLogprob { return &engine.TokenLogprob{Token: tok} }
	var got [][]string
	for _, p := range []string{"a", "S", "T", "b", "ST", "OP", "c"} {
		c, stopped := s.Push(p, lp(p))
		var toks []string
		for _, l := range c.Logprobs {
			toks = append(toks, l.Token)
		}
		got = append(got, toks)
		if stopped {
			break
		}
	}
	// "S" and "T" are held until "b" shows they are not a stop; "ST" and
	// "OP" form the stop, so their logprobs are never handed out.
	want := [][]string{{"a"}, nil, nil, {"S", "T", "b"}, nil, nil}
	if len(got) != len(want) {
		t.Fatalf("got %d chunks %v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if strings.Join(got[i], ",") != strings.Join(want[i], ",") {
			t.Errorf("chunk %d logprobs = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestQueueAdmission(t *testing.T) {
	full := errors.New("full")
	q := NewQueue(2, 1)
	var rs []*Request
	for i := 0; i < 3; i++ {
		r := NewGenerate(engine.GenerateRequest{}, time.Now())
		if err := q.Admit(r, full); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		rs = append(rs, r)
	}
	if err := q.Admit(NewGenerate(engine.GenerateRequest{}, time.Now()), full); !errors.Is(err, full) {
		t.Fatalf("4th request: err = %v, want full", err)
	}
	// A cancelled waiting request is skipped by Take and leaves its place.
	rs[0].Cancel()
	q.Leave(rs[0])
	if got := q.Take(5); len(got) != 2 || got[0] != rs[1] || got[1] != rs[2] {
		t.Fatalf("Take = %v", got)
	}
	if err := q.Admit(NewGenerate(engine.GenerateRequest{}, time.Now()), full); err != nil {
		t.Fatalf("after a leave: %v", err)
	}
	closed := errors.New("closed")
	if w := q.Close(closed); len(w) != 1 {
		t.Fatalf("Close returned %d waiting, want 1", len(w))
	}
	if err := q.Admit(NewGenerate(engine.GenerateRequest{}, time.Now()), full); !errors.Is(err, closed) {
		t.Fatalf("after close: %v", err)
	}
}

func TestRequestWait(t *testing.T) {
	t.Run("chunks then result", func(t *testing.T) {
		r := NewGenerate(engine.GenerateRequest{Prompt: []int{1}}, time.Now())
		go func() {
			for _, s := range []string{"a", "b", "c"} {
				r.Emit(engine.Chunk{Text: s}, 1)
			}
			r.Finish(engine.Result{FinishReason: engine.FinishStop, CompletionTokens: 3}, nil)
		}()
		var text string
		res, err := r.Wait(context.Background(), func(c engine.Chunk) error { text += c.Text; return nil })
		if err != nil || text != "abc" || res.CompletionTokens != 3 {
			t.Fatalf("Wait = %+v, %v, text %q", res, err, text)
		}
	})
	t.Run("onChunk error cancels", func(t *testing.T) {
		r := NewGenerate(engine.GenerateRequest{Prompt: []int{1}}, time.Now())
		r.Emit(engine.Chunk{Text: "a"}, 1)
		boom := errors.New("boom")
		res, err := r.Wait(context.Background(), func(engine.Chunk) error { return boom })
		if !errors.Is(err, boom) || res.FinishReason != engine.FinishCancelled || !r.Cancelled() {
			t.Fatalf("Wait = %+v, %v", res, err)
		}
	})
	t.Run("ctx end cancels", func(t *testing.T) {
		r := NewGenerate(engine.GenerateRequest{Prompt: []int{1}}, time.Now())
		ctx, cancel := context.WithCancel(context.Background())
		go cancel()
		res, err := r.Wait(ctx, nil)
		if !errors.Is(err, context.Canceled) || res.FinishReason != engine.FinishCancelled || !r.Cancelled() {
			t.Fatalf("Wait = %+v, %v", res, err)
		}
	})
}

func TestValidate(t *testing.T) {
	ok := engine.GenerateRequest{Prompt: []int{1, 2}}
	tests := []struct {
		name string
		mod  func(*engine.GenerateRequest)
		want error
	}{
		{"ok", func(*engine.GenerateRequest) {}, nil},
		{"empty", func(r *engine.GenerateRequest) { r.Prompt = nil }, engine.ErrInvalidRequest},
		{"token out of range", func(r *engine.GenerateRequest) { r.Prompt = []int{1, 10} }, engine.ErrInvalidRequest},
		{"negative token", func(r *engine.GenerateRequest) { r.Prompt = []int{-1} }, engine.ErrInvalidRequest},
		{"too long", func(r *engine.GenerateRequest) { r.Prompt = make([]int, 8) }, engine.ErrContextLengthExceeded},
		{"negative temperature", func(r *engine.GenerateRequest) { r.Sampling.Temperature = -1 }, engine.ErrInvalidRequest},
		{"top_p above 1", func(r *engine.GenerateRequest) { r.Sampling.TopP = 1.5 }, engine.ErrInvalidRequest},
		{"top logprobs", func(r *engine.GenerateRequest) { r.TopLogprobs = 21 }, engine.ErrInvalidRequest},
		{"max tokens", func(r *engine.GenerateRequest) { r.MaxTokens = -1 }, engine.ErrInvalidRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := ok
			tc.mod(&r)
			if err := Validate(&r, 10, 8); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Validate = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestTextStreamReportsTheEarliestStop(t *testing.T) {
	s := NewTextStream([]string{"world", "lo w"})
	var got string
	for _, p := range []string{"hel", "lo", " wor", "ld"} {
		c, stopped := s.Push(p, nil)
		got += c.Text
		if stopped {
			break
		}
	}
	if got != "hel" || s.Matched() != "lo w" {
		t.Fatalf("text %q, matched %q; want \"hel\" cut by \"lo w\"", got, s.Matched())
	}
	if s := NewTextStream([]string{"x"}); s.Matched() != "" {
		t.Fatal("nothing matched yet")
	}
}
