package sse

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

func TestWriter(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b)
	steps := []func() error{
		func() error { return w.WriteEvent("message_start", []byte(`{"a":1}`)) },
		func() error { return w.WriteEvent("", []byte("line1\nline2\r\nline3\rline4")) },
		func() error { return w.WriteJSON("x", map[string]string{"html": "<b>&</b>"}) },
		func() error { return w.KeepAlive() },
		func() error { return w.Comment("two\nlines") },
		func() error { return w.WriteDone() },
	}
	for i, s := range steps {
		if err := s(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	want := "event: message_start\ndata: {\"a\":1}\n\n" +
		"data: line1\ndata: line2\ndata: line3\ndata: line4\n\n" +
		"event: x\ndata: {\"html\":\"<b>&</b>\"}\n\n" +
		": ping\n\n" +
		": two\n: lines\n\n" +
		"data: [DONE]\n\n"
	if b.String() != want {
		t.Fatalf("written:\n%q\nwant\n%q", b.String(), want)
	}
	if err := w.WriteEvent("bad\nname", nil); err == nil {
		t.Fatal("WriteEvent accepted a name with a line break")
	}
}

type flushRecorder struct {
	bytes.Buffer
	flushes int
}

func (f *flushRecorder) Flush() { f.flushes++ }

func TestWriterFlushes(t *testing.T) {
	var f flushRecorder
	w := NewWriter(&f)
	_ = w.WriteEvent("", []byte("a"))
	_ = w.KeepAlive()
	if f.flushes != 2 {
		t.Fatalf("flushes = %d, want 2", f.flushes)
	}
	// An http.ResponseWriter behind a wrapper that only exposes Unwrap still
	// gets flushed through http.ResponseController.
	rec := httptest.NewRecorder()
	w = NewWriter(unwrapper{rec})
	_ = w.WriteEvent("", []byte("a"))
	if !rec.Flushed {
		t.Fatal("ResponseWriter behind Unwrap was not flushed")
	}
}

type unwrapper struct{ rw http.ResponseWriter }

func (u unwrapper) Header() http.Header         { return u.rw.Header() }
func (u unwrapper) Write(b []byte) (int, error) { return u.rw.Write(b) }
func (u unwrapper) WriteHeader(code int)        { u.rw.WriteHeader(code) }
func (u unwrapper) Unwrap() http.ResponseWriter { return u.rw }

func TestReader(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []Event
		wantErr error
	}{
		{name: "basic", in: "event: a\ndata: 1\n\ndata: 2\n\n", want: []Event{{Event: "a", Data: "1"}, {Data: "2"}}},
		{name: "crlf", in: "event: a\r\ndata: 1\r\n\r\ndata: 2\r\n\r\n", want: []Event{{Event: "a", Data: "1"}, {Data: "2"}}},
		{name: "cr only", in: "event: a\rdata: 1\r\rdata: 2\r\r", want: []Event{{Event: "a", Data: "1"}, {Data: "2"}}},
		{name: "multi-line data", in: "data: a\ndata:b\ndata:  c\n\n", want: []Event{{Data: "a\nb\n c"}}},
		{name: "comments and unknown fields", in: ": ping\nfoo: bar\ndata: x\n: mid\n\n", want: []Event{{Data: "x"}}},
		{name: "no data not dispatched", in: "event: lonely\n\ndata: y\n\n", want: []Event{{Data: "y"}}},
		{name: "bom", in: "\xEF\xBB\xBFdata: z\n\n", want: []Event{{Data: "z"}}},
		{name: "id and retry", in: "id: 7\nretry: 100\ndata: q\n\ndata: r\n\n", want: []Event{{Data: "q", ID: "7", Retry: 100}, {Data: "r", ID: "7"}}},
		{name: "field without colon", in: "data\n\n", want: []Event{{Data: ""}}},
		{name: "done", in: "data: [DONE]\n\n", want: []Event{{Data: "[DONE]"}}},
		{name: "empty", in: "", want: nil},
		{name: "only comments", in: ": a\n: b\n\n", want: nil},
		{name: "truncated event", in: "data: a\n\ndata: b\n", want: []Event{{Data: "a"}}, wantErr: io.ErrUnexpectedEOF},
		{name: "truncated line", in: "data: a\n\ndata: b", want: []Event{{Data: "a"}}, wantErr: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadAll(strings.NewReader(tt.in))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("events = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestReaderOneByteAtATime(t *testing.T) {
	in := "event: a\r\ndata: 1\r\n\r\n: c\ndata: 2\n\n"
	got, err := ReadAll(iotestOneByte{strings.NewReader(in)})
	if err != nil {
		t.Fatal(err)
	}
	want := []Event{{Event: "a", Data: "1"}, {Data: "2"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("events = %#v, want %#v", got, want)
	}
}

type iotestOneByte struct{ r io.Reader }

func (o iotestOneByte) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

func TestReaderLimit(t *testing.T) {
	r := NewReaderSize(strings.NewReader("data: "+strings.Repeat("x", 100)+"\n\n"), 50)
	if _, err := r.Next(); !errors.Is(err, ErrEventTooLarge) {
		t.Fatalf("err = %v, want ErrEventTooLarge", err)
	}
	r = NewReaderSize(strings.NewReader(strings.Repeat("data: xxxxxxxxxx\n", 10)+"\n"), 50)
	if _, err := r.Next(); !errors.Is(err, ErrEventTooLarge) {
		t.Fatalf("many lines: err = %v, want ErrEventTooLarge", err)
	}
}

func TestWriterReaderRoundTrip(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b)
	payloads := []string{"", "plain", "a\nb", "trailing\n", "\n\nleading", `{"json":"x"}`, "data: nested"}
	for _, p := range payloads {
		if err := w.WriteEvent("e", []byte(p)); err != nil {
			t.Fatal(err)
		}
		_ = w.KeepAlive()
	}
	got, err := ReadAll(&b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(payloads) {
		t.Fatalf("got %d events, want %d", len(got), len(payloads))
	}
	for i, p := range payloads {
		if got[i].Data != p || got[i].Event != "e" {
			t.Errorf("event %d = %#v, want data %q", i, got[i], p)
		}
	}
}

func FuzzReader(f *testing.F) {
	for _, s := range []string{
		"event: a\ndata: 1\n\n",
		"data: a\r\ndata: b\r\n\r\n",
		": c\rdata: x\r\r",
		"\xEF\xBB\xBFid: 1\nretry: 5\ndata\n\n",
		"data: [DONE]\n\n",
		"data: cut",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		events, err := ReadAll(bytes.NewReader(in))
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("unexpected error %v", err)
		}
		// Whatever was read must survive being written and read again.
		var b bytes.Buffer
		w := NewWriter(&b)
		for _, ev := range events {
			if strings.ContainsAny(ev.Event, "\r\n") {
				t.Fatalf("event name with a line break: %q", ev.Event)
			}
			if err := w.WriteEvent(ev.Event, []byte(ev.Data)); err != nil {
				t.Fatal(err)
			}
		}
		again, err := ReadAll(&b)
		if err != nil {
			t.Fatalf("re-read: %v", err)
		}
		if len(again) != len(events) {
			t.Fatalf("re-read %d events, want %d", len(again), len(events))
		}
		for i := range events {
			if again[i].Event != events[i].Event || again[i].Data != events[i].Data {
				t.Fatalf("event %d: %#v != %#v", i, again[i], events[i])
			}
		}
	})
}
