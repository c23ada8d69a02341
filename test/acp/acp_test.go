// Package acp_test drives the real cortex-acp binary as an editor would:
// an ACP client on its stdin/stdout, scripted model upstreams (one per wire
// dialect) on loopback.
package acp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	sdk "github.com/coder/acp-go-sdk"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestTextTurnWithReasoning(t *testing.T) {
	for _, wire := range wires {
		t.Run(wire, func(t *testing.T) {
			up := newUpstream(t, wire)
			e := newEnv(t, up)
			c := e.start(t)
			c.initialize(nil)
			sid := c.newSession(e.cwd, nil)
			up.script(respond(wire, []step{{thought: "the user greets"}, {text: "Hello"}, {text: " there."}}, nil))
			m := c.mark()
			if stop := c.prompt(sid, "Say hello"); stop != "end_turn" {
				t.Fatalf("stop reason %q, want end_turn", stop)
			}
			us := c.since(m)
			if got := agentText(us); got != "Hello there." {
				t.Errorf("agent text %q", got)
			}
			if got := thoughtText(us); got != "the user greets" {
				t.Errorf("thought %q", got)
			}
			c.waitUpdate(m, "session title", func(u sdk.SessionUpdate) bool {
				return u.SessionInfoUpdate != nil && u.SessionInfoUpdate.Title != nil && *u.SessionInfoUpdate.Title == "Say hello"
			})
			c.waitUpdate(m, "usage", func(u sdk.SessionUpdate) bool {
				return u.UsageUpdate != nil && u.UsageUpdate.Size == 32000 && u.UsageUpdate.Used == 107
			})
			// Every wire carries the tool definitions (the agent this one
			// replaces sent none on two of them).
			names := toolNames(wire, up.last())
			for _, want := range []string{"read_file", "write_file", "edit_file", "list_dir", "glob", "grep", "bash", "update_plan"} {
				if !slices.Contains(names, want) {
					t.Errorf("request offers tools %v, missing %s", names, want)
				}
			}
			if up.last()["model"] != "m1" || up.last()["stream"] != true {
				t.Errorf("request model/stream: %v %v", up.last()["model"], up.last()["stream"])
			}
		})
	}
}

// TestToolRoundTripAllowAlways: the model calls bash; the user answers
// "allow always"; the result goes back to the model; a second command with
// the same program runs without asking — also after a restart (the answer
// is kept for the workspace).
func TestToolRoundTripAllowAlways(t *testing.T) {
	for _, wire := range wires {
		t.Run(wire, func(t *testing.T) {
			up := newUpstream(t, wire)
			e := newEnv(t, up)
			c := e.start(t)
			var mu sync.Mutex
			asked := 0
			c.handle("session/request_permission", permit("allow_always", &asked, &mu))
			c.initialize(nil)
			sid := c.newSession(e.cwd, nil)

			up.script(callTool(wire, "bash", map[string]any{"command": "echo first-output"}), say(wire, "Ran it."))
			m := c.mark()
			if stop := c.prompt(sid, "run echo"); stop != "end_turn" {
				t.Fatalf("stop %q", stop)
			}
			if asked != 1 {
				t.Fatalf("asked %d times, want 1", asked)
			}
			if res := toolResults(wire, up.last()); len(res) != 1 || !strings.Contains(res[0], "first-output") {
				t.Fatalf("tool results sent back: %q", res)
			}
			tc := c.waitUpdate(m, "tool call", func(u sdk.SessionUpdate) bool { return u.ToolCall != nil })
			if tc.ToolCall.Kind != sdk.ToolKindExecute || tc.ToolCall.RawInput == nil {
				t.Errorf("tool call %+v", tc.ToolCall)
			}
			c.waitUpdate(m, "completed", func(u sdk.SessionUpdate) bool {
				return u.ToolCallUpdate != nil && u.ToolCallUpdate.ToolCallId == tc.ToolCall.ToolCallId &&
					u.ToolCallUpdate.Status != nil && *u.ToolCallUpdate.Status == sdk.ToolCallStatusCompleted
			})

			up.script(callTool(wire, "bash", map[string]any{"command": "echo second-output"}), say(wire, "Again."))
			m = c.mark()
			c.prompt(sid, "again")
			if asked != 1 {
				t.Fatalf("asked again after allow-always (%d)", asked)
			}
			second := c.waitUpdate(m, "tool call", func(u sdk.SessionUpdate) bool { return u.ToolCall != nil })
			if second.ToolCall.ToolCallId == tc.ToolCall.ToolCallId {
				t.Errorf("tool call id %s reused", second.ToolCall.ToolCallId)
			}
			if res := toolResults(wire, up.last()); len(res) != 2 || !strings.Contains(res[1], "second-output") {
				t.Fatalf("tool results: %q", res)
			}
		})
	}
}

