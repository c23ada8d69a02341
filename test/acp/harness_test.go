package acp_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/coder/acp-go-sdk"
)

// Paths of the binaries TestMain builds.
var agentBin, mcpBin string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "cortex-acp-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	agentBin = filepath.Join(dir, "cortex-acp")
	mcpBin = filepath.Join(dir, "mcpserver")
	for bin, pkg := range map[string]string{agentBin: "../../cmd/cortex-acp", mcpBin: "./mcpserver"} {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n", pkg, err)
			return 1
		}
	}
	return m.Run()
}

// wait bounds every wait in these tests: long enough never to fail a
// healthy run on a loaded machine, short enough that a hang fails.
const wait = 60 * time.Second

// --- the scripted upstream ---------------------------------------------------

// reply writes one scripted response.
type reply func(w http.ResponseWriter, r *http.Request)

// upstream is a scripted model server: each model request takes the next
// reply; every request body is kept.
type upstream struct {
	t       *testing.T
	srv     *httptest.Server
	wire    string
	replies chan reply
	mu      sync.Mutex
	bodies  []map[string]any
}

func newUpstream(t *testing.T, wire string) *upstream {
	u := &upstream{t: t, wire: wire, replies: make(chan reply, 32)}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/models") {
			_, _ = io.WriteString(w, `{"object":"list","data":[{"id":"m1"},{"id":"m2"}]}`)
			return
		}
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		u.mu.Lock()
		u.bodies = append(u.bodies, body)
		u.mu.Unlock()
		select {
		case rep := <-u.replies:
			w.Header().Set("Content-Type", "text/event-stream")
			rep(w, r)
		default:
			u.t.Errorf("unscripted model request %d to %s", len(u.bodies), r.URL.Path)
			http.Error(w, `{"error":{"message":"no scripted reply"}}`, http.StatusInternalServerError)
		}
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) script(rs ...reply) {
	for _, r := range rs {
		u.replies <- r
	}
}

func (u *upstream) requests() []map[string]any {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]map[string]any(nil), u.bodies...)
}

func (u *upstream) last() map[string]any {
	b := u.requests()
	if len(b) == 0 {
		u.t.Fatal("no model request was made")
	}
	return b[len(b)-1]
}

func sseWrite(w http.ResponseWriter, event string, v any) {
	data, _ := json.Marshal(v)
	if event != "" {
		_, _ = fmt.Fprintf(w, "event: %s\n", event)
	}
	_, _ = fmt.Fprintf(w, "data: %s\n\n", data)
	w.(http.Flusher).Flush()
}

// events is one response as wire-neutral steps.
type step struct {
	thought, text string
	// tool call: name and args (sent in two pieces)
	tool, args string
}

