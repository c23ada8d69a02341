package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helexa-ai/cortex/internal/testenv"
)

// 5. cortex-acp, the editor agent, against the stack's gateway: one turn
// through each wire dialect on the tool-trained test model, and a tool
// round trip in which the model itself chooses an MCP server's tool.
func TestACPAgentAgainstTheGateway(t *testing.T) {
	root := testenv.RepoRoot()
	model := filepath.Join(root, "..", "shared", "models", "toolchat.gguf")
	if _, err := os.Stat(model); err != nil {
		t.Fatalf("the tool-calling test model is missing: %v", err)
	}
	apply(t, fmt.Sprintf("apiVersion: cortex.helexa.ai/v1alpha1\nkind: Model\nmetadata:\n  name: toolchat\nspec:\n  source:\n    uri: file://%s\n"+
		"  servedNames: [toolchat]\n  replicas: {min: 1, max: 1}\n  engine: {contextLength: 2048, parallel: 2}\n", model))

	bin := filepath.Join(work, "acp-bin")
	build := exec.Command("go", "build", "-o", bin+"/", "./cmd/cortex-acp", "./test/acp/mcpserver")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("building cortex-acp: %v", err)
	}
	mustRun(t, "wait", "-n", ns, "--for=condition=Ready", "model/toolchat", "--timeout=120s")

	dir := t.TempDir()
	cwd := filepath.Join(dir, "work")
	if err := os.MkdirAll(cwd, 0o755); err != nil {
		t.Fatal(err)
	}
	// A short system prompt: the test model's context is 2,048 tokens.
	prompt := filepath.Join(dir, "prompt.md")
	if err := os.WriteFile(prompt, []byte("You are a helpful assistant."), 0o644); err != nil {
		t.Fatal(err)
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "default_endpoint = \"chat\"\nsystem_prompt_path = %q\ntools = []\nmcp_short_names = true\n", prompt)
	for name, wire := range map[string]string{"chat": "openai-chat", "responses": "openai-responses", "messages": "anthropic-messages"} {
		fmt.Fprintf(&cfg, "\n[[endpoints]]\nname = %q\nbase_url = %q\nwire_api = %q\ndefault_model = \"toolchat\"\napi_key = %q\nmax_tokens = 48\ntemperature = 0\n",
			name, st.GatewayURL+"/v1", wire, st.APIKey)
	}
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	a := startACP(t, filepath.Join(bin, "cortex-acp"), cfgPath, dir)
	a.call(t, "initialize", map[string]any{"protocolVersion": 1, "clientCapabilities": map[string]any{}})

	for _, ep := range []string{"chat", "responses", "messages"} {
		var s struct {
			SessionID string `json:"sessionId"`
		}
		a.call(t, "session/new", map[string]any{"cwd": cwd, "mcpServers": []any{}}, &s)
		a.call(t, "session/set_config_option", map[string]any{"sessionId": s.SessionID, "configId": "model", "value": ep + ":toolchat"})
		a.reset()
		var res struct {
			StopReason string `json:"stopReason"`
		}
		a.call(t, "session/prompt", map[string]any{"sessionId": s.SessionID, "prompt": []any{map[string]any{"type": "text", "text": "Hello"}}}, &res)
		text := a.text()
		t.Logf("%s: %q (%s)", ep, text, res.StopReason)
		if strings.TrimSpace(text) == "" || (res.StopReason != "end_turn" && res.StopReason != "max_tokens") {
			t.Errorf("%s: answer %q, stop %q", ep, text, res.StopReason)
		}
	}

	// The model picks the weather tool on its own (tool_choice auto).
	var s struct {
		SessionID string `json:"sessionId"`
	}
	a.call(t, "session/new", map[string]any{"cwd": cwd, "mcpServers": []any{
		map[string]any{"name": "weather", "command": filepath.Join(bin, "mcpserver"), "args": []any{}, "env": []any{}},
	}}, &s)
	a.reset()
	a.call(t, "session/prompt", map[string]any{"sessionId": s.SessionID, "prompt": []any{map[string]any{"type": "text", "text": "What's the weather in Paris?"}}})
	t.Logf("weather turn: tool calls %q, answer %q", a.toolTitles(), a.text())
	if !strings.Contains(strings.Join(a.toolTitles(), " "), "get_weather") {
		t.Fatalf("the model did not call the weather tool: %q", a.text())
	}
	if a.permissions() != 1 {
		t.Errorf("asked %d times for the MCP tool, want 1", a.permissions())
	}
	if !strings.Contains(strings.ToLower(a.text()), "sunny") && !strings.Contains(a.text(), "21") {
		t.Errorf("the answer does not use the tool's result: %q", a.text())
	}
}

