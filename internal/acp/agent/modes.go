package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	sdk "github.com/coder/acp-go-sdk"
)

// Session modes.
const (
	ModeDefault = "default"
	ModeAccept  = "acceptEdits"
	ModePlan    = "plan"
	ModeBypass  = "bypassPermissions"
)

var modes = []sdk.SessionMode{
	{Id: ModeDefault, Name: "Default", Description: sdk.Ptr("Ask before editing files and before running commands")},
	{Id: ModeAccept, Name: "Accept edits", Description: sdk.Ptr("Edit files in the workspace without asking; ask before commands")},
	{Id: ModePlan, Name: "Plan", Description: sdk.Ptr("Read and plan only: no edits outside .cortex/plans, no commands")},
	{Id: ModeBypass, Name: "Bypass permissions", Description: sdk.Ptr("Do everything without asking")},
}

// PlanDir is where plan mode may still write, relative to the cwd.
const PlanDir = ".cortex/plans"

func validMode(m string) bool {
	for _, x := range modes {
		if string(x.Id) == m {
			return true
		}
	}
	return false
}

func modeIDs() []string {
	var ids []string
	for _, m := range modes {
		ids = append(ids, string(m.Id))
	}
	return ids
}

func modeState(cur string) *sdk.SessionModeState {
	return &sdk.SessionModeState{CurrentModeId: sdk.SessionModeId(cur), AvailableModes: modes}
}

var efforts = []string{"off", "low", "medium", "high"}

func validEffort(e string) bool { return slices.Contains(efforts, e) }

func selectOption(id, name string, cat sdk.SessionConfigOptionCategory, cur string, opts []sdk.SessionConfigSelectOption) sdk.SessionConfigOption {
	o := sdk.SessionConfigSelectOptionsUngrouped(opts)
	return sdk.SessionConfigOption{Select: &sdk.SessionConfigOptionSelect{
		Id: sdk.SessionConfigId(id), Name: name, Category: &cat, Type: "select",
		CurrentValue: sdk.SessionConfigValueId(cur),
		Options:      sdk.SessionConfigSelectOptions{Ungrouped: &o},
	}}
}

// configOptions are the session's selectors: mode, model, thought level.
func (a *Agent) configOptions(s *Session) []sdk.SessionConfigOption {
	var modeOpts []sdk.SessionConfigSelectOption
	for _, m := range modes {
		modeOpts = append(modeOpts, sdk.SessionConfigSelectOption{Value: sdk.SessionConfigValueId(m.Id), Name: m.Name, Description: m.Description})
	}
	ep, model := s.model()
	cur := ep + ":" + model
	var modelOpts []sdk.SessionConfigSelectOption
	seen := map[string]bool{}
	addModel := func(v string) {
		if !seen[v] {
			seen[v] = true
			modelOpts = append(modelOpts, sdk.SessionConfigSelectOption{Value: sdk.SessionConfigValueId(v), Name: v})
		}
	}
	addModel(cur)
	for _, e := range a.cfg.Endpoints {
		if e.DefaultModel != "" {
			addModel(e.Name + ":" + e.DefaultModel)
		}
		for _, m := range a.models.get(e.Name) {
			addModel(e.Name + ":" + m)
		}
	}
	var effortOpts []sdk.SessionConfigSelectOption
	for _, e := range efforts {
		effortOpts = append(effortOpts, sdk.SessionConfigSelectOption{Value: sdk.SessionConfigValueId(e), Name: e})
	}
	effort := s.effort()
	if effort == "" {
		effort = "off"
	}
	return []sdk.SessionConfigOption{
		selectOption("mode", "Mode", sdk.SessionConfigOptionCategory("mode"), s.mode(), modeOpts),
		selectOption("model", "Model", sdk.SessionConfigOptionCategory("model"), cur, modelOpts),
		selectOption("thought_level", "Thinking", sdk.SessionConfigOptionCategory("thought_level"), effort, effortOpts),
	}
}

// modelCache holds each endpoint's model list, fetched in the background
// with a short timeout so that nothing waits on a slow upstream.
type modelCache struct {
	a       *Agent
	mu      sync.Mutex
	lists   map[string][]string
	fetched map[string]time.Time
	running bool
}

func newModelCache(a *Agent) *modelCache {
	return &modelCache{a: a, lists: map[string][]string{}, fetched: map[string]time.Time{}}
}

func (m *modelCache) get(ep string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lists[ep]
}

// refresh fetches the lists not fetched in the last minute and, if one
// changed, sends every open session its new options.
func (m *modelCache) refresh() {
	m.mu.Lock()
	if m.running {
		m.mu.Unlock()
		return
	}
	m.running = true
	m.mu.Unlock()
	go func() {
		changed := false
		for name, c := range m.a.clients {
			m.mu.Lock()
			fresh := time.Since(m.fetched[name]) < time.Minute
			m.mu.Unlock()
			if fresh {
				continue
			}
			ids, err := c.Models(context.Background())
			m.mu.Lock()
			m.fetched[name] = time.Now()
			if err == nil {
				sort.Strings(ids)
				if !slices.Equal(ids, m.lists[name]) {
					m.lists[name] = ids
					changed = true
				}
			}
			m.mu.Unlock()
			if err != nil {
				m.a.log.Info("Listing models", "endpoint", name, "error", err)
			}
		}
		m.mu.Lock()
		m.running = false
		m.mu.Unlock()
		if changed {
			m.a.mu.Lock()
			var ss []*Session
			for _, s := range m.a.sessions {
				ss = append(ss, s)
			}
			m.a.mu.Unlock()
			for _, s := range ss {
				s.notify(sdk.SessionUpdate{ConfigOptionUpdate: &sdk.SessionConfigOptionUpdate{ConfigOptions: m.a.configOptions(s)}})
			}
		}
	}()
}