// respond writes steps in the wire's streaming format. block, when set,
// is called after the steps and before the end of the stream.
func respond(wire string, steps []step, block func(r *http.Request)) reply {
	return func(w http.ResponseWriter, r *http.Request) {
		calls := 0
		switch wire {
		case "openai-chat":
			for _, s := range steps {
				switch {
				case s.thought != "":
					sseWrite(w, "", map[string]any{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"reasoning_content": s.thought}}}})
				case s.text != "":
					sseWrite(w, "", map[string]any{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"content": s.text}}}})
				case s.tool != "":
					half := len(s.args) / 2
					sseWrite(w, "", map[string]any{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"tool_calls": []any{
						map[string]any{"index": calls, "id": fmt.Sprintf("up_%d", calls), "type": "function", "function": map[string]any{"name": s.tool, "arguments": s.args[:half]}}}}}}})
					sseWrite(w, "", map[string]any{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"tool_calls": []any{
						map[string]any{"index": calls, "function": map[string]any{"arguments": s.args[half:]}}}}}}})
					calls++
				}
			}
			if block != nil {
				block(r)
				return
			}
			finish := "stop"
			if calls > 0 {
				finish = "tool_calls"
			}
			sseWrite(w, "", map[string]any{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{}, "finish_reason": finish}}})
			sseWrite(w, "", map[string]any{"choices": []any{}, "usage": map[string]any{"prompt_tokens": 100, "completion_tokens": 7}})
			_, _ = io.WriteString(w, "data: [DONE]\n\n")
		case "openai-responses":
			sseWrite(w, "response.created", map[string]any{"type": "response.created", "response": map[string]any{"status": "in_progress"}})
			for i, s := range steps {
				switch {
				case s.thought != "":
					sseWrite(w, "response.reasoning_text.delta", map[string]any{"type": "response.reasoning_text.delta", "output_index": i, "delta": s.thought})
				case s.text != "":
					sseWrite(w, "response.output_text.delta", map[string]any{"type": "response.output_text.delta", "output_index": i, "delta": s.text})
				case s.tool != "":
					item := map[string]any{"type": "function_call", "id": fmt.Sprintf("fc_%d", i), "call_id": fmt.Sprintf("up_%d", i), "name": s.tool, "arguments": ""}
					sseWrite(w, "response.output_item.added", map[string]any{"type": "response.output_item.added", "output_index": i, "item": item})
					half := len(s.args) / 2
					sseWrite(w, "response.function_call_arguments.delta", map[string]any{"type": "response.function_call_arguments.delta", "output_index": i, "item_id": item["id"], "delta": s.args[:half]})
					sseWrite(w, "response.function_call_arguments.delta", map[string]any{"type": "response.function_call_arguments.delta", "output_index": i, "item_id": item["id"], "delta": s.args[half:]})
					item["arguments"] = s.args
					sseWrite(w, "response.output_item.done", map[string]any{"type": "response.output_item.done", "output_index": i, "item": item})
				}
			}
			if block != nil {
				block(r)
				return
			}
			sseWrite(w, "response.completed", map[string]any{"type": "response.completed", "response": map[string]any{"status": "completed", "usage": map[string]any{"input_tokens": 100, "output_tokens": 7}}})
		case "anthropic-messages":
			sseWrite(w, "message_start", map[string]any{"type": "message_start", "message": map[string]any{"id": "msg_1", "role": "assistant", "usage": map[string]any{"input_tokens": 100, "output_tokens": 0}}})
			for i, s := range steps {
				switch {
				case s.thought != "":
					sseWrite(w, "content_block_start", map[string]any{"type": "content_block_start", "index": i, "content_block": map[string]any{"type": "thinking", "thinking": ""}})
					sseWrite(w, "content_block_delta", map[string]any{"type": "content_block_delta", "index": i, "delta": map[string]any{"type": "thinking_delta", "thinking": s.thought}})
				case s.text != "":
					sseWrite(w, "content_block_start", map[string]any{"type": "content_block_start", "index": i, "content_block": map[string]any{"type": "text", "text": ""}})
					sseWrite(w, "content_block_delta", map[string]any{"type": "content_block_delta", "index": i, "delta": map[string]any{"type": "text_delta", "text": s.text}})
				case s.tool != "":
					calls++
					sseWrite(w, "content_block_start", map[string]any{"type": "content_block_start", "index": i, "content_block": map[string]any{"type": "tool_use", "id": fmt.Sprintf("up_%d", i), "name": s.tool, "input": map[string]any{}}})
					half := len(s.args) / 2
					sseWrite(w, "content_block_delta", map[string]any{"type": "content_block_delta", "index": i, "delta": map[string]any{"type": "input_json_delta", "partial_json": s.args[:half]}})
					sseWrite(w, "content_block_delta", map[string]any{"type": "content_block_delta", "index": i, "delta": map[string]any{"type": "input_json_delta", "partial_json": s.args[half:]}})
				}
				sseWrite(w, "content_block_stop", map[string]any{"type": "content_block_stop", "index": i})
			}
			if block != nil {
				block(r)
				return
			}
			stop := "end_turn"
			if calls > 0 {
				stop = "tool_use"
			}
			sseWrite(w, "message_delta", map[string]any{"type": "message_delta", "delta": map[string]any{"stop_reason": stop}, "usage": map[string]any{"output_tokens": 7}})
			sseWrite(w, "message_stop", map[string]any{"type": "message_stop"})
		}
	}
}

