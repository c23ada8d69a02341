// Package agent is cortex-acp: a coding agent for editors speaking the
// Agent Client Protocol over stdio. It keeps sessions (persisted, listed,
// loaded with a full replay, resumed), runs prompt turns against an
// upstream model with native tool calling, asks the editor before writes
// and commands as the session's mode says, uses the editor's file system
// and terminals when it offers them, and exposes MCP servers' tools.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"

	sdk "github.com/coder/acp-go-sdk"

	"github.com/helexa-ai/cortex/internal/acp/config"
	"github.com/helexa-ai/cortex/internal/acp/jsonrpc"
	"github.com/helexa-ai/cortex/internal/acp/llm"
)

// ProtocolVersion is the ACP version spoken.
const ProtocolVersion = 1

// Options configure one agent.
type Options struct {
	Config *config.Config
	// In and Out are the protocol stream (stdin and stdout).
	In  io.Reader
	Out io.Writer
	// Log receives diagnostics; it must not write to Out.
	Log     *slog.Logger
	Version string
	// HTTPClient calls the upstreams (default: a plain client).
	HTTPClient *http.Client
}

// Agent serves one client connection.
type Agent struct {
	cfg     *config.Config
	log     *slog.Logger
	version string
	conn    *jsonrpc.Conn
	store   *Store
	perms   *permStore
	clients map[string]llm.Client
	models  *modelCache

	mu       sync.Mutex
	caps     sdk.ClientCapabilities
	sessions map[string]*Session
}

// Run serves the protocol on o.In/o.Out until the client closes the stream
// or ctx ends.
func Run(ctx context.Context, o Options) error {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	dataDir, err := DataDir(o.Config)
	if err != nil {
		return err
	}
	a := &Agent{
		cfg:      o.Config,
		log:      o.Log,
		version:  o.Version,
		store:    &Store{Dir: dataDir + "/sessions"},
		perms:    &permStore{Dir: dataDir + "/permissions"},
		clients:  map[string]llm.Client{},
		sessions: map[string]*Session{},
	}
	for _, ep := range o.Config.Endpoints {
		a.clients[ep.Name] = llm.New(ep, hc)
	}
	a.models = newModelCache(a)
	if o.Config.Tools != nil {
		for _, name := range *o.Config.Tools {
			if !slices.ContainsFunc(builtinTools, func(t llm.Tool) bool { return t.Name == name }) {
				return fmt.Errorf("config: tools: unknown tool %q", name)
			}
		}
	}
	a.conn = jsonrpc.NewConn(o.In, o.Out, a.handle, o.Log)
	err = a.conn.Serve(ctx)
	a.shutdown()
	return err
}

func (a *Agent) shutdown() {
	a.mu.Lock()
	ss := make([]*Session, 0, len(a.sessions))
	for _, s := range a.sessions {
		ss = append(ss, s)
	}
	a.mu.Unlock()
	for _, s := range ss {
		s.close()
	}
}

func invalidParams(err error) error {
	return jsonrpc.Errorf(jsonrpc.CodeInvalidParams, "invalid params: %v", err)
}

func decode(params json.RawMessage, v any) error {
	if len(params) == 0 {
		params = json.RawMessage("{}")
	}
	if err := json.Unmarshal(params, v); err != nil {
		return invalidParams(err)
	}
	if val, ok := v.(interface{ Validate() error }); ok {
		if err := val.Validate(); err != nil {
			return invalidParams(err)
		}
	}
	return nil
}

