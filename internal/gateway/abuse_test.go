package gateway_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/helexa-ai/cortex/internal/gateway"
	"github.com/helexa-ai/cortex/internal/neurontest"
)

// abuseDialect is one API endpoint with the shape of its errors.
type abuseDialect struct {
	name, path string
	// body builds a valid request around extra top-level members.
	body func(model, extra string) string
}

var abuseDialects = []abuseDialect{
	{"openai", "/v1/chat/completions", func(m, extra string) string {
		return fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}]%s}`, m, extra)
	}},
	{"anthropic", "/v1/messages", func(m, extra string) string {
		return fmt.Sprintf(`{"model":%q,"max_tokens":16,"messages":[{"role":"user","content":"hi"}]%s}`, m, extra)
	}},
	{"responses", "/v1/responses", func(m, extra string) string {
		return fmt.Sprintf(`{"model":%q,"input":"hi"%s}`, m, extra)
	}},
}

// checkDialectError fails unless data is an error envelope of the dialect:
// OpenAI and Responses {"error":{"message","type"}}, Anthropic
// {"type":"error","error":{"type","message"}}.
func checkDialectError(t *testing.T, dialect string, data []byte) {
	t.Helper()
	var env struct {
		Type  string `json:"type"`
		Error *struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(data, &env); err != nil || env.Error == nil || env.Error.Message == "" || env.Error.Type == "" {
		t.Fatalf("%s: not an error envelope: %s", dialect, data)
	}
	if (dialect == "anthropic") != (env.Type == "error") {
		t.Fatalf("%s: envelope type %q: %s", dialect, env.Type, data)
	}
}

// withMaxTokens sets the dialect's output-token limit to the JSON value v.
func withMaxTokens(d abuseDialect, v string) string {
	switch d.name {
	case "anthropic":
		return strings.Replace(d.body("m", ""), `"max_tokens":16`, `"max_tokens":`+v, 1)
	case "responses":
		return d.body("m", `,"max_output_tokens":`+v)
	}
	return d.body("m", `,"max_tokens":`+v)
}

// hugeTools is n distinct tools in the dialect's shape.
func hugeTools(dialect string, n int) string {
	var b strings.Builder
	b.WriteString(`,"tools":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		switch dialect {
		case "anthropic":
			fmt.Fprintf(&b, `{"name":"t%d","input_schema":{"type":"object"}}`, i)
		case "responses":
			fmt.Fprintf(&b, `{"type":"function","name":"t%d","parameters":{"type":"object"}}`, i)
		default:
			fmt.Fprintf(&b, `{"type":"function","function":{"name":"t%d","parameters":{"type":"object"}}}`, i)
		}
	}
	b.WriteByte(']')
	return b.String()
}