func TestEditShowsDiff(t *testing.T) {
	wire := "openai-chat"
	up := newUpstream(t, wire)
	e := newEnv(t, up)
	file := filepath.Join(e.cwd, "greet.txt")
	if err := os.WriteFile(file, []byte("hello world\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := e.start(t)
	var mu sync.Mutex
	asked := 0
	c.handle("session/request_permission", func(p json.RawMessage) (any, *rpcError) {
		var req sdk.RequestPermissionRequest
		if err := json.Unmarshal(p, &req); err != nil {
			t.Errorf("permission request does not match the schema: %v", err)
		}
		// The request shows the diff being approved.
		if len(req.ToolCall.Content) != 1 || req.ToolCall.Content[0].Diff == nil {
			t.Errorf("permission request without a diff: %s", p)
		}
		return permit("allow_once", &asked, &mu)(p)
	})
	c.initialize(nil)
	sid := c.newSession(e.cwd, nil)
	up.script(
		callTool(wire, "edit_file", map[string]any{"path": "greet.txt", "old_string": "world", "new_string": "there"}),
		callTool(wire, "edit_file", map[string]any{"path": "greet.txt", "old_string": "nowhere", "new_string": "x"}),
		say(wire, "Done."))
	m := c.mark()
	c.prompt(sid, "edit it")
	got, _ := os.ReadFile(file)
	if string(got) != "hello there\n" {
		t.Fatalf("file is %q", got)
	}
	u := c.waitUpdate(m, "diff", func(u sdk.SessionUpdate) bool {
		return u.ToolCallUpdate != nil && len(u.ToolCallUpdate.Content) == 1 && u.ToolCallUpdate.Content[0].Diff != nil
	})
	d := u.ToolCallUpdate.Content[0].Diff
	if d.Path != file || d.NewText != "hello there\n" || d.OldText == nil || *d.OldText != "hello world\n" {
		t.Errorf("diff %+v", d)
	}
	tc := c.waitUpdate(m, "edit tool call", func(u sdk.SessionUpdate) bool { return u.ToolCall != nil })
	if tc.ToolCall.Kind != sdk.ToolKindEdit || len(tc.ToolCall.Locations) != 1 || tc.ToolCall.Locations[0].Path != file {
		t.Errorf("tool call %+v", tc.ToolCall)
	}
	// The second edit does not match: the model is told, nobody is asked.
	res := toolResults(wire, up.last())
	if len(res) != 2 || !strings.Contains(res[1], "not found") {
		t.Errorf("results %q", res)
	}
	if asked != 1 {
		t.Errorf("asked %d times, want 1", asked)
	}
}

func TestWorkspaceConfinementAndPlanMode(t *testing.T) {
	wire := "openai-chat"
	up := newUpstream(t, wire)
	e := newEnv(t, up)
	c := e.start(t)
	c.initialize(nil)
	sid := c.newSession(e.cwd, nil)
	outside := filepath.Join(e.dir, "secret.txt")
	if err := os.WriteFile(outside, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.setMode(sid, "plan")
	up.script(
		callTool(wire, "read_file", map[string]any{"path": "../secret.txt"}),
		callTool(wire, "write_file", map[string]any{"path": "new.txt", "content": "x"}),
		callTool(wire, "bash", map[string]any{"command": "touch ran"}),
		callTool(wire, "write_file", map[string]any{"path": ".cortex/plans/plan.md", "content": "# plan"}),
		say(wire, "ok"))
	c.prompt(sid, "try things")
	res := toolResults(wire, up.last())
	if len(res) != 4 {
		t.Fatalf("results %q", res)
	}
	if !strings.Contains(res[0], "outside the workspace") || strings.Contains(res[0], "secret") && !strings.Contains(res[0], "secret.txt") {
		t.Errorf("read outside: %q", res[0])
	}
	if !strings.Contains(res[1], "plan mode") || !strings.Contains(res[2], "plan mode") {
		t.Errorf("plan mode let a write or command through: %q", res[1:3])
	}
	for _, f := range []string{"new.txt", "ran"} {
		if _, err := os.Stat(filepath.Join(e.cwd, f)); err == nil {
			t.Errorf("%s was created in plan mode", f)
		}
	}
	if b, err := os.ReadFile(filepath.Join(e.cwd, ".cortex/plans/plan.md")); err != nil || string(b) != "# plan" {
		t.Errorf("plan file: %q %v", b, err)
	}
}

func TestBashLiveOutputLocal(t *testing.T) {
	wire := "openai-responses"
	up := newUpstream(t, wire)
	e := newEnv(t, up)
	c := e.start(t)
	c.initialize(nil) // no terminal capability: the agent runs the command
	sid := c.newSession(e.cwd, nil)
	c.setMode(sid, "bypassPermissions")
	up.script(callTool(wire, "bash", map[string]any{"command": "echo started; while [ ! -e go ]; do sleep 0.05; done; echo finished"}), say(wire, "ok"))
	m := c.mark()
	done := c.request("session/prompt", map[string]any{"sessionId": sid, "prompt": []any{map[string]any{"type": "text", "text": "run"}}})
	// The output arrives while the command still runs (it waits for us).
	c.waitUpdate(m, "live output", func(u sdk.SessionUpdate) bool {
		tu := u.ToolCallUpdate
		return tu != nil && tu.Status == nil && len(tu.Content) == 1 && tu.Content[0].Content != nil &&
			strings.Contains(tu.Content[0].Content.Content.Text.Text, "started")
	})
	if err := os.WriteFile(filepath.Join(e.cwd, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := c.await(done); r.Error != nil {
		t.Fatal(r.Error)
	}
	if res := toolResults(wire, up.last()); len(res) != 1 || !strings.Contains(res[0], "started\nfinished") {
		t.Errorf("results %q", res)
	}
}

// terminalClient implements the client's terminal/* methods with real
// processes, as an editor would.
type terminalClient struct {
	mu       sync.Mutex
	procs    map[string]*termProc
	released []string
	killed   []string
}

type termProc struct {
	out  strings.Builder
	done chan struct{}
	code int
	cmd  *os.Process
}

func TestBashThroughClientTerminal(t *testing.T) {
	wire := "anthropic-messages"
	up := newUpstream(t, wire)
	e := newEnv(t, up)
	c := e.start(t)
	tc := &terminalClient{procs: map[string]*termProc{}}
	tc.install(t, c)
	c.initialize(map[string]any{"terminal": true})
	sid := c.newSession(e.cwd, nil)
	c.setMode(sid, "bypassPermissions")
	up.script(callTool(wire, "bash", map[string]any{"command": "echo via-terminal; exit 3"}), say(wire, "ok"))
	m := c.mark()
	c.prompt(sid, "run")
	u := c.waitUpdate(m, "terminal content", func(u sdk.SessionUpdate) bool {
		return u.ToolCallUpdate != nil && len(u.ToolCallUpdate.Content) == 1 && u.ToolCallUpdate.Content[0].Terminal != nil
	})
	id := u.ToolCallUpdate.Content[0].Terminal.TerminalId
	res := toolResults(wire, up.last())
	if len(res) != 1 || !strings.Contains(res[0], "via-terminal") || !strings.Contains(res[0], "exit code 3") {
		t.Errorf("results %q", res)
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if !slices.Contains(tc.released, id) {
		t.Errorf("terminal %s not released (%v)", id, tc.released)
	}
}

func TestCancelMidStream(t *testing.T) {
	for _, wire := range wires {
		t.Run(wire, func(t *testing.T) {
			up := newUpstream(t, wire)
			e := newEnv(t, up)
			c := e.start(t)
			c.initialize(nil)
			sid := c.newSession(e.cwd, nil)
			aborted := make(chan struct{})
			up.script(respond(wire, []step{{text: "partial answer"}}, func(r *http.Request) {
				<-r.Context().Done()
				close(aborted)
			}))
			m := c.mark()
			done := c.request("session/prompt", map[string]any{"sessionId": sid, "prompt": []any{map[string]any{"type": "text", "text": "long"}}})
			c.waitUpdate(m, "partial text", func(u sdk.SessionUpdate) bool {
				return u.AgentMessageChunk != nil && strings.Contains(u.AgentMessageChunk.Content.Text.Text, "partial")
			})
			c.notify("session/cancel", map[string]any{"sessionId": sid})
			r := c.await(done)
			if r.Error != nil {
				t.Fatalf("cancel answered with an error: %+v", r.Error)
			}
			var pr sdk.PromptResponse
			_ = json.Unmarshal(r.Result, &pr)
			if pr.StopReason != sdk.StopReasonCancelled {
				t.Fatalf("stop reason %q", pr.StopReason)
			}
			<-aborted // the HTTP stream was closed
			// The partial answer stays in the history.
			up.script(say(wire, "next"))
			c.prompt(sid, "continue")
			body, _ := json.Marshal(up.last())
			if !strings.Contains(string(body), "partial answer") {
				t.Errorf("partial answer not kept: %s", body)
			}
		})
	}
}

func TestCancelMidCommand(t *testing.T) {
	wire := "openai-chat"
	up := newUpstream(t, wire)
	e := newEnv(t, up)
	c := e.start(t)
	c.initialize(nil)
	sid := c.newSession(e.cwd, nil)
	c.setMode(sid, "bypassPermissions")
	up.script(callTool(wire, "bash", map[string]any{"command": "sleep 300 & echo $! > child; echo $$ > pid; echo ready; wait"}))
	m := c.mark()
	done := c.request("session/prompt", map[string]any{"sessionId": sid, "prompt": []any{map[string]any{"type": "text", "text": "run"}}})
	c.mu.Lock()
	promptID := strconv.Itoa(c.nextID)
	c.mu.Unlock()
	c.waitUpdate(m, "ready", func(u sdk.SessionUpdate) bool {
		tu := u.ToolCallUpdate
		return tu != nil && len(tu.Content) == 1 && tu.Content[0].Content != nil && strings.Contains(tu.Content[0].Content.Content.Text.Text, "ready")
	})
	c.notify("session/cancel", map[string]any{"sessionId": sid})
	r := c.await(done)
	if r.Error != nil || !strings.Contains(string(r.Result), `"cancelled"`) {
		t.Fatalf("response %s %+v", r.Result, r.Error)
	}
	for _, f := range []string{"pid", "child"} {
		b, err := os.ReadFile(filepath.Join(e.cwd, f))
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		// The shell was reaped before the answer; its background child
		// was killed with its process group (it may linger as a zombie
		// of init for a moment, so look at its state).
		if alive(pid) {
			t.Errorf("%s %d still running after cancel", f, pid)
		}
	}
	// Exactly one answer to the prompt (the harness also fails on any
	// answer to a request already answered).
	c.call("session/list", map[string]any{}, nil) // a barrier: later output is in
	c.mu.Lock()
	n := 0
	for _, raw := range c.raw {
		if raw.Method == "" && string(raw.ID) == promptID {
			n++
		}
	}
	c.mu.Unlock()
	if n != 1 {
		t.Errorf("%d answers to the prompt", n)
	}
}

// alive reports whether pid runs (a zombie does not count).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

func TestLoadReplayResumeAfterRestart(t *testing.T) {
	wire := "openai-chat"
	up := newUpstream(t, wire)
	e := newEnv(t, up)
	c := e.start(t)
	c.initialize(nil)
	sid := c.newSession(e.cwd, nil)
	c.setMode(sid, "bypassPermissions")
	up.script(callTool(wire, "list_dir", map[string]any{}), say(wire, "The folder is empty."))
	c.prompt(sid, "what is here")
	other := c.newSession(filepath.Join(e.dir), nil)
	c.stop()

	// A new process lists, loads and replays the session.
	c2 := e.start(t)
	c2.initialize(nil)
	var list sdk.ListSessionsResponse
	c2.call("session/list", map[string]any{"cwd": e.cwd}, &list)
	if len(list.Sessions) != 1 || string(list.Sessions[0].SessionId) != sid || list.Sessions[0].Title == nil || *list.Sessions[0].Title != "what is here" {
		t.Fatalf("list %+v", list)
	}
	c2.call("session/list", map[string]any{}, &list)
	if len(list.Sessions) != 2 || string(list.Sessions[1].SessionId) != sid && string(list.Sessions[0].SessionId) != other {
		t.Fatalf("list without filter %+v", list)
	}
	m := c2.mark()
	var load sdk.LoadSessionResponse
	c2.call("session/load", map[string]any{"sessionId": sid, "cwd": e.cwd, "mcpServers": []any{}}, &load)
	// Everything was replayed before the answer.
	replayed := c2.since(m)
	var kinds []string
	for _, u := range replayed {
		switch {
		case u.UserMessageChunk != nil:
			kinds = append(kinds, "user:"+u.UserMessageChunk.Content.Text.Text)
		case u.AgentMessageChunk != nil:
			kinds = append(kinds, "agent:"+u.AgentMessageChunk.Content.Text.Text)
		case u.ToolCall != nil:
			kinds = append(kinds, "tool:"+string(u.ToolCall.Status))
		}
	}
	want := []string{"user:what is here", "tool:completed", "agent:The folder is empty."}
	if !slices.Equal(kinds, want) {
		t.Fatalf("replay %q, want %q", kinds, want)
	}
	if load.Modes == nil || load.Modes.CurrentModeId != "bypassPermissions" {
		t.Errorf("mode not restored: %+v", load.Modes)
	}
	up.script(say(wire, "Still empty."))
	c2.prompt(sid, "and now")
	if n := len(list2(up.last()["messages"])); n != 6 { // system, user, assistant+call, tool, assistant, user
		t.Errorf("history sent after load has %d messages", n)
	}
	c2.stop()

	// Resume: no replay, history kept.
	c3 := e.start(t)
	c3.initialize(nil)
	m = c3.mark()
	c3.call("session/resume", map[string]any{"sessionId": sid, "cwd": e.cwd}, nil)
	for _, u := range c3.since(m) {
		if u.UserMessageChunk != nil || u.AgentMessageChunk != nil || u.ToolCall != nil {
			t.Errorf("resume replayed %+v", u)
		}
	}
	up.script(callTool(wire, "list_dir", map[string]any{}), say(wire, "ok"))
	m = c3.mark()
	c3.prompt(sid, "once more")
	if n := len(list2(up.last()["messages"])); n != 10 { // system, 3 user turns, 3 answers, 2 calls and their results
		t.Errorf("history after resume has %d messages", n)
	}
	// Tool call ids continue where they were.
	tc := c3.waitUpdate(m, "tool call", func(u sdk.SessionUpdate) bool { return u.ToolCall != nil })
	if tc.ToolCall.ToolCallId == "call_1" {
		t.Errorf("tool call id restarted: %s", tc.ToolCall.ToolCallId)
	}
	c3.call("session/close", map[string]any{"sessionId": sid}, nil)
	m2 := c3.await(c3.request("session/prompt", map[string]any{"sessionId": sid, "prompt": []any{}}))
	if m2.Error == nil || m2.Error.Code != -32602 {
		t.Errorf("prompt on a closed session: %+v", m2)
	}
}

func list2(v any) []any { return list(v) }

func TestMCPStdioTool(t *testing.T) {
	wire := "openai-responses"
	up := newUpstream(t, wire)
	e := newEnv(t, up)
	c := e.start(t)
	var mu sync.Mutex
	asked := 0
	c.handle("session/request_permission", permit("allow_once", &asked, &mu))
	c.initialize(nil)
	sid := c.newSession(e.cwd, map[string]any{"mcpServers": []any{
		map[string]any{"name": "calc", "command": mcpBin, "args": []any{}, "env": []any{}},
	}})
	up.script(callTool(wire, "mcp__calc__add", map[string]any{"a": 2, "b": 3}), say(wire, "5"))
	c.prompt(sid, "add 2 and 3")
	if !slices.Contains(toolNames(wire, up.requests()[0]), "mcp__calc__add") {
		t.Fatalf("MCP tool not offered: %v", toolNames(wire, up.requests()[0]))
	}
	if res := toolResults(wire, up.last()); len(res) != 1 || res[0] != "sum=5" {
		t.Errorf("results %q", res)
	}
	if asked != 1 {
		t.Errorf("MCP tool asked %d times", asked)
	}
}

func TestProtocolErrors(t *testing.T) {
	up := newUpstream(t, "openai-chat")
	e := newEnv(t, up)
	c := e.start(t)
	c.initialize(nil)

	r := c.await(c.request("no/such_method", map[string]any{}))
	if r.Error == nil || r.Error.Code != -32601 {
		t.Errorf("unknown method: %+v", r)
	}
	// A malformed line is answered with a parse error (id null).
	m := len(c.raw)
	c.sendRaw(`{"jsonrpc":"2.0","id":99,"method":`)
	c.sendRaw(`not json at all`)
	r = c.await(c.request("session/prompt", map[string]any{"sessionId": 7}))
	if r.Error == nil || r.Error.Code != -32602 {
		t.Errorf("bad params: %+v", r)
	}
	c.mu.Lock()
	parseErrors := 0
	for _, raw := range c.raw[m:] {
		if raw.Error != nil && raw.Error.Code == -32700 && string(raw.ID) == "null" {
			parseErrors++
		}
	}
	c.mu.Unlock()
	if parseErrors != 2 {
		t.Errorf("%d parse errors, want 2", parseErrors)
	}
	r = c.await(c.request("session/prompt", map[string]any{"sessionId": "sess_unknown", "prompt": []any{}}))
	if r.Error == nil || r.Error.Code != -32602 {
		t.Errorf("unknown session: %+v", r)
	}
	r = c.await(c.request("session/new", map[string]any{"cwd": "relative/path", "mcpServers": []any{}}))
	if r.Error == nil || r.Error.Code != -32602 {
		t.Errorf("relative cwd: %+v", r)
	}
	// Still serving.
	sid := c.newSession(e.cwd, nil)
	up.script(say("openai-chat", "fine"))
	if stop := c.prompt(sid, "hi"); stop != "end_turn" {
		t.Errorf("stop %q", stop)
	}
}

func TestUpstreamErrorEndsTurn(t *testing.T) {
	wire := "openai-chat"
	up := newUpstream(t, wire)
	e := newEnv(t, up)
	c := e.start(t)
	c.initialize(nil)
	sid := c.newSession(e.cwd, nil)
	up.script(func(w http.ResponseWriter, r *http.Request) {
		sseWrite(w, "", map[string]any{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"content": "Let me"}}}})
		sseWrite(w, "", map[string]any{"error": map[string]any{"message": "model crashed"}})
	})
	m := c.mark()
	if stop := c.prompt(sid, "hi"); stop != "end_turn" {
		t.Errorf("stop %q", stop)
	}
	if got := agentText(c.since(m)); !strings.Contains(got, "Let me") || !strings.Contains(got, "model crashed") {
		t.Errorf("text %q", got)
	}
}

// TestClientFileSystem: a client that offers fs methods gets reads and
// writes through them (it sees unsaved buffers); one that offers none is
// never asked (every other test runs such a client, whose harness fails
// on any unexpected request).
func TestClientFileSystem(t *testing.T) {
	wire := "openai-chat"
	up := newUpstream(t, wire)
	e := newEnv(t, up)
	c := e.start(t)
	var mu sync.Mutex
	written := map[string]string{}
	c.handle("fs/read_text_file", func(p json.RawMessage) (any, *rpcError) {
		var req sdk.ReadTextFileRequest
		_ = json.Unmarshal(p, &req)
		return map[string]any{"content": "unsaved buffer of " + filepath.Base(req.Path)}, nil
	})
	c.handle("fs/write_text_file", func(p json.RawMessage) (any, *rpcError) {
		var req sdk.WriteTextFileRequest
		_ = json.Unmarshal(p, &req)
		mu.Lock()
		written[req.Path] = req.Content
		mu.Unlock()
		return map[string]any{}, nil
	})
	c.initialize(map[string]any{"fs": map[string]any{"readTextFile": true, "writeTextFile": true}})
	sid := c.newSession(e.cwd, nil)
	c.setMode(sid, "acceptEdits")
	up.script(
		callTool(wire, "read_file", map[string]any{"path": "main.go"}),
		callTool(wire, "edit_file", map[string]any{"path": "main.go", "old_string": "unsaved", "new_string": "edited"}),
		say(wire, "ok"))
	c.prompt(sid, "go")
	res := toolResults(wire, up.last())
	if len(res) != 2 || res[0] != "unsaved buffer of main.go" {
		t.Errorf("results %q", res)
	}
	mu.Lock()
	defer mu.Unlock()
	if written[filepath.Join(e.cwd, "main.go")] != "edited buffer of main.go" {
		t.Errorf("writes %v", written)
	}
	if _, err := os.Stat(filepath.Join(e.cwd, "main.go")); err == nil {
		t.Error("the agent wrote to disk instead of through the client")
	}
}

func TestSlashCommandsAndConfigOptions(t *testing.T) {
	up := newUpstream(t, "openai-chat")
	up2 := newUpstream(t, "anthropic-messages")
	e := newEnv(t, up, up2)
	c := e.start(t)
	c.initialize(nil)
	m := c.mark()
	sid := c.newSession(e.cwd, nil)
	c.waitUpdate(m, "commands", func(u sdk.SessionUpdate) bool {
		return u.AvailableCommandsUpdate != nil && len(u.AvailableCommandsUpdate.AvailableCommands) >= 8
	})
	// The model list arrives in the background from both endpoints.
	c.waitUpdate(m, "model options", func(u sdk.SessionUpdate) bool {
		if u.ConfigOptionUpdate == nil {
			return false
		}
		b, _ := json.Marshal(u.ConfigOptionUpdate)
		return strings.Contains(string(b), "anthropic-messages:m2") && strings.Contains(string(b), "openai-chat:m2")
	})
	var set sdk.SetSessionConfigOptionResponse
	c.call("session/set_config_option", map[string]any{"sessionId": sid, "configId": "model", "value": "anthropic-messages:m2"}, &set)
	c.call("session/set_config_option", map[string]any{"sessionId": sid, "configId": "thought_level", "value": "high"}, &set)
	r := c.await(c.request("session/set_config_option", map[string]any{"sessionId": sid, "configId": "mode", "value": "yolo"}))
	if r.Error == nil || r.Error.Code != -32602 {
		t.Errorf("bad mode accepted: %+v", r)
	}
	up2.script(say("anthropic-messages", "thinking hard"))
	c.prompt(sid, "hi")
	body := up2.last()
	if body["model"] != "m2" {
		t.Errorf("model %v", body["model"])
	}
	if th, _ := body["thinking"].(map[string]any); th == nil || th["type"] != "enabled" {
		t.Errorf("thinking %v", body["thinking"])
	}
	m = c.mark()
	if stop := c.prompt(sid, "/status"); stop != "end_turn" {
		t.Errorf("stop %q", stop)
	}
	if got := agentText(c.since(m)); !strings.Contains(got, "anthropic-messages") || !strings.Contains(got, "m2") {
		t.Errorf("/status: %q", got)
	}
	m = c.mark()
	c.prompt(sid, "/mode plan")
	c.waitUpdate(m, "mode update", func(u sdk.SessionUpdate) bool {
		return u.CurrentModeUpdate != nil && u.CurrentModeUpdate.CurrentModeId == "plan"
	})
	c.prompt(sid, "/clear")
	up2.script(say("anthropic-messages", "fresh"))
	c.prompt(sid, "hello again")
	if n := len(list(up2.last()["messages"])); n != 1 {
		t.Errorf("history after /clear has %d messages", n)
	}
}

func TestHermesTextToolCall(t *testing.T) {
	wire := "openai-chat"
	up := newUpstream(t, wire)
	e := newEnv(t, up)
	c := e.start(t)
	c.initialize(nil)
	sid := c.newSession(e.cwd, nil)
	up.script(
		respond(wire, []step{{text: "<think>need the dir</think>Looking.<tool_"}, {text: `call>{"name":"list_dir","arguments":{}}</tool_call>`}}, nil),
		say(wire, "Empty."))
	m := c.mark()
	c.prompt(sid, "list")
	us := c.since(m)
	if got := agentText(us); got != "Looking.Empty." {
		t.Errorf("text %q", got)
	}
	if got := thoughtText(us); got != "need the dir" {
		t.Errorf("thought %q", got)
	}
	if res := toolResults(wire, up.last()); len(res) != 1 || res[0] != "(empty directory)" {
		t.Errorf("results %q", res)
	}
}

func (tc *terminalClient) install(t *testing.T, c *client) {
	n := 0
	c.handle("terminal/create", func(p json.RawMessage) (any, *rpcError) {
		var req sdk.CreateTerminalRequest
		if err := json.Unmarshal(p, &req); err != nil {
			t.Errorf("terminal/create: %v", err)
		}
		cmd := exec.Command(req.Command, req.Args...)
		if req.Cwd != nil {
			cmd.Dir = *req.Cwd
		}
		tp := &termProc{done: make(chan struct{})}
		cmd.Stdout, cmd.Stderr = &lockedBuilder{mu: &tc.mu, b: &tp.out}, &lockedBuilder{mu: &tc.mu, b: &tp.out}
		if err := cmd.Start(); err != nil {
			return nil, &rpcError{Code: -32603, Message: err.Error()}
		}
		tp.cmd = cmd.Process
		go func() {
			_ = cmd.Wait()
			tc.mu.Lock()
			tp.code = cmd.ProcessState.ExitCode()
			tc.mu.Unlock()
			close(tp.done)
		}()
		tc.mu.Lock()
		n++
		id := "term-" + strconv.Itoa(n)
		tc.procs[id] = tp
		tc.mu.Unlock()
		return map[string]any{"terminalId": id}, nil
	})
	get := func(p json.RawMessage) *termProc {
		var req struct {
			TerminalID string `json:"terminalId"`
		}
		_ = json.Unmarshal(p, &req)
		tc.mu.Lock()
		defer tc.mu.Unlock()
		return tc.procs[req.TerminalID]
	}
	c.handle("terminal/wait_for_exit", func(p json.RawMessage) (any, *rpcError) {
		tp := get(p)
		<-tp.done
		tc.mu.Lock()
		defer tc.mu.Unlock()
		return map[string]any{"exitCode": tp.code}, nil
	})
	c.handle("terminal/output", func(p json.RawMessage) (any, *rpcError) {
		tp := get(p)
		tc.mu.Lock()
		defer tc.mu.Unlock()
		res := map[string]any{"output": tp.out.String(), "truncated": false}
		select {
		case <-tp.done:
			res["exitStatus"] = map[string]any{"exitCode": tp.code}
		default:
		}
		return res, nil
	})
	c.handle("terminal/kill", func(p json.RawMessage) (any, *rpcError) {
		var req struct {
			TerminalID string `json:"terminalId"`
		}
		_ = json.Unmarshal(p, &req)
		_ = get(p).cmd.Kill()
		tc.mu.Lock()
		tc.killed = append(tc.killed, req.TerminalID)
		tc.mu.Unlock()
		return map[string]any{}, nil
	})
	c.handle("terminal/release", func(p json.RawMessage) (any, *rpcError) {
		var req struct {
			TerminalID string `json:"terminalId"`
		}
		_ = json.Unmarshal(p, &req)
		tc.mu.Lock()
		tc.released = append(tc.released, req.TerminalID)
		tc.mu.Unlock()
		return map[string]any{}, nil
	})
}

type lockedBuilder struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// TestCancelRequestAndBusySession: `$/cancel_request` on a prompt answers
// it `cancelled`; a prompt sent while another runs cancels that one; a
// cancel while a permission request is pending cancels it too.
func TestCancelRequestAndBusySession(t *testing.T) {
	wire := "openai-chat"
	up := newUpstream(t, wire)
	e := newEnv(t, up)
	c := e.start(t)
	release := make(chan struct{})
	asking := make(chan struct{}, 1)
	c.handle("session/request_permission", func(json.RawMessage) (any, *rpcError) {
		asking <- struct{}{}
		<-release
		return map[string]any{"outcome": map[string]any{"outcome": "cancelled"}}, nil
	})
	c.initialize(nil)
	sid := c.newSession(e.cwd, nil)
	hold := func(r *http.Request) { <-r.Context().Done() }
	prompt := func(text string) (chan message, int) {
		c.mu.Lock()
		id := c.nextID + 1
		c.mu.Unlock()
		return c.request("session/prompt", map[string]any{"sessionId": sid, "prompt": []any{map[string]any{"type": "text", "text": text}}}), id
	}
	stopOf := func(m message) string {
		if m.Error != nil {
			t.Fatalf("error %+v", m.Error)
		}
		var pr sdk.PromptResponse
		_ = json.Unmarshal(m.Result, &pr)
		return string(pr.StopReason)
	}

	// $/cancel_request.
	up.script(respond(wire, []step{{text: "one"}}, hold))
	m := c.mark()
	first, id := prompt("first")
	c.waitUpdate(m, "first text", func(u sdk.SessionUpdate) bool { return u.AgentMessageChunk != nil })
	c.notify("$/cancel_request", map[string]any{"requestId": id})
	if s := stopOf(c.await(first)); s != "cancelled" {
		t.Fatalf("first: %s", s)
	}

	// A new prompt cancels the busy one.
	up.script(respond(wire, []step{{text: "two"}}, hold), say(wire, "three"))
	m = c.mark()
	second, _ := prompt("second")
	c.waitUpdate(m, "second text", func(u sdk.SessionUpdate) bool { return u.AgentMessageChunk != nil })
	third, _ := prompt("third")
	if s := stopOf(c.await(second)); s != "cancelled" {
		t.Fatalf("second: %s", s)
	}
	if s := stopOf(c.await(third)); s != "end_turn" {
		t.Fatalf("third: %s", s)
	}

	// Cancel while the user is being asked.
	up.script(callTool(wire, "write_file", map[string]any{"path": "x.txt", "content": "x"}))
	fourth, _ := prompt("fourth")
	<-asking
	c.notify("session/cancel", map[string]any{"sessionId": sid})
	if s := stopOf(c.await(fourth)); s != "cancelled" {
		t.Fatalf("fourth: %s", s)
	}
	close(release)
	if _, err := os.Stat(filepath.Join(e.cwd, "x.txt")); err == nil {
		t.Error("the write ran although the turn was cancelled")
	}
}

func TestMCPHTTPTool(t *testing.T) {
	srv := mcp.NewServer(&mcp.Implementation{Name: "kv", Version: "test"}, nil)
	type getArgs struct {
		Key string `json:"key"`
	}
	mcp.AddTool(srv, &mcp.Tool{Name: "get", Description: "Read a key", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		func(_ context.Context, _ *mcp.CallToolRequest, in getArgs) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "value-of-" + in.Key}}}, nil, nil
		})
	var sawHeader atomic.Bool
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Token") == "t0k" {
			sawHeader.Store(true)
		}
		h.ServeHTTP(w, r)
	}))
	defer hs.Close()

	wire := "anthropic-messages"
	up := newUpstream(t, wire)
	e := newEnv(t, up)
	c := e.start(t)
	c.initialize(nil)
	sid := c.newSession(e.cwd, map[string]any{"mcpServers": []any{
		map[string]any{"type": "http", "name": "kv", "url": hs.URL, "headers": []any{map[string]any{"name": "X-Token", "value": "t0k"}}},
	}})
	// Read-only: no permission request (the harness fails on one).
	up.script(callTool(wire, "mcp__kv__get", map[string]any{"key": "answer"}), say(wire, "ok"))
	c.prompt(sid, "get it")
	if res := toolResults(wire, up.last()); len(res) != 1 || res[0] != "value-of-answer" {
		t.Errorf("results %q", res)
	}
	if !sawHeader.Load() {
		t.Error("the configured header was not sent")
	}
}