// acpProc is a minimal ACP client over a cortex-acp process's pipes.
type acpProc struct {
	in     io.WriteCloser
	mu     sync.Mutex
	id     int
	wait   map[int]chan json.RawMessage
	chunks strings.Builder
	titles []string
	asked  int
}

func startACP(t *testing.T, bin, cfg, dir string) *acpProc {
	cmd := exec.Command(bin, "--config", cfg)
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(dir, "data"))
	cmd.Stderr = os.Stderr
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &acpProc{in: in, wait: map[int]chan json.RawMessage{}}
	t.Cleanup(func() {
		_ = in.Close()
		_ = cmd.Wait()
	})
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			var m struct {
				ID     *int            `json:"id"`
				Method string          `json:"method"`
				Params json.RawMessage `json:"params"`
				Result json.RawMessage `json:"result"`
				Error  json.RawMessage `json:"error"`
			}
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Errorf("non-protocol output: %q", sc.Text())
				continue
			}
			switch {
			case m.Method == "session/update":
				var u struct {
					Update struct {
						Kind    string `json:"sessionUpdate"`
						Title   string `json:"title"`
						Content struct {
							Text string `json:"text"`
						} `json:"content"`
					} `json:"update"`
				}
				_ = json.Unmarshal(m.Params, &u)
				a.mu.Lock()
				switch u.Update.Kind {
				case "agent_message_chunk":
					a.chunks.WriteString(u.Update.Content.Text)
				case "tool_call":
					a.titles = append(a.titles, u.Update.Title)
				}
				a.mu.Unlock()
			case m.Method == "session/request_permission" && m.ID != nil:
				a.mu.Lock()
				a.asked++
				a.mu.Unlock()
				a.send(map[string]any{"jsonrpc": "2.0", "id": *m.ID, "result": map[string]any{"outcome": map[string]any{"outcome": "selected", "optionId": "allow_once"}}})
			case m.Method == "" && m.ID != nil:
				if len(m.Error) > 0 {
					m.Result = m.Error
				}
				a.mu.Lock()
				ch := a.wait[*m.ID]
				a.mu.Unlock()
				if ch != nil {
					ch <- m.Result
				}
			}
		}
	}()
	return a
}

func (a *acpProc) send(v any) {
	b, _ := json.Marshal(v)
	a.mu.Lock()
	defer a.mu.Unlock()
	_, _ = a.in.Write(append(b, '\n'))
}

func (a *acpProc) call(t *testing.T, method string, params any, out ...any) {
	t.Helper()
	a.mu.Lock()
	a.id++
	id := a.id
	ch := make(chan json.RawMessage, 1)
	a.wait[id] = ch
	a.mu.Unlock()
	a.send(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
	select {
	case res := <-ch:
		if strings.Contains(string(res), `"code"`) && strings.Contains(string(res), `"message"`) && !strings.Contains(string(res), "stopReason") {
			t.Fatalf("%s: %s", method, res)
		}
		if len(out) > 0 {
			if err := json.Unmarshal(res, out[0]); err != nil {
				t.Fatalf("%s: %v", method, err)
			}
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("%s: no answer", method)
	}
}

func (a *acpProc) reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.chunks.Reset()
	a.titles, a.asked = nil, 0
}

func (a *acpProc) text() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.chunks.String()
}

func (a *acpProc) toolTitles() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.titles...)
}

func (a *acpProc) permissions() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.asked
}