// Permission classes of tools.
const (
	classRead    = "read"
	classEdit    = "edit"
	classExecute = "execute"
	classMCP     = "mcp"
)

// permStore persists "always" answers per workspace.
type permStore struct {
	Dir string
	mu  sync.Mutex
}

type permFile struct {
	Cwd   string   `json:"cwd"`
	Allow []string `json:"allow"`
	Deny  []string `json:"deny"`
}

func (p *permStore) path(cwd string) string {
	h := sha256.Sum256([]byte(cwd))
	return filepath.Join(p.Dir, hex.EncodeToString(h[:8])+".json")
}

func (p *permStore) load(cwd string) permFile {
	p.mu.Lock()
	defer p.mu.Unlock()
	var f permFile
	data, err := os.ReadFile(p.path(cwd))
	if err == nil {
		_ = json.Unmarshal(data, &f)
	}
	return f
}

func (p *permStore) add(cwd, rule string, allow bool) error {
	f := p.load(cwd)
	p.mu.Lock()
	defer p.mu.Unlock()
	f.Cwd = cwd
	if allow {
		f.Allow = append(f.Allow, rule)
	} else {
		f.Deny = append(f.Deny, rule)
	}
	return writeJSONAtomic(p.path(cwd), f)
}

// errCancelled is returned when a turn's context ends while a tool waits.
var errCancelled = errors.New("cancelled")

// ruleKey is what an "always" answer remembers: the tool class plus the
// command's first word or the file's path.
func ruleKey(class, key string) string { return class + ":" + key }

// commandKey is what an "always" answer about a command remembers: its
// program (`go`, `git`) for a simple command; the exact text for one that
// chains, pipes, redirects or substitutes, since "always allow cd" must
// not come to mean "always allow cd x && rm -rf y".
func commandKey(cmd string) (key, what string) {
	cmd = strings.TrimSpace(cmd)
	if strings.ContainsAny(cmd, ";&|`$<>()\n") {
		return "=" + cmd, "this exact command"
	}
	f := strings.Fields(cmd)
	if len(f) == 0 {
		return "", ""
	}
	return f[0], "`" + f[0] + "` commands"
}

// decision is how a tool call may proceed.
type decision int

const (
	allowed decision = iota
	denied
	ask
)

// policy applies the mode and the remembered answers.
func (s *Session) policy(class, key, path string) (decision, string) {
	if class == classRead {
		return allowed, ""
	}
	mode := s.mode()
	switch mode {
	case ModeBypass:
		return allowed, ""
	case ModePlan:
		if class == classEdit && path != "" && inside(path, filepath.Join(s.Cwd, PlanDir)) {
			return allowed, ""
		}
		return denied, "plan mode is read-only (plans may be written under " + PlanDir + "); switch mode to act"
	case ModeAccept:
		if class == classEdit {
			return allowed, ""
		}
	}
	rule := ruleKey(class, key)
	s.mu.Lock()
	allow, deny := slices.Contains(s.rec.Allow, rule), slices.Contains(s.rec.Deny, rule)
	s.mu.Unlock()
	if !allow && !deny {
		f := s.a.perms.load(s.Cwd)
		allow, deny = slices.Contains(f.Allow, rule), slices.Contains(f.Deny, rule)
	}
	switch {
	case deny:
		return denied, "the user chose to always reject this"
	case allow:
		return allowed, ""
	}
	return ask, ""
}

// Permission option ids.
const (
	optAllowOnce    = "allow_once"
	optAllowAlways  = "allow_always"
	optRejectOnce   = "reject_once"
	optRejectAlways = "reject_always"
)

// requestPermission asks the client; it returns whether the call may run.
func (s *Session) requestPermission(ctx context.Context, class, key, what string, tc sdk.ToolCallUpdate) (bool, error) {
	req := sdk.RequestPermissionRequest{
		SessionId: sdk.SessionId(s.ID),
		ToolCall:  tc,
		Options: []sdk.PermissionOption{
			{OptionId: optAllowOnce, Name: "Allow", Kind: sdk.PermissionOptionKindAllowOnce},
			{OptionId: optAllowAlways, Name: "Always allow " + what, Kind: sdk.PermissionOptionKindAllowAlways},
			{OptionId: optRejectOnce, Name: "Reject", Kind: sdk.PermissionOptionKindRejectOnce},
			{OptionId: optRejectAlways, Name: "Always reject " + what, Kind: sdk.PermissionOptionKindRejectAlways},
		},
	}
	var resp struct {
		Outcome struct {
			Outcome  string `json:"outcome"`
			OptionID string `json:"optionId"`
		} `json:"outcome"`
	}
	if err := s.a.conn.Call(ctx, sdk.ClientMethodSessionRequestPermission, req, &resp); err != nil {
		if ctx.Err() != nil {
			return false, errCancelled
		}
		return false, err
	}
	if resp.Outcome.Outcome == "cancelled" {
		return false, errCancelled
	}
	rule := ruleKey(class, key)
	switch resp.Outcome.OptionID {
	case optAllowOnce:
		return true, nil
	case optAllowAlways:
		s.mu.Lock()
		s.rec.Allow = append(s.rec.Allow, rule)
		s.mu.Unlock()
		if err := s.a.perms.add(s.Cwd, rule, true); err != nil {
			s.a.log.Warn("Saving a permission", "error", err)
		}
		return true, nil
	case optRejectAlways:
		s.mu.Lock()
		s.rec.Deny = append(s.rec.Deny, rule)
		s.mu.Unlock()
		if err := s.a.perms.add(s.Cwd, rule, false); err != nil {
			s.a.log.Warn("Saving a permission", "error", err)
		}
		return false, nil
	}
	return false, nil
}
