package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	sdk "github.com/coder/acp-go-sdk"

	"github.com/helexa-ai/cortex/internal/acp/config"
	"github.com/helexa-ai/cortex/internal/acp/jsonrpc"
	"github.com/helexa-ai/cortex/internal/acp/llm"
)

const timeFormat = time.RFC3339

// Record is a session as saved on disk.
type Record struct {
	ID       string        `json:"id"`
	Cwd      string        `json:"cwd"`
	Dirs     []string      `json:"additionalDirectories,omitempty"`
	Title    string        `json:"title,omitempty"`
	Created  time.Time     `json:"created"`
	Updated  time.Time     `json:"updated"`
	Mode     string        `json:"mode"`
	Endpoint string        `json:"endpoint"`
	Model    string        `json:"model"`
	Effort   string        `json:"effort,omitempty"`
	NextCall int           `json:"nextCall"`
	Usage    llm.Usage     `json:"usage"`
	Context  int           `json:"contextTokens,omitempty"`
	Allow    []string      `json:"allow,omitempty"`
	Deny     []string      `json:"deny,omitempty"`
	History  []llm.Message `json:"history"`
}

// Store keeps sessions as one JSON file each, written atomically.
type Store struct{ Dir string }

// DataDir is where sessions and permissions live.
func DataDir(c *config.Config) (string, error) {
	if c.DataDir != "" {
		return c.DataDir, nil
	}
	dir := os.Getenv("XDG_DATA_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("finding the data directory: %w", err)
		}
		dir = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(dir, "cortex-acp"), nil
}

func validID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, r := range id {
		if r != '-' && r != '_' && (r < '0' || r > '9') && (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') {
			return false
		}
	}
	return true
}

func (st *Store) path(id string) string { return filepath.Join(st.Dir, id+".json") }

// Save writes r atomically (temporary file, then rename).
func (st *Store) Save(r *Record) error {
	return writeJSONAtomic(st.path(r.ID), r)
}

func writeJSONAtomic(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if werr != nil || cerr != nil {
		_ = os.Remove(f.Name())
		return errors.Join(werr, cerr)
	}
	return os.Rename(f.Name(), path)
}

// Load reads one session.
func (st *Store) Load(id string) (*Record, error) {
	if !validID(id) {
		return nil, jsonrpc.Errorf(jsonrpc.CodeInvalidParams, "invalid params: bad session id %q", id)
	}
	data, err := os.ReadFile(st.path(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, &jsonrpc.Error{Code: -32002, Message: fmt.Sprintf("resource not found: no saved session %q", id)}
	}
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("reading session %s: %w", id, err)
	}
	return &r, nil
}

// List reads every saved session (history included; sessions are small
// next to a model call, and the list is read only when asked for).
func (st *Store) List() ([]*Record, error) {
	entries, err := os.ReadDir(st.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*Record
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
			continue
		}
		r, err := st.Load(strings.TrimSuffix(name, ".json"))
		if err != nil {
			continue
		}
		r.History = nil
		out = append(out, r)
	}
	return out, nil
}

func newSessionID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "sess_" + hex.EncodeToString(b[:])
}

// Session is an open session.
type Session struct {
	a  *Agent
	ID string
	// Cwd and Dirs bound the paths tools may touch.
	Cwd  string
	Dirs []string

	mu  sync.Mutex
	rec Record
	// allow and deny are "always" answers: class:key.
	turn *turn
	mcp  []*mcpServer
	// mcpFailed says which MCP servers could not be used, for /status.
	mcpFailed []string
}

func newSession(a *Agent, id, cwd string, dirs []string) *Session {
	now := time.Now()
	ep, _ := a.cfg.Endpoint(a.cfg.DefaultEndpoint)
	return &Session{a: a, ID: id, Cwd: cwd, Dirs: dirs, rec: Record{
		ID: id, Cwd: cwd, Dirs: dirs, Created: now, Updated: now, Mode: ModeDefault,
		Endpoint: ep.Name, Model: ep.DefaultModel, History: []llm.Message{},
	}}
}

func restoreSession(a *Agent, r *Record) *Session {
	if _, ok := a.cfg.Endpoint(r.Endpoint); !ok {
		ep, _ := a.cfg.Endpoint(a.cfg.DefaultEndpoint)
		r.Endpoint, r.Model = ep.Name, ep.DefaultModel
	}
	if !validMode(r.Mode) {
		r.Mode = ModeDefault
	}
	return &Session{a: a, ID: r.ID, Cwd: r.Cwd, Dirs: r.Dirs, rec: *r}
}

func (s *Session) snapshot() *Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rec
	r.Cwd, r.Dirs = s.Cwd, s.Dirs
	r.History = append([]llm.Message(nil), s.rec.History...)
	r.Allow = append([]string(nil), s.rec.Allow...)
	r.Deny = append([]string(nil), s.rec.Deny...)
	return &r
}

func (s *Session) save() {
	s.mu.Lock()
	s.rec.Updated = time.Now()
	s.mu.Unlock()
	if err := s.a.store.Save(s.snapshot()); err != nil {
		s.a.log.Error("Saving a session", "session", s.ID, "error", err)
	}
}

