package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	sdk "github.com/coder/acp-go-sdk"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/helexa-ai/cortex/internal/acp/jsonrpc"
	"github.com/helexa-ai/cortex/internal/acp/llm"
)

// mcpSpec is one MCP server from session/new: stdio (command) or HTTP
// (url).
type mcpSpec struct {
	Type    string `json:"type"`
	Name    string `json:"name"`
	Command string `json:"command"`
	Args    []string
	Env     []struct{ Name, Value string }
	URL     string `json:"url"`
	Headers []struct{ Name, Value string }
}

func parseMCPServers(raw json.RawMessage) ([]mcpSpec, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var list []struct {
		Type    string   `json:"type"`
		Name    string   `json:"name"`
		Command string   `json:"command"`
		Args    []string `json:"args"`
		Env     []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"env"`
		URL     string `json:"url"`
		Headers []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"headers"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, jsonrpc.Errorf(jsonrpc.CodeInvalidParams, "invalid params: mcpServers: %v", err)
	}
	var out []mcpSpec
	for i, l := range list {
		sp := mcpSpec{Type: l.Type, Name: l.Name, Command: l.Command, Args: l.Args, URL: l.URL}
		for _, e := range l.Env {
			sp.Env = append(sp.Env, struct{ Name, Value string }{e.Name, e.Value})
		}
		for _, h := range l.Headers {
			sp.Headers = append(sp.Headers, struct{ Name, Value string }{h.Name, h.Value})
		}
		if sp.Type == "" {
			sp.Type = "stdio"
		}
		switch {
		case sp.Name == "":
			return nil, jsonrpc.Errorf(jsonrpc.CodeInvalidParams, "invalid params: mcpServers[%d]: name is required", i)
		case sp.Type == "stdio" && sp.Command == "":
			return nil, jsonrpc.Errorf(jsonrpc.CodeInvalidParams, "invalid params: mcpServers[%d] (%s): command is required", i, sp.Name)
		case (sp.Type == "http" || sp.Type == "sse") && sp.URL == "":
			return nil, jsonrpc.Errorf(jsonrpc.CodeInvalidParams, "invalid params: mcpServers[%d] (%s): url is required", i, sp.Name)
		}
		out = append(out, sp)
	}
	return out, nil
}

// mcpServer is a connected MCP server and the tools it offers.
type mcpServer struct {
	name    string
	session *mcp.ClientSession
	tools   []llm.Tool
	// remote maps our tool name to the server's, and notes read-only ones.
	remote   map[string]string
	readOnly map[string]bool
}

// toolName is how an MCP tool is offered to the model.
func toolName(server, tool string) string {
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r == '_' || r == '-' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') {
				return r
			}
			return '_'
		}, s)
	}
	return "mcp__" + clean(server) + "__" + clean(tool)
}

type headerTransport struct {
	headers []struct{ Name, Value string }
	base    http.RoundTripper
}

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for _, x := range h.headers {
		r.Header.Set(x.Name, x.Value)
	}
	return h.base.RoundTrip(r)
}

// startMCP connects the servers; one that fails is reported to the user
// and skipped, so a broken server never blocks the session.
func (s *Session) startMCP(ctx context.Context, specs []mcpSpec) {
	for _, sp := range specs {
		m, err := s.a.connectMCP(ctx, sp, s.toolTaken)
		if err != nil {
			s.a.log.Warn("MCP server unavailable", "server", sp.Name, "error", err)
			s.mu.Lock()
			s.mcpFailed = append(s.mcpFailed, fmt.Sprintf("%s: %v", sp.Name, err))
			s.mu.Unlock()
			continue
		}
		s.mu.Lock()
		s.mcp = append(s.mcp, m)
		s.mu.Unlock()
	}
}

// toolTaken reports whether a tool name is already offered.
func (s *Session) toolTaken(name string) bool { return slices.Contains(s.toolNames(), name) }

func (a *Agent) connectMCP(ctx context.Context, sp mcpSpec, taken func(string) bool) (*mcpServer, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var t mcp.Transport
	switch sp.Type {
	case "stdio":
		cmd := exec.Command(sp.Command, sp.Args...)
		cmd.Env = os.Environ()
		for _, e := range sp.Env {
			cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
		}
		// The server's stderr is diagnostics; stdout is its protocol and
		// must never reach ours.
		cmd.Stderr = os.Stderr
		t = &mcp.CommandTransport{Command: cmd, TerminateDuration: 2 * time.Second}
	case "http":
		t = &mcp.StreamableClientTransport{Endpoint: sp.URL, DisableStandaloneSSE: true,
			HTTPClient: &http.Client{Transport: headerTransport{sp.Headers, http.DefaultTransport}}}
	default:
		return nil, fmt.Errorf("transport %q is not supported (stdio and http are)", sp.Type)
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "cortex-acp", Version: a.version}, nil)
	cs, err := client.Connect(ctx, t, nil)
	if err != nil {
		return nil, fmt.Errorf("connecting: %w", err)
	}
	m := &mcpServer{name: sp.Name, session: cs, remote: map[string]string{}, readOnly: map[string]bool{}}
	for tool, err := range cs.Tools(ctx, nil) {
		if err != nil {
			_ = cs.Close()
			return nil, fmt.Errorf("listing tools: %w", err)
		}
		name := toolName(sp.Name, tool.Name)
		if short := toolName("", tool.Name)[len("mcp____"):]; a.cfg.MCPShortNames && short == tool.Name && !taken(short) && m.remote[short] == "" {
			name = short
		}
		schema, _ := json.Marshal(tool.InputSchema)
		if len(schema) == 0 || string(schema) == "null" {
			schema = []byte(`{"type":"object"}`)
		}
		m.tools = append(m.tools, llm.Tool{Name: name, Description: tool.Description, Schema: schema})
		m.remote[name] = tool.Name
		m.readOnly[name] = tool.Annotations != nil && tool.Annotations.ReadOnlyHint
	}
	return m, nil
}

func (m *mcpServer) close() { _ = m.session.Close() }

func (s *Session) mcpTool(name string) *mcpServer {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.mcp {
		if _, ok := m.remote[name]; ok {
			return m
		}
	}
	return nil
}

func (m *mcpServer) describe(s *Session, r *toolRun) description {
	remote := m.remote[r.call.Name]
	class := classMCP
	if m.readOnly[r.call.Name] {
		class = classRead
	}
	d := description{title: m.name + ": " + remote, kind: sdk.ToolKindOther, class: class,
		key: r.call.Name, what: "`" + remote + "` from " + m.name}
	d.run = func(ctx context.Context) toolResult {
		res, err := m.session.CallTool(ctx, &mcp.CallToolParams{Name: remote, Arguments: r.args})
		if err != nil {
			return failed("MCP %s/%s: %v", m.name, remote, err)
		}
		var b strings.Builder
		for _, c := range res.Content {
			switch c := c.(type) {
			case *mcp.TextContent:
				b.WriteString(c.Text)
			default:
				if data, err := json.Marshal(c); err == nil {
					b.Write(data)
				}
			}
			b.WriteString("\n")
		}
		if b.Len() == 0 && res.StructuredContent != nil {
			data, _ := json.Marshal(res.StructuredContent)
			b.Write(data)
		}
		return toolResult{text: strings.TrimRight(b.String(), "\n"), isError: res.IsError}
	}
	return d
}