func TestListPages(t *testing.T) {
	up := newUpstream(t, "openai-chat")
	e := newEnv(t, up)
	c := e.start(t)
	c.initialize(nil)
	ids := map[string]bool{}
	for range 53 {
		ids[c.newSession(e.cwd, nil)] = true
	}
	seen := map[string]bool{}
	var cursor any
	pages := 0
	for {
		var l sdk.ListSessionsResponse
		p := map[string]any{"cwd": e.cwd}
		if cursor != nil {
			p["cursor"] = cursor
		}
		c.call("session/list", p, &l)
		pages++
		for _, s := range l.Sessions {
			if seen[string(s.SessionId)] {
				t.Fatalf("%s listed twice", s.SessionId)
			}
			seen[string(s.SessionId)] = true
		}
		if l.NextCursor == nil {
			break
		}
		cursor = *l.NextCursor
	}
	if pages != 2 || len(seen) != 53 {
		t.Errorf("%d pages, %d sessions", pages, len(seen))
	}
	for id := range ids {
		if !seen[id] {
			t.Errorf("%s not listed", id)
		}
	}
}

func TestImagePassThrough(t *testing.T) {
	const png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg=="
	for _, wire := range wires {
		t.Run(wire, func(t *testing.T) {
			up := newUpstream(t, wire)
			e := newEnv(t, up)
			c := e.start(t)
			c.initialize(nil)
			sid := c.newSession(e.cwd, nil)
			up.script(say(wire, "a pixel"))
			c.call("session/prompt", map[string]any{"sessionId": sid, "prompt": []any{
				map[string]any{"type": "text", "text": "what is this"},
				map[string]any{"type": "image", "mimeType": "image/png", "data": png},
			}}, nil)
			body, _ := json.Marshal(up.last())
			want := map[string]string{
				"openai-chat":        `"image_url":{"url":"data:image/png;base64,` + png,
				"openai-responses":   `"image_url":"data:image/png;base64,` + png,
				"anthropic-messages": `"data":"` + png + `","media_type":"image/png"`,
			}[wire]
			if !strings.Contains(string(body), want) {
				t.Errorf("request %s lacks %s", body, want)
			}
		})
	}
}