func (s *Session) mode() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rec.Mode
}

func (s *Session) setMode(m string) {
	s.mu.Lock()
	s.rec.Mode = m
	s.mu.Unlock()
}

func (s *Session) model() (endpoint, model string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rec.Endpoint, s.rec.Model
}

func (s *Session) setModel(ep, model string) {
	s.mu.Lock()
	s.rec.Endpoint, s.rec.Model = ep, model
	s.mu.Unlock()
}

func (s *Session) effort() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rec.Effort
}

func (s *Session) setEffort(e string) {
	if e == "off" {
		e = ""
	}
	s.mu.Lock()
	s.rec.Effort = e
	s.mu.Unlock()
}

func (s *Session) history() []llm.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]llm.Message(nil), s.rec.History...)
}

func (s *Session) appendHistory(ms ...llm.Message) {
	s.mu.Lock()
	s.rec.History = append(s.rec.History, ms...)
	s.mu.Unlock()
}

// nextCallID numbers tool calls for the client; the counter is saved, so
// ids stay unique across restarts.
func (s *Session) nextCallID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rec.NextCall++
	return fmt.Sprintf("call_%d", s.rec.NextCall)
}

// notify sends one session/update.
func (s *Session) notify(u sdk.SessionUpdate) {
	err := s.a.conn.Notify(sdk.ClientMethodSessionUpdate, sdk.SessionNotification{SessionId: sdk.SessionId(s.ID), Update: u})
	if err != nil {
		s.a.log.Warn("Sending an update", "session", s.ID, "error", err)
	}
}

func (s *Session) say(text string) {
	s.notify(sdk.UpdateAgentMessageText(text))
}

// replay sends the whole history as updates, for session/load.
func (s *Session) replay() {
	for _, m := range s.history() {
		switch m.Role {
		case llm.RoleUser:
			for _, p := range m.Content {
				if p.Type == "image" {
					s.notify(sdk.UpdateUserMessage(sdk.ImageBlock(p.Data, p.MimeType)))
				} else if p.Text != "" {
					s.notify(sdk.UpdateUserMessageText(p.Text))
				}
			}
		case llm.RoleAssistant:
			if m.Reasoning != "" {
				s.notify(sdk.UpdateAgentThoughtText(m.Reasoning))
			}
			if t := m.Text(); t != "" {
				s.notify(sdk.UpdateAgentMessageText(t))
			}
		case llm.RoleTool:
			if len(m.Display) == 0 {
				continue
			}
			var tc sdk.SessionUpdateToolCall
			if json.Unmarshal(m.Display, &tc) == nil {
				s.notify(sdk.SessionUpdate{ToolCall: &tc})
			}
		}
	}
	s.mu.Lock()
	title := s.rec.Title
	s.mu.Unlock()
	if title != "" {
		s.notify(sdk.SessionUpdate{SessionInfoUpdate: &sdk.SessionSessionInfoUpdate{Title: &title}})
	}
}

// turn is one prompt in progress.
type turn struct {
	ctx    context.Context
	cancel context.CancelFunc
	prev   *turn
	done   chan struct{}
}

func (t *turn) waitPrevious() {
	if t.prev != nil {
		<-t.prev.done
	}
}

// beginTurn registers a new turn, cancelling the one in progress.
func (s *Session) beginTurn(ctx context.Context) *turn {
	ctx, cancel := context.WithCancel(ctx)
	t := &turn{ctx: ctx, cancel: cancel, done: make(chan struct{})}
	s.mu.Lock()
	t.prev = s.turn
	s.turn = t
	s.mu.Unlock()
	if t.prev != nil {
		t.prev.cancel()
	}
	return t
}

func (s *Session) endTurn(t *turn) {
	s.mu.Lock()
	if s.turn == t {
		s.turn = nil
	}
	s.mu.Unlock()
	t.cancel()
	close(t.done)
}

func (s *Session) cancelTurn() {
	s.mu.Lock()
	t := s.turn
	s.mu.Unlock()
	if t != nil {
		t.cancel()
	}
}

func (s *Session) waitTurn() {
	s.mu.Lock()
	t := s.turn
	s.mu.Unlock()
	if t != nil {
		<-t.done
	}
}

// close ends the turn in progress and stops the session's MCP servers.
func (s *Session) close() {
	s.cancelTurn()
	s.waitTurn()
	s.mu.Lock()
	servers := s.mcp
	s.mcp = nil
	s.mu.Unlock()
	for _, m := range servers {
		m.close()
	}
}

func checkCwd(cwd string, dirs []string) error {
	if cwd == "" || !filepath.IsAbs(cwd) {
		return jsonrpc.Errorf(jsonrpc.CodeInvalidParams, "invalid params: cwd must be an absolute path, got %q", cwd)
	}
	for _, d := range dirs {
		if !filepath.IsAbs(d) {
			return jsonrpc.Errorf(jsonrpc.CodeInvalidParams, "invalid params: additionalDirectories must be absolute, got %q", d)
		}
	}
	return nil
}
