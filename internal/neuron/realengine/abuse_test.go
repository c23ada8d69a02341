package realengine

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

	"github.com/helexa-ai/cortex/internal/neuron"
	"github.com/helexa-ai/cortex/internal/neuronapi"
)

// nestedSchema is a JSON schema nested depth objects deep.
func nestedSchema(depth int) string {
	return strings.Repeat(`{"type":"object","properties":{"a":`, depth) + `{"type":"string"}` + strings.Repeat(`}}`, depth)
}

// TestAbuseMatrix sends malformed, hostile and oversized requests straight
// to a neuron running stories260K on the real engine: each gets a 4xx in
// the OpenAI error shape (or, where the request is legal, a bounded
// answer), the engine survives requests built to exhaust it, a huge body
// is refused without being read into memory, stalled clients are cut off
// by the read timeouts, and streams to clients that never read release
// everything once the clients go.
func TestAbuseMatrix(t *testing.T) {
	const limit = 1 << 20
	h := startNeuron(t, func(c *neuron.Config) {
		c.MaxBodyBytes = limit
		c.ReadHeaderTimeout = time.Second
		c.ReadTimeout = 2 * time.Second
	})
	const name = "ns/abuse"
	h.loadStories(name, neuronapi.EngineConfig{ContextLength: 256, Parallel: 2})
	chat := func(extra string) string {
		return fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":8%s}`, name, extra)
	}
	tools := func(n int) string {
		var b strings.Builder
		b.WriteString(`,"tools":[`)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"type":"function","function":{"name":"t%d","parameters":{"type":"object"}}}`, i)
		}
		b.WriteByte(']')
		return b.String()
	}
	deep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	cases := []struct {
		name, path, contentType, body string
		// want is the status; 200 marks a legal request whose answer
		// must be bounded rather than refused.
		want int
	}{
		{"truncated JSON", neuronapi.PathChatCompletions, "", chat("")[:40], 400},
		{"invalid UTF-8", neuronapi.PathChatCompletions, "", strings.Replace(chat(""), "Once", "On\xc3\x28ce", 1), 400},
		{"deeply nested JSON", neuronapi.PathChatCompletions, "", chat(`,"metadata":` + deep), 400},
		{"duplicate keys", neuronapi.PathChatCompletions, "", chat(`,"max_tokens":9`), 400},
		{"form content type", neuronapi.PathChatCompletions, "application/x-www-form-urlencoded", chat(""), 415},
		{"text content type", neuronapi.PathCompletions, "text/plain", fmt.Sprintf(`{"model":%q,"prompt":"x"}`, name), 415},
		{"negative temperature", neuronapi.PathChatCompletions, "", chat(`,"temperature":-0.5`), 400},
		{"NaN temperature", neuronapi.PathChatCompletions, "", chat(`,"temperature":NaN`), 400},
		{"NaN top_p as a string", neuronapi.PathChatCompletions, "", chat(`,"top_p":"NaN"`), 400},
		{"negative top_k", neuronapi.PathCompletions, "", fmt.Sprintf(`{"model":%q,"prompt":"x","top_k":-3}`, name), 400},
		{"huge n", neuronapi.PathChatCompletions, "", chat(`,"n":1000000`), 400},
		{"max_tokens beyond int64", neuronapi.PathCompletions, "", fmt.Sprintf(`{"model":%q,"prompt":"x","max_tokens":1e30}`, name), 400},
		{"thousands of tools", neuronapi.PathChatCompletions, "", chat(tools(5000)), 400},
		{"prompt past the context", neuronapi.PathCompletions, "", fmt.Sprintf(`{"model":%q,"prompt":%q}`, name, strings.Repeat("Once upon a time ", 200)), 400},
		// Legal but extreme: a huge max_tokens stops at the context
		// (clients such as Claude Code send limits far past small models'
		// contexts, so it is bounded rather than refused).
		{"huge max_tokens", neuronapi.PathCompletions, "", fmt.Sprintf(`{"model":%q,"prompt":"Once","max_tokens":1000000000000,"temperature":0}`, name), 200},
		{"deeply nested tool schema", neuronapi.PathChatCompletions, "", chat(`,"tool_choice":"required","tools":[{"type":"function","function":{"name":"f","parameters":` + nestedSchema(2000) + `}}]`), 400},
		{"deeply nested response schema", neuronapi.PathChatCompletions, "", chat(`,"response_format":{"type":"json_schema","json_schema":{"name":"s","schema":` + nestedSchema(2000) + `}}`), 400},
		// Within the depth limit, the engine builds the grammar.
		{"nested response schema within the limit", neuronapi.PathChatCompletions, "", chat(`,"response_format":{"type":"json_schema","json_schema":{"name":"s","schema":` + nestedSchema(60) + `}}`), 200},
	}
	client := &http.Client{Timeout: 2 * time.Minute}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, h.url+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+token)
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			} else {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			switch {
			case tc.want == 0 && resp.StatusCode >= 500:
				t.Fatalf("status %d: %.300s", resp.StatusCode, data)
			case tc.want == 0 && resp.StatusCode >= 400:
				checkOpenAIError(t, data)
			case tc.want == 0:
			case resp.StatusCode != tc.want:
				t.Fatalf("status %d, want %d: %.300s", resp.StatusCode, tc.want, data)
			case tc.want >= 400:
				checkOpenAIError(t, data)
			default:
				var out struct {
					Usage struct {
						CompletionTokens int `json:"completion_tokens"`
					} `json:"usage"`
				}
				if err := json.Unmarshal(data, &out); err != nil || out.Usage.CompletionTokens < 1 || out.Usage.CompletionTokens > 256 {
					t.Fatalf("answer not bounded by the context: %v %.300s", err, data)
				}
			}
			t.Logf("%d %.160s", resp.StatusCode, data)
		})
	}
	// The engine still serves after all of that.
	if code, data := h.post(neuronapi.PathChatCompletions, json.RawMessage(chat(""))); code != http.StatusOK {
		t.Fatalf("after the abuse: %d %s", code, data)
	}

	t.Run("oversized body is refused unread", func(t *testing.T) {
		for _, chunked := range []bool{false, true} {
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			req, err := http.NewRequest(http.MethodPost, h.url+neuronapi.PathChatCompletions, io.LimitReader(zeroReader{}, 100<<20))
			if err != nil {
				t.Fatal(err)
			}
			if !chunked {
				req.ContentLength = 100 << 20
			}
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			runtime.ReadMemStats(&ms1)
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("chunked=%v: status %d: %s", chunked, resp.StatusCode, data)
			}
			checkOpenAIError(t, data)
			if grew := ms1.TotalAlloc - ms0.TotalAlloc; grew > 32<<20 {
				t.Fatalf("chunked=%v: %d MB allocated while refusing a 100 MB body", chunked, grew>>20)
			}
		}
	})

	addr := strings.TrimPrefix(h.url, "http://")
	t.Run("slow-loris", func(t *testing.T) {
		for _, c := range []struct{ name, head, trickle string }{
			{"headers", "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n", "X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaa"},
			{"body", "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\nContent-Length: 1000\r\n\r\n", `{"model":"x","messages":[`},
		} {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if _, err := io.WriteString(conn, c.head); err != nil {
				t.Fatal(err)
			}
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
		http.DefaultClient.CloseIdleConnections()
		client.CloseIdleConnections()
		base := settled()
		body := chat(`,"stream":true,"max_tokens":200,"logprobs":true,"top_logprobs":20`)
		var conns []net.Conn
		for range 12 {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(4096)
			}
			if _, err := fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
				neuronapi.PathChatCompletions, token, len(body), body); err != nil {
				t.Fatal(err)
			}
			conns = append(conns, conn)
		}
		time.Sleep(3 * time.Second)
		held := runtime.NumGoroutine()
		for _, c := range conns {
			_ = c.Close()
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			g := runtime.NumGoroutine()
			if g <= base+3 {
				t.Logf("goroutines: %d before, %d with 12 unread streams, %d after the clients left", base, held, g)
				break
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Fatalf("goroutines: %d before, %d after the clients left\n%s", base, g, buf[:runtime.Stack(buf, true)])
			}
			time.Sleep(100 * time.Millisecond)
		}
		if code, data := h.post(neuronapi.PathChatCompletions, json.RawMessage(chat(""))); code != http.StatusOK {
			t.Fatalf("after the unread streams: %d %s", code, data)
		}
	})
}

func checkOpenAIError(t *testing.T, data []byte) {
	t.Helper()
	var env struct {
		Error *struct {
			Message string `json:"message"`
			Type    string `json:"type"`
		} `json:"error"`
	}
	if err := json.Unmarshal(data, &env); err != nil || env.Error == nil || env.Error.Message == "" || env.Error.Type == "" {
		t.Fatalf("not an OpenAI error envelope: %.300s", data)
	}
}

// settled is the goroutine count once it stops falling.
func settled() int {
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

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