func TestBadConfigExits(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte("[[endpoints]]\nname = \"x\"\nbase_url = \"http://h/v1\"\nwire_api = \"carrier-pigeon\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(agentBin, "--config", cfg)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err == nil || cmd.ProcessState.ExitCode() == 0 {
		t.Fatal("a bad config must exit non-zero")
	}
	if !strings.Contains(stderr.String(), "wire_api") || stdout.Len() != 0 {
		t.Errorf("stdout %q, stderr %q", stdout.String(), stderr.String())
	}
}

func TestCommandTimeoutAndSIGTERM(t *testing.T) {
	wire := "openai-chat"
	up := newUpstream(t, wire)
	e := newEnv(t, up)
	c := e.start(t)
	c.initialize(nil)
	sid := c.newSession(e.cwd, nil)
	c.setMode(sid, "bypassPermissions")
	up.script(callTool(wire, "bash", map[string]any{"command": "echo $$ > pid; exec sleep 300", "timeout_seconds": 1}), say(wire, "ok"))
	c.prompt(sid, "run")
	if res := toolResults(wire, up.last()); len(res) != 1 || !strings.Contains(res[0], "timed out") {
		t.Errorf("results %q", res)
	}
	b, _ := os.ReadFile(filepath.Join(e.cwd, "pid"))
	if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid == 0 || alive(pid) {
		t.Errorf("timed-out command %q still running", b)
	}
	// SIGTERM ends the agent even while the client keeps stdin open.
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.exited:
	case <-time.After(wait):
		t.Fatal("cortex-acp ignored SIGTERM")
	}
}