func (a *Agent) handle(ctx context.Context, method string, params json.RawMessage) (any, error) {
	switch method {
	case sdk.AgentMethodInitialize:
		return a.initialize(params)
	case sdk.AgentMethodAuthenticate:
		return sdk.AuthenticateResponse{}, nil
	case sdk.AgentMethodSessionNew:
		return a.newSession(ctx, params)
	case sdk.AgentMethodSessionLoad:
		return a.loadSession(ctx, params, true)
	case sdk.AgentMethodSessionResume:
		return a.loadSession(ctx, params, false)
	case sdk.AgentMethodSessionList:
		return a.listSessions(params)
	case sdk.AgentMethodSessionClose:
		return a.closeSession(params)
	case sdk.AgentMethodSessionPrompt:
		return a.prompt(ctx, params)
	case sdk.AgentMethodSessionCancel:
		var p sdk.CancelNotification
		if err := decode(params, &p); err != nil {
			return nil, err
		}
		if s := a.session(string(p.SessionId)); s != nil {
			s.cancelTurn()
		}
		return nil, nil
	case sdk.AgentMethodSessionSetMode:
		var p sdk.SetSessionModeRequest
		if err := decode(params, &p); err != nil {
			return nil, err
		}
		s, err := a.mustSession(string(p.SessionId))
		if err != nil {
			return nil, err
		}
		if err := a.setOption(s, "mode", string(p.ModeId)); err != nil {
			return nil, err
		}
		return sdk.SetSessionModeResponse{}, nil
	case sdk.AgentMethodSessionSetConfigOption:
		var p struct {
			SessionID string `json:"sessionId"`
			ConfigID  string `json:"configId"`
			Value     any    `json:"value"`
		}
		if err := decode(params, &p); err != nil {
			return nil, err
		}
		s, err := a.mustSession(p.SessionID)
		if err != nil {
			return nil, err
		}
		v, ok := p.Value.(string)
		if !ok {
			return nil, jsonrpc.Errorf(jsonrpc.CodeInvalidParams, "invalid params: value of %q must be a string", p.ConfigID)
		}
		if err := a.setOption(s, p.ConfigID, v); err != nil {
			return nil, err
		}
		return sdk.SetSessionConfigOptionResponse{ConfigOptions: a.configOptions(s)}, nil
	}
	return nil, jsonrpc.ErrMethodNotFound(method)
}

func (a *Agent) initialize(params json.RawMessage) (any, error) {
	var p sdk.InitializeRequest
	if err := decode(params, &p); err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.caps = p.ClientCapabilities
	a.mu.Unlock()
	v := min(int(p.ProtocolVersion), ProtocolVersion)
	if v < 1 {
		v = ProtocolVersion
	}
	title := "cortex"
	return sdk.InitializeResponse{
		ProtocolVersion: sdk.ProtocolVersion(v),
		AgentInfo:       &sdk.Implementation{Name: "cortex-acp", Title: &title, Version: a.version},
		AgentCapabilities: sdk.AgentCapabilities{
			LoadSession:        true,
			PromptCapabilities: sdk.PromptCapabilities{Image: true, EmbeddedContext: true},
			McpCapabilities:    sdk.McpCapabilities{Http: true},
			SessionCapabilities: sdk.SessionCapabilities{
				List:   &sdk.SessionListCapabilities{},
				Resume: &sdk.SessionResumeCapabilities{},
				Close:  &sdk.SessionCloseCapabilities{},
			},
		},
		AuthMethods: []sdk.AuthMethod{},
	}, nil
}

func (a *Agent) clientCaps() sdk.ClientCapabilities {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.caps
}

func (a *Agent) session(id string) *Session {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sessions[id]
}

func (a *Agent) mustSession(id string) (*Session, error) {
	if s := a.session(id); s != nil {
		return s, nil
	}
	return nil, jsonrpc.Errorf(jsonrpc.CodeInvalidParams, "invalid params: no open session %q (use session/load or session/resume)", id)
}

// sessionSetup is what session/new, load and resume share.
type sessionSetup struct {
	Cwd        string          `json:"cwd"`
	Dirs       []string        `json:"additionalDirectories"`
	McpServers json.RawMessage `json:"mcpServers"`
}

// check validates the setup common to new, loaded and resumed sessions and
// returns its MCP servers.
func (p sessionSetup) check() ([]mcpSpec, error) {
	if err := checkCwd(p.Cwd, p.Dirs); err != nil {
		return nil, err
	}
	return parseMCPServers(p.McpServers)
}