// TestAbuseMatrix sends malformed, hostile and oversized requests through
// the real gateway in every dialect: each gets a 4xx in the caller's error
// shape, nothing reaches the neuron, and the gateway neither buffers a
// huge body nor keeps goroutines for clients that stall or never read.
func TestAbuseMatrix(t *testing.T) {
	const limit = 1 << 20
	// The gateway's pool of idle connections to the neuron is emptied
	// before goroutines are counted: pooled connections are reuse, not
	// leaks.
	upstream := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
	s := startStack(t, "abuse", func(c *gateway.Config, o *gateway.Options) {
		c.MaxBodyBytes = limit
		c.ReadHeaderTimeout = time.Second
		c.ReadTimeout = 2 * time.Second
		c.ClientWriteTimeout = time.Second
		o.Transport = upstream
	})
	n := s.neuron("abuse-n1")
	s.model("m", 1)
	s.waitListed("m")
	waitServed(t, s, "m")
	before, _ := n.Requests()

	deep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	type abuseCase struct {
		name        string
		contentType string
		body        func(d abuseDialect) string
		want        int
		dialects    []string // default: all
	}
	cases := []abuseCase{
		{name: "truncated JSON", body: func(d abuseDialect) string { b := d.body("m", ""); return b[:len(b)-7] }, want: 400},
		{name: "invalid UTF-8", body: func(d abuseDialect) string {
			return strings.Replace(d.body("m", ""), `"hi"`, "\"h\xff\xfei\"", 1)
		}, want: 400},
		{name: "deeply nested JSON", body: func(d abuseDialect) string { return d.body("m", `,"metadata":`+deep) }, want: 400},
		{name: "not an object", body: func(abuseDialect) string { return `["model","m"]` }, want: 400},
		{name: "empty body", body: func(abuseDialect) string { return `` }, want: 400},
		{name: "form content type", contentType: "application/x-www-form-urlencoded", body: func(d abuseDialect) string { return d.body("m", "") }, want: 415},
		{name: "multipart content type", contentType: "multipart/form-data; boundary=x", body: func(d abuseDialect) string { return d.body("m", "") }, want: 415},
		{name: "text content type", contentType: "text/plain", body: func(d abuseDialect) string { return d.body("m", "") }, want: 415},
		{name: "negative temperature", body: func(d abuseDialect) string { return d.body("m", `,"temperature":-1`) }, want: 400},
		{name: "NaN temperature", body: func(d abuseDialect) string { return d.body("m", `,"temperature":NaN`) }, want: 400},
		{name: "NaN temperature as a string", body: func(d abuseDialect) string { return d.body("m", `,"temperature":"NaN"`) }, want: 400},
		{name: "temperature overflows", body: func(d abuseDialect) string { return d.body("m", `,"temperature":1e999`) }, want: 400},
		{name: "top_p above 1", body: func(d abuseDialect) string { return d.body("m", `,"top_p":7`) }, want: 400},
		{name: "huge n", body: func(d abuseDialect) string { return d.body("m", `,"n":1000000`) }, want: 400, dialects: []string{"openai"}},
		{name: "max_tokens not an integer", body: func(d abuseDialect) string { return withMaxTokens(d, "1e30") }, want: 400},
		{name: "negative max_tokens", body: func(d abuseDialect) string { return withMaxTokens(d, "-5") }, want: 400},
		{name: "max_tokens beyond int64", body: func(d abuseDialect) string { return withMaxTokens(d, "99999999999999999999999") }, want: 400},
		{name: "duplicate keys", body: func(d abuseDialect) string { return d.body("m", `,"model":"other"`) }, want: 400},
		{name: "thousands of tools", body: func(d abuseDialect) string { return d.body("m", hugeTools(d.name, 5000)) }, want: 400},
		{name: "wrong-typed messages", body: func(d abuseDialect) string {
			return strings.Replace(d.body("m", ""), `"hi"`, `{"a":[1,2,{"b":null}]}`, 1)
		}, want: 400},
	}
	client := &http.Client{Timeout: 30 * time.Second}
	for _, tc := range cases {
		for _, d := range abuseDialects {
			if tc.dialects != nil && !strings.Contains(strings.Join(tc.dialects, ","), d.name) {
				continue
			}
			t.Run(tc.name+"/"+d.name, func(t *testing.T) {
				req, err := http.NewRequest(http.MethodPost, s.gateway+d.path, strings.NewReader(tc.body(d)))
				must(t, err)
				ct := tc.contentType
				if ct == "" {
					ct = "application/json"
				}
				req.Header.Set("Content-Type", ct)
				resp, err := client.Do(req)
				must(t, err)
				data, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				must(t, err)
				if resp.StatusCode != tc.want {
					t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, data)
				}
				checkDialectError(t, d.name, data)
			})
		}
	}
	if after, _ := n.Requests(); len(after) != len(before) {
		t.Fatalf("%d abusive requests reached the neuron", len(after)-len(before))
	}

	t.Run("oversized body is refused unread", func(t *testing.T) {
		const size = 100 << 20
		for _, d := range abuseDialects {
			for _, chunked := range []bool{false, true} {
				var ms0, ms1 runtime.MemStats
				runtime.ReadMemStats(&ms0)
				body := io.LimitReader(zeros{}, size)
				req, err := http.NewRequest(http.MethodPost, s.gateway+d.path, body)
				must(t, err)
				if !chunked {
					req.ContentLength = size
				}
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				must(t, err)
				data, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				runtime.ReadMemStats(&ms1)
				if resp.StatusCode != http.StatusRequestEntityTooLarge {
					t.Fatalf("%s chunked=%v: status %d: %s", d.name, chunked, resp.StatusCode, data)
				}
				checkDialectError(t, d.name, data)
				// The whole process (API server client, manager, gateway)
				// allocates in this window; a body read into memory would
				// add 100 MB.
				if grew := ms1.TotalAlloc - ms0.TotalAlloc; grew > 32<<20 {
					t.Fatalf("%s chunked=%v: %d MB allocated while refusing a 100 MB body", d.name, chunked, grew>>20)
				}
			}
		}
	})

	t.Run("slow-loris", func(t *testing.T) {
		addr := strings.TrimPrefix(s.gateway, "http://")
		// Headers trickled one byte at a time, and a body that stops
		// short of its Content-Length: the server hangs up on both
		// within its read timeouts, whatever the client does.
		for _, c := range []struct{ name, head, trickle string }{
			{"headers", "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n", "X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
			{"body", "POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n", `{"model":"m","messages":[`},
		} {
			conn, err := net.Dial("tcp", addr)
			must(t, err)
			start := time.Now()
			_, err = io.WriteString(conn, c.head)
			must(t, err)
			closed := make(chan time.Duration, 1)
			go func() {
				_, _ = io.Copy(io.Discard, conn)
				closed <- time.Since(start)
			}()
			var took time.Duration
		trickle:
			for i := 0; ; i++ {
				select {
				case took = <-closed:
					break trickle
				case <-time.After(200 * time.Millisecond):
				}
				if i > 100 {
					t.Fatalf("%s: connection still open after 20 s", c.name)
				}
				_, _ = conn.Write([]byte{c.trickle[i%len(c.trickle)]})
			}
			_ = conn.Close()
			t.Logf("slow %s: connection closed after %s", c.name, took.Round(100*time.Millisecond))
		}
	})

	t.Run("streams never read", func(t *testing.T) {
		// Long streams to clients that never read and stay connected: the
		// gateway blocks on the socket, gives up after the client write
		// timeout (1 s here), and releases everything it held, the
		// upstream requests included, while the clients still hold their
		// connections.
		// 20 MB each, more than loopback socket buffers hold, so the
		// gateway's writes block.
		n.SetInference(neurontest.Inference{Reply: strings.Repeat("word ", 4000000), Chunks: 4000})
		defer n.SetInference(neurontest.Inference{})
		client.CloseIdleConnections()
		upstream.CloseIdleConnections()
		base := settledGoroutines()
		addr := strings.TrimPrefix(s.gateway, "http://")
		var conns []net.Conn
		for i := range 30 {
			conn, err := net.Dial("tcp", addr)
			must(t, err)
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(4096)
			}
			d := abuseDialects[i%len(abuseDialects)]
			body := d.body("m", `,"stream":true`)
			_, err = fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", d.path, len(body), body)
			must(t, err)
			conns = append(conns, conn)
		}
		// Let the relays fill the sockets and block.
		deadline := time.Now().Add(20 * time.Second)
		for runtime.NumGoroutine() < base+30 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		held := runtime.NumGoroutine()
		if held < base+30 {
			t.Fatalf("goroutines: %d before, %d with 30 streams: the streams did not start", base, held)
		}
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		// What must go: every relay (the handler, its keep-alive ticker,
		// its upstream connection) and every request at the neuron. What
		// may stay: one idle connection per client whose answer fit in the
		// socket buffers (Anthropic's asks 16 tokens), closed by the
		// server's idle timeout.
		deadline = time.Now().Add(30 * time.Second)
		for {
			upstream.CloseIdleConnections()
			buf := make([]byte, 1<<22)
			stacks := string(buf[:runtime.Stack(buf, true)])
			relays := strings.Count(stacks, "gateway.(*Gateway).pump(")
			upstreams := strings.Count(stacks, "neurontest.(*Server).handleChat(")
			g := runtime.NumGoroutine()
			if relays == 0 && upstreams == 0 && g <= base+len(conns)+5 {
				t.Logf("goroutines: %d before, %d while 30 streams were stuck, %d with the clients still connected (no relay, no upstream request)", base, held, g)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("with the clients still connected: %d relays, %d upstream requests, %d goroutines (%d before)\n%s", relays, upstreams, g, base, stacks)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// settledGoroutines is the goroutine count once it stops falling.
func settledGoroutines() int {
	n := runtime.NumGoroutine()
	for range 20 {
		time.Sleep(100 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m >= n {
			return m
		}
		n = m
	}
	return n
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// waitServed waits until a chat request to model succeeds.
func waitServed(t *testing.T, s *stack, model string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := s.chat(model, false)
		if code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("model %s never served: %d %s", model, code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