func TestCancelClientTerminalCommand(t *testing.T) {
	wire := "openai-chat"
	up := newUpstream(t, wire)
	e := newEnv(t, up)
	c := e.start(t)
	tc := &terminalClient{procs: map[string]*termProc{}}
	tc.install(t, c)
	c.initialize(map[string]any{"terminal": true})
	sid := c.newSession(e.cwd, nil)
	c.setMode(sid, "bypassPermissions")
	up.script(callTool(wire, "bash", map[string]any{"command": "sleep 300"}))
	m := c.mark()
	done := c.request("session/prompt", map[string]any{"sessionId": sid, "prompt": []any{map[string]any{"type": "text", "text": "run"}}})
	u := c.waitUpdate(m, "terminal content", func(u sdk.SessionUpdate) bool {
		return u.ToolCallUpdate != nil && len(u.ToolCallUpdate.Content) == 1 && u.ToolCallUpdate.Content[0].Terminal != nil
	})
	id := u.ToolCallUpdate.Content[0].Terminal.TerminalId
	c.notify("session/cancel", map[string]any{"sessionId": sid})
	r := c.await(done)
	if r.Error != nil || !strings.Contains(string(r.Result), `"cancelled"`) {
		t.Fatalf("response %s %+v", r.Result, r.Error)
	}
	tc.mu.Lock()
	p := tc.procs[id]
	killed, released := slices.Contains(tc.killed, id), slices.Contains(tc.released, id)
	tc.mu.Unlock()
	if !killed || !released {
		t.Errorf("terminal killed %v, released %v", killed, released)
	}
	<-p.done // the editor's process ended
}