func (a *Agent) newSession(ctx context.Context, params json.RawMessage) (any, error) {
	var p sessionSetup
	if err := decode(params, &p); err != nil {
		return nil, err
	}
	servers, err := p.check()
	if err != nil {
		return nil, err
	}
	return jsonrpc.Async(func() (any, error) {
		s := newSession(a, newSessionID(), p.Cwd, p.Dirs)
		if err := a.store.Save(s.snapshot()); err != nil {
			return nil, fmt.Errorf("saving the session: %w", err)
		}
		s.startMCP(ctx, servers)
		a.open(s)
		return jsonrpc.Then{Result: sdk.NewSessionResponse{
			SessionId:     sdk.SessionId(s.ID),
			Modes:         modeState(s.mode()),
			ConfigOptions: a.configOptions(s),
		}, After: func() { a.announce(s) }}, nil
	}), nil
}

func (a *Agent) open(s *Session) {
	a.mu.Lock()
	old := a.sessions[s.ID]
	a.sessions[s.ID] = s
	a.mu.Unlock()
	if old != nil && old != s {
		old.close()
	}
}

// announce tells the client what the session offers beyond the answer,
// and starts the background fetch of the model lists (whose result is an
// update about the session, so it must follow the answer too).
func (a *Agent) announce(s *Session) {
	a.models.refresh()
	s.notify(sdk.SessionUpdate{AvailableCommandsUpdate: &sdk.SessionAvailableCommandsUpdate{AvailableCommands: commandList()}})
}

func (a *Agent) loadSession(ctx context.Context, params json.RawMessage, replay bool) (any, error) {
	var p struct {
		sessionSetup
		SessionID string `json:"sessionId"`
	}
	if err := decode(params, &p); err != nil {
		return nil, err
	}
	if p.SessionID == "" {
		return nil, jsonrpc.Errorf(jsonrpc.CodeInvalidParams, "invalid params: sessionId is required")
	}
	servers, err := p.check()
	if err != nil {
		return nil, err
	}
	return jsonrpc.Async(func() (any, error) {
		rec, err := a.store.Load(p.SessionID)
		if err != nil {
			return nil, err
		}
		if cur := a.session(p.SessionID); cur != nil {
			cur.cancelTurn()
			cur.waitTurn()
		}
		s := restoreSession(a, rec)
		s.Cwd = p.Cwd
		if len(p.Dirs) > 0 {
			s.Dirs = p.Dirs
		}
		s.startMCP(ctx, servers)
		a.open(s)
		if replay {
			s.replay()
		}
		modes, opts := modeState(s.mode()), a.configOptions(s)
		after := func() { a.announce(s) }
		if replay {
			return jsonrpc.Then{Result: sdk.LoadSessionResponse{Modes: modes, ConfigOptions: opts}, After: after}, nil
		}
		return jsonrpc.Then{Result: sdk.ResumeSessionResponse{Modes: modes, ConfigOptions: opts}, After: after}, nil
	}), nil
}

const listPageSize = 50

func (a *Agent) listSessions(params json.RawMessage) (any, error) {
	var p sdk.ListSessionsRequest
	if err := decode(params, &p); err != nil {
		return nil, err
	}
	recs, err := a.store.List()
	if err != nil {
		return nil, err
	}
	if p.Cwd != nil && *p.Cwd != "" {
		kept := recs[:0]
		for _, r := range recs {
			if r.Cwd == *p.Cwd {
				kept = append(kept, r)
			}
		}
		recs = kept
	}
	sort.SliceStable(recs, func(i, j int) bool {
		if !recs[i].Updated.Equal(recs[j].Updated) {
			return recs[i].Updated.After(recs[j].Updated)
		}
		return recs[i].ID < recs[j].ID
	})
	start := 0
	if p.Cursor != nil && *p.Cursor != "" {
		// The cursor is the id of the last session of the previous page,
		// so a page stays right when sessions are added meanwhile.
		start = -1
		for i, r := range recs {
			if r.ID == *p.Cursor {
				start = i + 1
			}
		}
		if start < 0 {
			return nil, jsonrpc.Errorf(jsonrpc.CodeInvalidParams, "invalid params: unknown cursor %q", *p.Cursor)
		}
	}
	out := sdk.ListSessionsResponse{Sessions: []sdk.SessionInfo{}}
	end := min(start+listPageSize, len(recs))
	for _, r := range recs[start:end] {
		info := sdk.SessionInfo{SessionId: sdk.SessionId(r.ID), Cwd: r.Cwd, AdditionalDirectories: r.Dirs}
		if r.Title != "" {
			info.Title = sdk.Ptr(r.Title)
		}
		info.UpdatedAt = sdk.Ptr(r.Updated.UTC().Format(timeFormat))
		out.Sessions = append(out.Sessions, info)
	}
	if end < len(recs) {
		out.NextCursor = sdk.Ptr(recs[end-1].ID)
	}
	return out, nil
}