func say(wire, text string) reply { return respond(wire, []step{{text: text}}, nil) }

func callTool(wire, name string, args any) reply {
	b, _ := json.Marshal(args)
	return respond(wire, []step{{tool: name, args: string(b)}}, nil)
}

// toolResults returns the tool results a request carries, in order.
func toolResults(wire string, body map[string]any) []string {
	var out []string
	switch wire {
	case "openai-chat":
		for _, m := range list(body["messages"]) {
			if mm := m.(map[string]any); mm["role"] == "tool" {
				out = append(out, fmt.Sprint(mm["content"]))
			}
		}
	case "openai-responses":
		for _, m := range list(body["input"]) {
			if mm := m.(map[string]any); mm["type"] == "function_call_output" {
				out = append(out, fmt.Sprint(mm["output"]))
			}
		}
	case "anthropic-messages":
		for _, m := range list(body["messages"]) {
			for _, c := range list(m.(map[string]any)["content"]) {
				if cc := c.(map[string]any); cc["type"] == "tool_result" {
					out = append(out, fmt.Sprint(cc["content"]))
				}
			}
		}
	}
	return out
}

// toolNames returns the names of the tools a request offers.
func toolNames(wire string, body map[string]any) []string {
	var out []string
	for _, t := range list(body["tools"]) {
		tm := t.(map[string]any)
		switch wire {
		case "openai-chat":
			out = append(out, fmt.Sprint(tm["function"].(map[string]any)["name"]))
		default:
			out = append(out, fmt.Sprint(tm["name"]))
		}
	}
	return out
}

func list(v any) []any { l, _ := v.([]any); return l }

// --- the ACP client ----------------------------------------------------------

type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type message struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
}

// handlerFunc answers one request from the agent.
type handlerFunc func(params json.RawMessage) (any, *rpcError)

// client drives a real cortex-acp process over its stdin and stdout.
type client struct {
	t      *testing.T
	cmd    *exec.Cmd
	in     io.WriteCloser
	stderr *bytes.Buffer
	exited chan struct{}

	wmu      sync.Mutex
	stopped  bool
	mu       sync.Mutex
	nextID   int
	pending  map[string]chan message
	updates  []sdk.SessionNotification
	raw      []message
	changed  chan struct{}
	handlers map[string]handlerFunc
}

// env is what a test's agent processes share: config and data dirs.
type env struct {
	dir, cwd, config string
}

func newEnv(t *testing.T, ups ...*upstream) *env {
	dir := t.TempDir()
	e := &env{dir: dir, cwd: filepath.Join(dir, "work"), config: filepath.Join(dir, "config.toml")}
	if err := os.MkdirAll(e.cwd, 0o755); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "default_endpoint = %q\n", ups[0].wire)
	for _, u := range ups {
		fmt.Fprintf(&b, "\n[[endpoints]]\nname = %q\nbase_url = %q\nwire_api = %q\ndefault_model = \"m1\"\napi_key = \"k\"\ncontext_window = 32000\n",
			u.wire, u.srv.URL+"/v1", u.wire)
	}
	if err := os.WriteFile(e.config, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) start(t *testing.T) *client {
	cmd := exec.Command(agentBin, "--config", e.config)
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(e.dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(e.dir, "cfg"))
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, cmd: cmd, in: in, stderr: &bytes.Buffer{}, exited: make(chan struct{}),
		pending: map[string]chan message{}, changed: make(chan struct{}), handlers: map[string]handlerFunc{}}
	cmd.Stderr = syncWriter{&c.wmu, c.stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go c.read(out)
	t.Cleanup(func() {
		c.stop()
		if t.Failed() {
			c.wmu.Lock()
			t.Logf("cortex-acp stderr:\n%s", c.stderr.String())
			c.wmu.Unlock()
		}
	})
	return c
}

type syncWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (s syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// stop closes stdin and waits for the agent to exit.
func (c *client) stop() {
	c.wmu.Lock()
	c.stopped = true
	c.wmu.Unlock()
	_ = c.in.Close()
	select {
	case <-c.exited:
		if code := c.cmd.ProcessState.ExitCode(); code != 0 {
			c.t.Errorf("cortex-acp exited with status %d", code)
		}
	case <-time.After(wait):
		_ = c.cmd.Process.Kill()
		<-c.exited
		c.t.Error("cortex-acp did not exit when its stdin closed")
	}
}

func (c *client) read(out io.Reader) {
	defer close(c.exited)
	defer func() { _ = c.cmd.Wait() }()
	defer func() { _, _ = io.Copy(io.Discard, out) }()
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var m message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil || m.JSONRPC != "2.0" {
			c.t.Errorf("stdout carried a non-protocol line: %q", sc.Text())
			continue
		}
		c.mu.Lock()
		c.raw = append(c.raw, m)
		switch {
		case m.Method == "session/update":
			var n sdk.SessionNotification
			if err := json.Unmarshal(m.Params, &n); err != nil {
				c.t.Errorf("session/update does not match the ACP schema: %v: %s", err, m.Params)
			} else {
				c.updates = append(c.updates, n)
			}
		case m.Method != "" && len(m.ID) > 0:
			h := c.handlers[m.Method]
			go c.answer(m, h)
		case m.Method == "" && string(m.ID) == "null":
			// An error about a message that had no usable id.
		case m.Method == "" && len(m.ID) > 0:
			if ch := c.pending[string(m.ID)]; ch != nil {
				delete(c.pending, string(m.ID))
				ch <- m
			} else {
				c.t.Errorf("response to an unknown or already answered request %s", m.ID)
			}
		}
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
	}
}

func (c *client) answer(m message, h handlerFunc) {
	var res any
	var rerr *rpcError
	if h == nil {
		c.t.Errorf("unexpected request from the agent: %s %s", m.Method, m.Params)
		rerr = &rpcError{Code: -32601, Message: "not handled by the test"}
	} else {
		res, rerr = h(m.Params)
	}
	out := map[string]any{"jsonrpc": "2.0", "id": m.ID}
	if rerr != nil {
		out["error"] = rerr
	} else {
		out["result"] = res
	}
	c.send(out)
}

func (c *client) handle(method string, h handlerFunc) {
	c.mu.Lock()
	c.handlers[method] = h
	c.mu.Unlock()
}

func (c *client) send(v any) {
	data, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(string(data))
}

func (c *client) sendRaw(line string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.stopped {
		return // a late answer from a handler, after the test ended
	}
	if _, err := io.WriteString(c.in, line+"\n"); err != nil {
		c.t.Errorf("writing to the agent: %v", err)
	}
}

// start sends a request and returns where its response will arrive.
func (c *client) request(method string, params any) chan message {
	c.mu.Lock()
	c.nextID++
	id := fmt.Sprint(c.nextID)
	ch := make(chan message, 1)
	c.pending[id] = ch
	c.mu.Unlock()
	c.send(map[string]any{"jsonrpc": "2.0", "id": c.nextID, "method": method, "params": params})
	return ch
}

func (c *client) await(ch chan message) message {
	c.t.Helper()
	select {
	case m := <-ch:
		return m
	case <-c.exited:
		c.t.Fatal("cortex-acp exited")
	case <-time.After(wait):
		c.t.Fatal("no response in time")
	}
	return message{}
}