// TestDefaultModelAndBrokenMCP: without default_model the endpoint's first
// model is used; an MCP server that cannot start does not stop the
// session, and /status says so.
func TestDefaultModelAndBrokenMCP(t *testing.T) {
	wire := "openai-chat"
	up := newUpstream(t, wire)
	e := newEnv(t, up)
	cfg := fmt.Sprintf("[[endpoints]]\nname = \"gw\"\nbase_url = %q\n", up.srv.URL+"/v1")
	if err := os.WriteFile(e.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	c := e.start(t)
	c.initialize(nil)
	sid := c.newSession(e.cwd, map[string]any{"mcpServers": []any{
		map[string]any{"name": "broken", "command": filepath.Join(e.dir, "no-such-server"), "args": []any{}, "env": []any{}},
	}})
	up.script(say(wire, "hi"))
	if stop := c.prompt(sid, "hello"); stop != "end_turn" {
		t.Fatalf("stop %q", stop)
	}
	if up.last()["model"] != "m1" {
		t.Errorf("model %v, want the first listed", up.last()["model"])
	}
	m := c.mark()
	c.prompt(sid, "/status")
	if got := agentText(c.since(m)); !strings.Contains(got, "unavailable: broken") || !strings.Contains(got, "gw:m1") && !strings.Contains(got, "`m1`") {
		t.Errorf("/status: %q", got)
	}
}

// TestRejectAlwaysAndTurnCap: "reject always" is remembered — in the
// session and, after a restart, for the workspace — and a turn stops at
// max_turn_requests.
func TestRejectAlwaysAndTurnCap(t *testing.T) {
	wire := "openai-responses"
	up := newUpstream(t, wire)
	e := newEnv(t, up)
	cfg, _ := os.ReadFile(e.config)
	if err := os.WriteFile(e.config, append([]byte("max_turn_requests = 2\n"), cfg...), 0o644); err != nil {
		t.Fatal(err)
	}
	c := e.start(t)
	var mu sync.Mutex
	asked := 0
	c.handle("session/request_permission", permit("reject_always", &asked, &mu))
	c.initialize(nil)
	sid := c.newSession(e.cwd, nil)
	up.script(callTool(wire, "bash", map[string]any{"command": "touch a"}), callTool(wire, "bash", map[string]any{"command": "touch b"}))
	if stop := c.prompt(sid, "touch"); stop != "max_turn_requests" {
		t.Fatalf("stop %q", stop)
	}
	if asked != 1 || len(up.requests()) != 2 {
		t.Fatalf("asked %d times in %d requests", asked, len(up.requests()))
	}
	c.stop()

	c2 := e.start(t)
	c2.initialize(nil) // no permission handler: asking would fail the test
	sid = c2.newSession(e.cwd, nil)
	up.script(callTool(wire, "bash", map[string]any{"command": "touch c"}), say(wire, "ok"))
	c2.prompt(sid, "touch again")
	if res := toolResults(wire, up.last()); len(res) != 1 || !strings.Contains(res[0], "always reject") {
		t.Errorf("results %q", res)
	}
	for _, f := range []string{"a", "b", "c"} {
		if _, err := os.Stat(filepath.Join(e.cwd, f)); err == nil {
			t.Errorf("%s was created", f)
		}
	}
}

// TestClientWithoutCapabilities: a client that offers neither fs nor
// terminal methods gets the agent's own file access and processes, and is
// never sent a request it did not offer.
func TestClientWithoutCapabilities(t *testing.T) {
	wire := "anthropic-messages"
	up := newUpstream(t, wire)
	e := newEnv(t, up)
	if err := os.WriteFile(filepath.Join(e.cwd, "in.txt"), []byte("on disk\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := e.start(t)
	c.initialize(map[string]any{"fs": map[string]any{"readTextFile": false, "writeTextFile": false}, "terminal": false})
	sid := c.newSession(e.cwd, nil)
	c.setMode(sid, "bypassPermissions")
	up.script(
		callTool(wire, "read_file", map[string]any{"path": "in.txt"}),
		callTool(wire, "write_file", map[string]any{"path": "out/new.txt", "content": "written"}),
		callTool(wire, "bash", map[string]any{"command": "cat out/new.txt"}),
		callTool(wire, "grep", map[string]any{"pattern": "disk"}),
		say(wire, "ok"))
	c.prompt(sid, "go")
	res := toolResults(wire, up.last())
	if len(res) != 4 || res[0] != "on disk\n" || !strings.Contains(res[1], "Wrote out/new.txt") || res[2] != "written" || res[3] != "in.txt:1: on disk" {
		t.Errorf("results %q", res)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.raw {
		if m.Method != "" && len(m.ID) > 0 {
			t.Errorf("the agent sent a request: %s", m.Method)
		}
	}
}