func (a *Agent) closeSession(params json.RawMessage) (any, error) {
	var p sdk.CloseSessionRequest
	if err := decode(params, &p); err != nil {
		return nil, err
	}
	s, err := a.mustSession(string(p.SessionId))
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	delete(a.sessions, s.ID)
	a.mu.Unlock()
	return jsonrpc.Async(func() (any, error) {
		s.close()
		return sdk.CloseSessionResponse{}, nil
	}), nil
}

func (a *Agent) prompt(ctx context.Context, params json.RawMessage) (any, error) {
	var p sdk.PromptRequest
	if err := decode(params, &p); err != nil {
		return nil, err
	}
	s, err := a.mustSession(string(p.SessionId))
	if err != nil {
		return nil, err
	}
	// Registered here, in order with the messages around it: a cancel read
	// after this prompt cancels this turn, and this prompt cancels the one
	// before it.
	t := s.beginTurn(ctx)
	return jsonrpc.Async(func() (any, error) {
		defer s.endTurn(t)
		t.waitPrevious()
		stop, err := s.runTurn(t.ctx, p.Prompt)
		if t.ctx.Err() != nil {
			stop, err = sdk.StopReasonCancelled, nil
		}
		if err != nil {
			return nil, err
		}
		return sdk.PromptResponse{StopReason: stop}, nil
	}), nil
}

// setOption changes one of the session's settings and tells the client.
func (a *Agent) setOption(s *Session, id, value string) error {
	switch id {
	case "mode":
		if !validMode(value) {
			return jsonrpc.Errorf(jsonrpc.CodeInvalidParams, "invalid params: unknown mode %q (want %s)", value, strings.Join(modeIDs(), ", "))
		}
		s.setMode(value)
		s.notify(sdk.SessionUpdate{CurrentModeUpdate: &sdk.SessionCurrentModeUpdate{CurrentModeId: sdk.SessionModeId(value)}})
	case "model":
		ep, model, err := a.parseModel(value)
		if err != nil {
			return jsonrpc.Errorf(jsonrpc.CodeInvalidParams, "invalid params: %v", err)
		}
		s.setModel(ep, model)
	case "thought_level":
		if !validEffort(value) {
			return jsonrpc.Errorf(jsonrpc.CodeInvalidParams, "invalid params: unknown thought level %q (want off, low, medium or high)", value)
		}
		s.setEffort(value)
	default:
		return jsonrpc.Errorf(jsonrpc.CodeInvalidParams, "invalid params: unknown config option %q", id)
	}
	s.save()
	s.notify(sdk.SessionUpdate{ConfigOptionUpdate: &sdk.SessionConfigOptionUpdate{ConfigOptions: a.configOptions(s)}})
	return nil
}

// parseModel reads a selector: `endpoint:model`, `endpoint:` or a bare
// model (on the default endpoint).
func (a *Agent) parseModel(sel string) (endpoint, model string, err error) {
	sel = strings.TrimSpace(sel)
	if sel == "" {
		return "", "", errors.New("empty model selector")
	}
	if i := strings.Index(sel, ":"); i >= 0 {
		if ep, ok := a.cfg.Endpoint(sel[:i]); ok {
			model = sel[i+1:]
			if model == "" {
				model = ep.DefaultModel
			}
			return ep.Name, model, nil
		}
	}
	return a.cfg.DefaultEndpoint, sel, nil
}
