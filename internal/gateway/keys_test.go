package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

func TestParseKeys(t *testing.T) {
	digest := sha256.Sum256([]byte("sk-hashed"))
	good := `# keys with limits
keys:
  - name: alice
    key: sk-alice
  - name: ci
    keySHA256: ` + hex.EncodeToString(digest[:]) + `
    models: [llama, team/*]
    requestsPerMinute: 60
    tokensPerMinute: 10000
    maxConcurrent: 2
`
	keys, err := parseKeys([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	ci := keys[digest]
	if len(keys) != 2 || ci == nil || ci.name != "ci" || ci.requestsPerMinute != 60 || ci.tokensPerMinute != 10000 || ci.maxConcurrent != 2 || !ci.restricted() {
		t.Fatalf("parsed %+v", ci)
	}
	if _, err := parseKeys([]byte(`{"keys":[{"name":"j","key":"sk-json","models":["a/b"]}]}`)); err != nil {
		t.Fatalf("JSON: %v", err)
	}
	// The plain format still reads, with shared names and unnamed keys.
	plain, err := parseKeys([]byte("# c\nalice:sk-1\nalice:sk-2\nsk-bare\n\n"))
	if err != nil || len(plain) != 3 || plain[sha256.Sum256([]byte("sk-bare"))].name != "key-3" ||
		plain[sha256.Sum256([]byte("sk-1"))] != plain[sha256.Sum256([]byte("sk-2"))] {
		t.Fatalf("plain: %v %v", plain, err)
	}
	for _, tc := range []struct{ name, file, want string }{
		{"unknown field", "keys:\n  - name: a\n    key: sk-a\n    rpm: 5\n", "unknown field"},
		{"no key", "keys:\n  - name: a\n", "exactly one of key and keySHA256"},
		{"both keys", "keys:\n  - name: a\n    key: k\n    keySHA256: ab\n", "exactly one"},
		{"bad digest", "keys:\n  - name: a\n    keySHA256: xyz\n", "64 hex digits"},
		{"duplicate name", "keys:\n  - name: a\n    key: k1\n  - name: a\n    key: k2\n", "used twice"},
		{"duplicate key", "keys:\n  - name: a\n    key: k1\n  - name: b\n    key: k1\n", "listed twice"},
		{"negative limit", "keys:\n  - name: a\n    key: k1\n    maxConcurrent: -1\n", "negative"},
		{"bad name", "keys:\n  - name: a b\n    key: k1\n", "space"},
		{"star model", "keys:\n  - name: a\n    key: k1\n    models: ['*']\n", "leave models out"},
		{"plain empty key", "alice:\n", "empty key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseKeys([]byte(tc.file)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestKeyAllows(t *testing.T) {
	k := &apiKey{models: []string{"llama", "team/qwen", "lab/*"}}
	for _, tc := range []struct {
		key   string
		names []string
		want  bool
	}{
		{"a/llama", []string{"llama", "llama-3"}, true},
		{"a/other", []string{"llama-3", "other"}, false},
		{"team/qwen", []string{"qwen"}, true},
		{"lab/anything", []string{"x"}, true},
		{"labs/x", []string{"x"}, false},
	} {
		if got := k.allows(tc.key, tc.names); got != tc.want {
			t.Errorf("allows(%s, %v) = %v", tc.key, tc.names, got)
		}
	}
	if !(&apiKey{}).allows("any/thing", nil) {
		t.Error("a key without models may use every Model")
	}
}

const limitedKeys = `keys:
  - name: alice
    key: sk-alice
  - name: narrow
    key: sk-narrow
    models: [llama]
  - name: slow
    key: sk-slow
    requestsPerMinute: 4
  - name: thin
    key: sk-thin
    tokensPerMinute: 30
  - name: one
    key: sk-one
    maxConcurrent: 2
`

// keysHarness is the gateway harness with the structured keys above and
// a clock the test moves.
func keysHarness(t *testing.T, replicas int) (*harness, *clocktesting.FakeClock, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keys.yaml")
	if err := os.WriteFile(p, []byte(limitedKeys), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(c *Config) { c.APIKeysFile, c.KeyLimitReplicas = p, replicas })
	clk := clocktesting.NewFakeClock(time.Now())
	h.g.clock, h.g.keys.clock = clk, clk
	h.g.peers = staticPeers(replicas)
	h.neuron("n1", "team/llama", "team/qwen", "other/qwen")
	h.model("team", "llama", []string{"llama", "llama-3"}, "n1")
	h.model("team", "qwen", []string{"qwen"}, "n1")
	h.model("other", "qwen", []string{"qwen"}, "n1")
	return h, clk, p
}

func (h *harness) get(path, key string, hdr ...string) *http.Response {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp
}

// TestForbiddenModelIsTheSame404AsAMissingOne: the answer for a Model the
// key may not use is byte for byte the answer for a name nothing serves,
// in both dialects, and /v1/models lists only what the key may use.
func TestForbiddenModelIsTheSame404AsAMissingOne(t *testing.T) {
	h, _, _ := keysHarness(t, 1)
	anth := func(model string) string {
		return `{"model":"` + model + `","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`
	}
	for _, tc := range []struct{ path, forbidden, missing string }{
		{"/v1/chat/completions", `{"model":"qwen","messages":[{"role":"user","content":"x"}]}`, `{"model":"nope","messages":[{"role":"user","content":"x"}]}`},
		{"/v1/messages", anth("qwen"), anth("nope")},
		{"/v1/chat/completions", `{"model":"team/qwen","messages":[{"role":"user","content":"x"}]}`, `{"model":"team/nope","messages":[{"role":"user","content":"x"}]}`},
	} {
		r1 := h.post(tc.path, "sk-narrow", tc.forbidden)
		b1 := readAll(t, r1)
		r2 := h.post(tc.path, "sk-narrow", tc.missing)
		b2 := readAll(t, r2)
		if r1.StatusCode != http.StatusNotFound || r2.StatusCode != http.StatusNotFound {
			t.Fatalf("%s: statuses %d, %d", tc.path, r1.StatusCode, r2.StatusCode)
		}
		norm := func(s string) string {
			s = strings.ReplaceAll(s, "team/qwen", "X")
			s = strings.ReplaceAll(s, "team/nope", "X")
			s = strings.ReplaceAll(s, "qwen", "X")
			s = strings.ReplaceAll(s, "nope", "X")
			if i := strings.Index(s, `"request_id"`); i >= 0 {
				s = s[:i]
			}
			return s
		}
		if norm(b1) != norm(b2) {
			t.Fatalf("%s: forbidden and missing differ:\n%s\n%s", tc.path, b1, b2)
		}
	}
	// The key may use llama under any of its names; an unrestricted key
	// meets the ambiguity of qwen, the narrow key does not even see it.
	if resp := h.post("/v1/chat/completions", "sk-narrow", chat("llama-3", false)); resp.StatusCode != http.StatusOK {
		t.Fatalf("allowed model: %d %s", resp.StatusCode, readAll(t, resp))
	}
	if resp := h.post("/v1/chat/completions", "sk-alice", chat("qwen", false)); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("ambiguous for alice: %d %s", resp.StatusCode, readAll(t, resp))
	}
	list := readAll(t, h.get("/v1/models", "sk-narrow"))
	if !strings.Contains(list, `"id":"llama-3"`) || strings.Contains(list, "qwen") {
		t.Fatalf("narrow key's model list: %s", list)
	}
	alist := readAll(t, h.get("/v1/models", "sk-narrow", "anthropic-version", "2023-06-01"))
	if !strings.Contains(alist, `"id":"llama"`) || strings.Contains(alist, "qwen") {
		t.Fatalf("narrow key's Anthropic model list: %s", alist)
	}
	if resp := h.get("/v1/models/qwen", "sk-narrow"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET a forbidden model: %d", resp.StatusCode)
	}
	if list := readAll(t, h.get("/v1/models", "sk-alice")); !strings.Contains(list, "qwen") {
		t.Fatalf("alice's list lacks qwen: %s", list)
	}
	if resp := h.get("/health", "sk-narrow"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("/health with a narrow key: %d", resp.StatusCode)
	}
}

func TestRateLimitIs429InTheCallersDialect(t *testing.T) {
	h, clk, _ := keysHarness(t, 2) // 4 rpm over 2 replicas: 2 here
	for i := range 2 {
		if resp := h.post("/v1/chat/completions", "sk-slow", chat("llama", false)); resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, readAll(t, resp))
		}
	}
	resp := h.post("/v1/chat/completions", "sk-slow", chat("llama", true))
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "30" ||
		!strings.Contains(body, `"code":"rate_limit_exceeded"`) || !strings.Contains(body, "requests per minute") {
		t.Fatalf("openai: %d Retry-After %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	resp = h.post("/v1/messages", "sk-slow", `{"model":"llama","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`)
	body = readAll(t, resp)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" ||
		!strings.Contains(body, `"type":"rate_limit_error"`) || !strings.Contains(body, `"type":"error"`) {
		t.Fatalf("anthropic: %d %s", resp.StatusCode, body)
	}
	// Other keys are not affected; listing models is not limited.
	if resp := h.post("/v1/chat/completions", "sk-alice", chat("llama", false)); resp.StatusCode != http.StatusOK {
		t.Fatalf("alice: %d", resp.StatusCode)
	}
	if resp := h.get("/v1/models", "sk-slow"); resp.StatusCode != http.StatusOK {
		t.Fatalf("models list: %d", resp.StatusCode)
	}
	clk.Step(30 * time.Second)
	if resp := h.post("/v1/chat/completions", "sk-slow", chat("llama", false)); resp.StatusCode != http.StatusOK {
		t.Fatalf("after Retry-After: %d %s", resp.StatusCode, readAll(t, resp))
	}
	// The account is settled just after the answer is written.
	waitMetrics(t, h,
		`cortex_gateway_key_requests_total{key="slow",outcome="ok"} 4`, // three answers and the models list
		`cortex_gateway_key_requests_total{key="slow",outcome="rate_limited_requests"} 2`,
		`cortex_gateway_key_tokens_total{direction="input",key="slow"} 21`,
		`cortex_gateway_key_tokens_total{direction="output",key="slow"} 12`,
		`cortex_gateway_key_limit_replicas 2`,
		`cortex_gateway_api_keys 5`,
	)
}

func TestTokensPerMinuteCountsTheNeuronsUsage(t *testing.T) {
	h, clk, _ := keysHarness(t, 1)
	// thin has 30 tokens a minute; the simulated neuron reports 7 prompt
	// and 4 completion tokens per answer, 11 in all, and that (not the
	// estimate) is what is charged once the answer is in.
	lim := h.g.keyLimiters.get("thin")
	for i := range 2 {
		if resp := h.post("/v1/chat/completions", "sk-thin", chat("llama", false)); resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, readAll(t, resp))
		}
		want := 30 - 11*float64(i+1)
		waitFor(t, "the condition", func() bool {
			lim.mu.Lock()
			defer lim.mu.Unlock()
			return lim.inFlight == 0 && lim.tokens.level == want
		})
	}
	// 8 tokens left, and the next estimate (the body ÷ 4) is larger.
	resp := h.post("/v1/chat/completions", "sk-thin", chat("llama", false))
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "tokens per minute") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("over the token limit: %d %s", resp.StatusCode, body)
	}
	clk.Step(time.Minute)
	if resp := h.post("/v1/chat/completions", "sk-thin", chat("llama", false)); resp.StatusCode != http.StatusOK {
		t.Fatalf("a minute later: %d", resp.StatusCode)
	}
	waitMetrics(t, h,
		`cortex_gateway_key_tokens_total{direction="output",key="thin"} 12`,
		`cortex_gateway_key_requests_total{key="thin",outcome="rate_limited_tokens"} 1`)
}

func TestConcurrencyLimitPerKey(t *testing.T) {
	h, _, _ := keysHarness(t, 1)
	n := h.neuron("slow-n", "team/slow")
	h.model("team", "slow", []string{"slow"}, "slow-n")
	n.SetHung(true)
	done := make(chan int, 2)
	for range 2 {
		go func() {
			resp := h.post("/v1/chat/completions", "sk-one", chat("slow", false))
			_ = readAll(t, resp)
			done <- resp.StatusCode
		}()
	}
	lim := h.g.keyLimiters.get("one")
	waitFor(t, "the condition", func() bool { lim.mu.Lock(); defer lim.mu.Unlock(); return lim.inFlight == 2 })
	resp := h.post("/v1/chat/completions", "sk-one", chat("slow", false))
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" || !strings.Contains(body, "concurrent requests") {
		t.Fatalf("third concurrent: %d %s", resp.StatusCode, body)
	}
	n.SetHung(false)
	for range 2 {
		if code := <-done; code != http.StatusOK {
			t.Fatalf("held request: %d", code)
		}
	}
	if resp := h.post("/v1/chat/completions", "sk-one", chat("llama", false)); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the others finished: %d", resp.StatusCode)
	}
}

func TestKeysReloadWithoutRestart(t *testing.T) {
	h, clk, p := keysHarness(t, 1)
	if resp := h.post("/v1/chat/completions", "sk-new", chat("llama", false)); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unknown key: %d", resp.StatusCode)
	}
	next := strings.Replace(limitedKeys, "models: [llama]", "models: [team/qwen]", 1) + "  - name: new\n    key: sk-new\n"
	if err := os.WriteFile(p, []byte(next), 0o600); err != nil {
		t.Fatal(err)
	}
	clk.Step(keysRecheck)
	if resp := h.post("/v1/chat/completions", "sk-new", chat("llama", false)); resp.StatusCode != http.StatusOK {
		t.Fatalf("new key after reload: %d", resp.StatusCode)
	}
	if resp := h.post("/v1/chat/completions", "sk-narrow", chat("llama", false)); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("narrow key's old model after reload: %d", resp.StatusCode)
	}
	// A broken file keeps the keys last loaded, and is counted.
	if err := os.WriteFile(p, []byte("keys:\n  - name: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	clk.Step(keysRecheck)
	if resp := h.post("/v1/chat/completions", "sk-new", chat("llama", false)); resp.StatusCode != http.StatusOK {
		t.Fatalf("key lost to a broken file: %d", resp.StatusCode)
	}
	waitMetrics(t, h, "cortex_gateway_api_keys_reload_errors_total 1", "cortex_gateway_api_keys 6")
}

func scrape(t *testing.T, h *harness) string {
	t.Helper()
	mfs, err := h.g.metrics.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			b.WriteString(mf.GetName())
			if len(m.GetLabel()) > 0 {
				b.WriteString("{")
				for i, l := range m.GetLabel() {
					if i > 0 {
						b.WriteString(",")
					}
					b.WriteString(l.GetName() + `="` + l.GetValue() + `"`)
				}
				b.WriteString("}")
			}
			var v float64
			switch {
			case m.Counter != nil:
				v = m.GetCounter().GetValue()
			case m.Gauge != nil:
				v = m.GetGauge().GetValue()
			}
			b.WriteString(" " + strconv.FormatFloat(v, 'f', -1, 64) + "\n")
		}
	}
	return b.String()
}

// waitMetrics waits for the gateway's metrics to show every line.
func waitMetrics(t *testing.T, h *harness, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := scrape(t, h)
		missing := ""
		for _, w := range want {
			if !strings.Contains(m, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics lack %s:\n%s", missing, grepLines(m, "key"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
