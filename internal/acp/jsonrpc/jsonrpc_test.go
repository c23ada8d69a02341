package jsonrpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		line string
		code int // 0: valid
		kind string
	}{
		{`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`, 0, "request"},
		{`{"jsonrpc":"2.0","id":"a","method":"x"}`, 0, "request"},
		{`{"jsonrpc":"2.0","method":"session/cancel","params":{"sessionId":"s"}}`, 0, "notification"},
		{`{"jsonrpc":"2.0","id":3,"result":{}}`, 0, "response"},
		{`{"jsonrpc":"2.0","id":3,"error":{"code":-1,"message":"x"}}`, 0, "response"},
		{`{"jsonrpc":"2.0","id":1,"method":`, CodeParseError, ""},
		{`not json`, CodeParseError, ""},
		{`[1,2]`, CodeParseError, ""},
		{`{"jsonrpc":"1.0","id":1,"method":"x"}`, CodeInvalidRequest, ""},
		{`{"jsonrpc":"2.0"}`, CodeInvalidRequest, ""},
		{`{"jsonrpc":"2.0","id":{"a":1},"method":"x"}`, CodeInvalidRequest, ""},
		{`{"jsonrpc":"2.0","id":4}`, CodeInvalidRequest, ""},
	} {
		m, err := Parse([]byte(tc.line))
		switch {
		case tc.code == 0 && err != nil:
			t.Errorf("%s: unexpected error %v", tc.line, err)
		case tc.code != 0 && (err == nil || err.Code != tc.code):
			t.Errorf("%s: error %v, want code %d", tc.line, err, tc.code)
		case tc.kind == "request" && !m.IsRequest(), tc.kind == "notification" && !m.IsNotification(), tc.kind == "response" && !m.IsResponse():
			t.Errorf("%s: not a %s", tc.line, tc.kind)
		}
	}
}

func TestLineReader(t *testing.T) {
	in := "a\r\n\n  \nbb\n" + strings.Repeat("x", 40) + "\ncc"
	r := NewLineReader(strings.NewReader(in), 16)
	var got []string
	for {
		line, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, ErrLineTooLong) {
			got = append(got, "<long>")
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(line))
	}
	want := []string{"a", "bb", "<long>", "cc"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestConn: requests are answered, errors mapped, a request is cancelled
// by $/cancel_request, and a handler's Async work can call the peer.
func TestConn(t *testing.T) {
	inR, inW := io.Pipe()
	var out syncBuffer
	c := NewConn(inR, &out, func(ctx context.Context, method string, params json.RawMessage) (any, error) {
		switch method {
		case "echo":
			return params, nil
		case "bad":
			return nil, Errorf(CodeInvalidParams, "bad")
		case "slow":
			return Async(func() (any, error) {
				<-ctx.Done()
				return nil, ctx.Err()
			}), nil
		case "boom":
			panic("boom")
		}
		return nil, ErrMethodNotFound(method)
	}, nil)
	done := make(chan error)
	go func() { done <- c.Serve(context.Background()) }()
	for _, l := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"echo","params":{"a":1}}`,
		`{"jsonrpc":"2.0","id":2,"method":"bad"}`,
		`{"jsonrpc":"2.0","id":3,"method":"nope"}`,
		`{"jsonrpc":"2.0","id":4,"method":"slow"}`,
		`{"jsonrpc":"2.0","id":5,"method":"boom"}`,
		`{"jsonrpc":"2.0","method":"$/cancel_request","params":{"requestId":4}}`,
	} {
		if _, err := io.WriteString(inW, l+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	_ = inW.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var m Message
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("bad output line %q", l)
		}
		if m.Error != nil {
			got[string(m.ID)] = fmt.Sprintf("%d:", m.Error.Code)
		} else {
			got[string(m.ID)] = string(m.Result)
		}
	}
	want := map[string]string{"1": `{"a":1}`, "2": "-32602:", "3": "-32601:", "4": "-32800:", "5": "-32603:"}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("id %s: got %q, want %q", id, got[id], w)
		}
	}
}

type syncBuffer struct {
	mu  chan struct{}
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	if s.mu == nil {
		s.mu = make(chan struct{}, 1)
	}
	s.mu <- struct{}{}
	defer func() { <-s.mu }()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string { return s.buf.String() }

// FuzzConn feeds arbitrary bytes to a connection: it must never panic or
// hang, and every output line must be a JSON-RPC message.
func FuzzConn(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"echo","params":{}}` + "\n",
		`{"jsonrpc":"2.0","method":"n"}` + "\n" + `{"jsonrpc":"2.0","id":"x","result":1}` + "\n",
		"garbage\n\n\r\n{",
		`{"jsonrpc":"2.0","id":[1],"method":"x"}` + "\n",
		`{"jsonrpc":"2.0","method":"$/cancel_request","params":{"requestId":1}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var out syncBuffer
		c := NewConn(bytes.NewReader(data), &out, func(ctx context.Context, method string, params json.RawMessage) (any, error) {
			if method == "echo" {
				return params, nil
			}
			return nil, ErrMethodNotFound(method)
		}, nil)
		if err := c.Serve(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			if l == "" {
				continue
			}
			if _, perr := Parse([]byte(l)); perr != nil {
				t.Fatalf("output %q is not a valid message: %v", l, perr)
			}
		}
	})
}

func FuzzLineReader(f *testing.F) {
	f.Add([]byte("a\nb\r\n\n"), 4)
	f.Add([]byte("xxxxxxxxxx\nyy"), 3)
	f.Fuzz(func(t *testing.T, data []byte, max int) {
		if max <= 0 || max > 1<<16 {
			max = 8
		}
		r := NewLineReader(bytes.NewReader(data), max)
		for i := 0; i <= len(data)+1; i++ {
			line, err := r.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if errors.Is(err, ErrLineTooLong) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(line) > max+2 || bytes.ContainsRune(line, '\n') {
				t.Fatalf("line %q breaks the limit %d or holds a newline", line, max)
			}
		}
		t.Fatal("reader did not reach EOF")
	})
}
