package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	sdk "github.com/coder/acp-go-sdk"

	"github.com/helexa-ai/cortex/internal/acp/llm"
)

type command struct {
	name, description, hint string
}

var commands = []command{
	{"help", "List the commands", ""},
	{"model", "Show or set the model (endpoint:model)", "endpoint:model"},
	{"mode", "Show or set the mode (default, acceptEdits, plan, bypassPermissions)", "mode"},
	{"effort", "Show or set the thinking effort (off, low, medium, high)", "level"},
	{"status", "Endpoint, model, usage, and where models are loaded", ""},
	{"usage", "Tokens used in this session", ""},
	{"compact", "Shrink the conversation history to save context", ""},
	{"clear", "Forget the conversation history (keeps the session)", ""},
}

func commandList() []sdk.AvailableCommand {
	var out []sdk.AvailableCommand
	for _, c := range commands {
		ac := sdk.AvailableCommand{Name: c.name, Description: c.description}
		if c.hint != "" {
			ac.Input = &sdk.AvailableCommandInput{Unstructured: &sdk.UnstructuredCommandInput{Hint: c.hint}}
		}
		out = append(out, ac)
	}
	return out
}

// command handles a slash command locally; it reports false for text that
// only looks like one (an unknown /word goes to the model).
func (s *Session) command(ctx context.Context, line string) bool {
	fields := strings.Fields(strings.TrimPrefix(line, "/"))
	if len(fields) == 0 {
		return false
	}
	name, arg := fields[0], strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(line, "/"), fields[0]))
	known := false
	for _, c := range commands {
		known = known || c.name == name
	}
	if !known {
		return false
	}
	a := s.a
	switch name {
	case "help":
		var b strings.Builder
		b.WriteString("Commands:\n")
		for _, c := range commands {
			fmt.Fprintf(&b, "- `/%s` — %s\n", c.name, c.description)
		}
		s.say(b.String())
	case "model":
		if arg == "" {
			ep, m := s.model()
			s.say(fmt.Sprintf("Model: `%s:%s`", ep, m))
			return true
		}
		if err := a.setOption(s, "model", arg); err != nil {
			s.say(err.Error())
			return true
		}
		ep, m := s.model()
		s.say(fmt.Sprintf("Model set to `%s:%s`.", ep, m))
	case "mode":
		if arg == "" {
			s.say(fmt.Sprintf("Mode: `%s` (one of %s)", s.mode(), strings.Join(modeIDs(), ", ")))
			return true
		}
		if err := a.setOption(s, "mode", arg); err != nil {
			s.say(err.Error())
			return true
		}
		s.say(fmt.Sprintf("Mode set to `%s`.", arg))
	case "effort":
		if arg == "" {
			e := s.effort()
			if e == "" {
				e = "off"
			}
			s.say(fmt.Sprintf("Thinking effort: `%s`", e))
			return true
		}
		if err := a.setOption(s, "thought_level", arg); err != nil {
			s.say(err.Error())
			return true
		}
		s.say(fmt.Sprintf("Thinking effort set to `%s`.", arg))
	case "usage":
		s.say(s.usageText())
	case "status":
		s.say(s.statusText(ctx))
	case "compact":
		before, after := s.compact(true)
		s.save()
		s.say(fmt.Sprintf("Compacted the history: about %d → %d tokens.", before, after))
	case "clear":
		s.mu.Lock()
		s.rec.History = []llm.Message{}
		s.rec.Context = 0
		s.mu.Unlock()
		s.save()
		s.say("Cleared the conversation history.")
	}
	return true
}

func (s *Session) usageText() string {
	s.mu.Lock()
	u, ctxTokens := s.rec.Usage, s.rec.Context
	s.mu.Unlock()
	epName, _ := s.model()
	ep, _ := s.a.cfg.Endpoint(epName)
	t := fmt.Sprintf("Tokens this session: %d in, %d out.", u.InputTokens, u.OutputTokens)
	if ep.ContextWindow > 0 {
		t += fmt.Sprintf(" Context: %d of %d (%d%%).", ctxTokens, ep.ContextWindow, ctxTokens*100/ep.ContextWindow)
	}
	return t
}

// statusText describes the session and, when the endpoint is a cortex
// gateway (its model list says where models are loaded), the fleet.
func (s *Session) statusText(ctx context.Context) string {
	epName, model := s.model()
	ep, _ := s.a.cfg.Endpoint(epName)
	var b strings.Builder
	fmt.Fprintf(&b, "Endpoint: `%s` (%s, %s)\nModel: `%s`\nMode: `%s`\nSession: `%s` in %s\n%s\n",
		ep.Name, ep.BaseURL, ep.WireAPI, model, s.mode(), s.ID, s.Cwd, s.usageText())
	s.mu.Lock()
	for _, m := range s.mcp {
		fmt.Fprintf(&b, "MCP server `%s`: %d tools\n", m.name, len(m.tools))
	}
	for _, f := range s.mcpFailed {
		fmt.Fprintf(&b, "MCP server unavailable: %s\n", f)
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep.BaseURL+"/models", nil)
	if err != nil {
		return b.String()
	}
	if k := ep.Key(); k != "" {
		req.Header.Set("Authorization", "Bearer "+k)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(&b, "\nModels: unreachable (%v)\n", err)
		return b.String()
	}
	defer func() { _ = resp.Body.Close() }()
	var list struct {
		Data []struct {
			ID        string `json:"id"`
			Locations []struct {
				Node  string `json:"node"`
				State string `json:"state"`
			} `json:"locations"`
		} `json:"data"`
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &list) != nil {
		fmt.Fprintf(&b, "\nModels: %s\n", resp.Status)
		return b.String()
	}
	b.WriteString("\nModels:\n")
	for _, d := range list.Data {
		var where []string
		for _, l := range d.Locations {
			where = append(where, l.Node+" ("+l.State+")")
		}
		line := "- `" + d.ID + "`"
		if len(where) > 0 {
			line += ": " + strings.Join(where, ", ")
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}