// call makes a request and decodes its result; a JSON-RPC error fails.
func (c *client) call(method string, params, result any) {
	c.t.Helper()
	m := c.await(c.request(method, params))
	if m.Error != nil {
		c.t.Fatalf("%s: error %d %s", method, m.Error.Code, m.Error.Message)
	}
	if result != nil {
		if err := json.Unmarshal(m.Result, result); err != nil {
			c.t.Fatalf("%s: decoding %s: %v", method, m.Result, err)
		}
	}
}

func (c *client) notify(method string, params any) {
	c.send(map[string]any{"jsonrpc": "2.0", "method": method, "params": params})
}

// mark is a position in the update stream.
func (c *client) mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.updates)
}

// since returns the updates after a mark.
func (c *client) since(mark int) []sdk.SessionUpdate {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []sdk.SessionUpdate
	for _, n := range c.updates[mark:] {
		out = append(out, n.Update)
	}
	return out
}

// waitUpdate waits for an update after mark that satisfies ok.
func (c *client) waitUpdate(mark int, what string, ok func(sdk.SessionUpdate) bool) sdk.SessionUpdate {
	c.t.Helper()
	deadline := time.After(wait)
	for {
		c.mu.Lock()
		for _, n := range c.updates[mark:] {
			if ok(n.Update) {
				c.mu.Unlock()
				return n.Update
			}
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			c.t.Fatalf("no update: %s", what)
		case <-c.exited:
			c.t.Fatalf("cortex-acp exited waiting for %s", what)
		}
	}
}

func (c *client) initialize(caps map[string]any) {
	c.t.Helper()
	var res sdk.InitializeResponse
	c.call("initialize", map[string]any{"protocolVersion": 1, "clientCapabilities": caps,
		"clientInfo": map[string]any{"name": "test", "version": "1"}}, &res)
	if res.ProtocolVersion != 1 || !res.AgentCapabilities.LoadSession {
		c.t.Fatalf("initialize: %+v", res)
	}
}

func (c *client) newSession(cwd string, extra map[string]any) string {
	c.t.Helper()
	p := map[string]any{"cwd": cwd, "mcpServers": []any{}}
	for k, v := range extra {
		p[k] = v
	}
	var res sdk.NewSessionResponse
	c.call("session/new", p, &res)
	if res.SessionId == "" {
		c.t.Fatal("session/new returned no id")
	}
	return string(res.SessionId)
}

// prompt runs one turn and returns its stop reason.
func (c *client) prompt(sid, text string) string {
	c.t.Helper()
	var res sdk.PromptResponse
	c.call("session/prompt", map[string]any{"sessionId": sid, "prompt": []any{map[string]any{"type": "text", "text": text}}}, &res)
	return string(res.StopReason)
}

func (c *client) setMode(sid, mode string) {
	c.t.Helper()
	c.call("session/set_mode", map[string]any{"sessionId": sid, "modeId": mode}, nil)
}

// text joins the agent message chunks among updates.
func agentText(us []sdk.SessionUpdate) string {
	var b strings.Builder
	for _, u := range us {
		if u.AgentMessageChunk != nil && u.AgentMessageChunk.Content.Text != nil {
			b.WriteString(u.AgentMessageChunk.Content.Text.Text)
		}
	}
	return b.String()
}

func thoughtText(us []sdk.SessionUpdate) string {
	var b strings.Builder
	for _, u := range us {
		if u.AgentThoughtChunk != nil && u.AgentThoughtChunk.Content.Text != nil {
			b.WriteString(u.AgentThoughtChunk.Content.Text.Text)
		}
	}
	return b.String()
}

// permit answers permission requests with the given option, counting them.
func permit(option string, count *int, mu *sync.Mutex) handlerFunc {
	return func(json.RawMessage) (any, *rpcError) {
		mu.Lock()
		*count++
		mu.Unlock()
		return map[string]any{"outcome": map[string]any{"outcome": "selected", "optionId": option}}, nil
	}
}

var wires = []string{"openai-chat", "openai-responses", "anthropic-messages"}
