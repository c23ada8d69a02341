package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	sdk "github.com/coder/acp-go-sdk"

	"github.com/helexa-ai/cortex/internal/acp/hermes"
	"github.com/helexa-ai/cortex/internal/acp/llm"
)

// userParts turns a prompt into message parts: text, images, embedded
// resources (as tagged text) and links.
func userParts(blocks []sdk.ContentBlock) []llm.Part {
	var parts []llm.Part
	for _, b := range blocks {
		switch {
		case b.Text != nil:
			parts = append(parts, llm.TextPart(b.Text.Text))
		case b.Image != nil:
			parts = append(parts, llm.Part{Type: "image", MimeType: b.Image.MimeType, Data: b.Image.Data})
		case b.Resource != nil:
			if r := b.Resource.Resource.TextResourceContents; r != nil {
				parts = append(parts, llm.TextPart(fmt.Sprintf("\n<context uri=%q>\n%s\n</context>\n", r.Uri, r.Text)))
			} else if r := b.Resource.Resource.BlobResourceContents; r != nil {
				parts = append(parts, llm.TextPart(fmt.Sprintf("\n[attached binary resource %s]\n", r.Uri)))
			}
		case b.ResourceLink != nil:
			parts = append(parts, llm.TextPart(fmt.Sprintf("\n[%s](%s)\n", b.ResourceLink.Name, b.ResourceLink.Uri)))
		}
	}
	return parts
}

// runTurn answers one prompt: model calls and tool runs until the model
// stops asking for tools, the turn cap is hit, or the turn is cancelled.
func (s *Session) runTurn(ctx context.Context, prompt []sdk.ContentBlock) (sdk.StopReason, error) {
	parts := userParts(prompt)
	if len(parts) == 1 && strings.HasPrefix(strings.TrimSpace(parts[0].Text), "/") {
		if handled := s.command(ctx, strings.TrimSpace(parts[0].Text)); handled {
			return sdk.StopReasonEndTurn, nil
		}
	}
	if len(parts) == 0 {
		parts = []llm.Part{llm.TextPart("")}
	}
	s.appendHistory(llm.Message{Role: llm.RoleUser, Content: parts})
	s.save()
	defer func() {
		s.setTitle(parts)
		s.save()
	}()

	for i := 0; i < s.a.cfg.MaxTurnRequests; i++ {
		s.compact(false)
		res, err := s.call(ctx)
		if res.Message.Text() != "" || len(res.Message.ToolCalls) > 0 || res.Message.Reasoning != "" {
			s.appendHistory(res.Message)
		}
		if ctx.Err() != nil {
			s.answerUnrun(res.Message.ToolCalls, "The user cancelled this tool call.")
			return sdk.StopReasonCancelled, nil
		}
		if err != nil {
			s.answerUnrun(res.Message.ToolCalls, "Not run: the model's response failed.")
			s.say(fmt.Sprintf("\n\n**Error:** %v\n", err))
			s.a.log.Warn("Model call failed", "session", s.ID, "error", err)
			return sdk.StopReasonEndTurn, nil
		}
		if len(res.Message.ToolCalls) == 0 {
			switch res.StopReason {
			case llm.StopMaxTokens:
				return sdk.StopReasonMaxTokens, nil
			case llm.StopRefusal:
				return sdk.StopReasonRefusal, nil
			}
			return sdk.StopReasonEndTurn, nil
		}
		for j, call := range res.Message.ToolCalls {
			out := s.runTool(ctx, call)
			s.appendHistory(out)
			s.save()
			if ctx.Err() != nil {
				s.answerUnrun(res.Message.ToolCalls[j+1:], "The user cancelled this tool call.")
				return sdk.StopReasonCancelled, nil
			}
		}
	}
	s.say(fmt.Sprintf("\n\nStopped after %d model requests in one turn (max_turn_requests).", s.a.cfg.MaxTurnRequests))
	return sdk.StopReasonMaxTurnRequests, nil
}

// answerUnrun gives calls that will not run a result, so the history stays
// a valid conversation for every wire.
func (s *Session) answerUnrun(calls []llm.ToolCall, why string) {
	for _, c := range calls {
		s.appendHistory(llm.Message{Role: llm.RoleTool, ToolCallID: c.ID, ToolName: c.Name, IsError: true, Content: []llm.Part{llm.TextPart(why)}})
	}
}

// streamSink forwards the model's stream to the client, through the Hermes
// parser for models that write tool calls and thinking as text.
type streamSink struct {
	s       *Session
	p       *hermes.Parser
	text    strings.Builder
	thought strings.Builder
	calls   []hermes.Call
}

func newStreamSink(s *Session) *streamSink {
	k := &streamSink{s: s}
	k.p = hermes.New(hermes.Events{
		Text: func(t string) {
			k.text.WriteString(t)
			s.notify(sdk.UpdateAgentMessageText(t))
		},
		Thought: func(t string) {
			k.thought.WriteString(t)
			s.notify(sdk.UpdateAgentThoughtText(t))
		},
		Call: func(c hermes.Call) { k.calls = append(k.calls, c) },
	})
	return k
}

func (k *streamSink) Text(t string) { k.p.Feed(t) }
func (k *streamSink) Thought(t string) {
	k.thought.WriteString(t)
	k.s.notify(sdk.UpdateAgentThoughtText(t))
}

func (s *Session) call(ctx context.Context) (llm.Result, error) {
	epName, model := s.model()
	ep, _ := s.a.cfg.Endpoint(epName)
	client := s.a.clients[epName]
	if model == "" {
		// No model configured: take the endpoint's first, so that pointing
		// the agent at a gateway is enough.
		ids, err := client.Models(ctx)
		if err == nil && len(ids) == 0 {
			err = errors.New("it lists no models")
		}
		if err != nil {
			return llm.Result{}, fmt.Errorf("no model is configured for endpoint %s (set default_model, or pick one with /model), and listing its models failed: %w", epName, err)
		}
		model = ids[0]
		s.setModel(epName, model)
		s.notify(sdk.SessionUpdate{ConfigOptionUpdate: &sdk.SessionConfigOptionUpdate{ConfigOptions: s.a.configOptions(s)}})
	}
	req := llm.Request{
		Model:       model,
		System:      s.systemPrompt(),
		Messages:    s.history(),
		Tools:       s.toolDefs(),
		MaxTokens:   ep.MaxTokens,
		Temperature: ep.Temperature,
		Effort:      s.effort(),
	}
	cctx, cancel := context.WithTimeout(ctx, ep.Timeout.Duration)
	defer cancel()
	sink := newStreamSink(s)
	res, err := client.Stream(cctx, req, sink)
	sink.p.Close()
	// The message keeps what the client saw: text without recovered tool
	// calls, and thinking from both the native field and <think> tags.
	if sink.text.Len() > 0 {
		res.Message.Content = []llm.Part{llm.TextPart(sink.text.String())}
	} else {
		res.Message.Content = nil
	}
	if res.Message.Signature == "" {
		// Signed thinking goes back exactly as signed; otherwise keep what
		// the client saw, <think> text included.
		res.Message.Reasoning = sink.thought.String()
	}
	for _, c := range sink.calls {
		res.Message.ToolCalls = append(res.Message.ToolCalls, llm.ToolCall{Name: c.Name, Args: c.Args})
	}
	for i := range res.Message.ToolCalls {
		if res.Message.ToolCalls[i].ID == "" {
			res.Message.ToolCalls[i].ID = "tc_" + strings.TrimPrefix(newSessionID(), "sess_")
		}
	}
	if len(sink.calls) > 0 && err == nil {
		res.StopReason = llm.StopToolUse
	}
	s.addUsage(res.Usage, ep.ContextWindow)
	return res, err
}

func (s *Session) addUsage(u llm.Usage, window int) {
	s.mu.Lock()
	s.rec.Usage.InputTokens += u.InputTokens
	s.rec.Usage.OutputTokens += u.OutputTokens
	if u.InputTokens+u.OutputTokens > 0 {
		s.rec.Context = u.InputTokens + u.OutputTokens
	}
	used := s.rec.Context
	s.mu.Unlock()
	if window > 0 && used > 0 {
		s.notify(sdk.SessionUpdate{UsageUpdate: &sdk.SessionUsageUpdate{Size: window, Used: used}})
	}
}

// setTitle names the session after its first prompt.
func (s *Session) setTitle(parts []llm.Part) {
	s.mu.Lock()
	if s.rec.Title != "" {
		s.mu.Unlock()
		return
	}
	var text string
	for _, p := range parts {
		text += p.Text + " "
	}
	title := strings.Join(strings.Fields(text), " ")
	if r := []rune(title); len(r) > 60 {
		title = string(r[:57]) + "..."
	}
	if title == "" {
		title = "Untitled"
	}
	s.rec.Title = title
	s.mu.Unlock()
	s.notify(sdk.SessionUpdate{SessionInfoUpdate: &sdk.SessionSessionInfoUpdate{
		Title: &title, UpdatedAt: sdk.Ptr(time.Now().UTC().Format(timeFormat)),
	}})
}

const builtinPrompt = `You are cortex, a coding agent working in the user's editor.
Workspace: {cwd}
Platform: {os}. Date: {date}.

Work in small, verifiable steps. Read files before changing them; use
edit_file for targeted changes (old_string must match exactly once unless
replace_all is set) and write_file for new files. Use bash to build, test and
inspect, and say what you ran. For multi-step work keep a plan with
update_plan. Paths are relative to the workspace unless absolute; you cannot
touch files outside it. Be concise; show code only when it helps.`

// systemPrompt is the configured prompt file or the built-in one, plus the
// workspace's AGENTS.md (or CLAUDE.md) when there is one.
func (s *Session) systemPrompt() string {
	prompt := builtinPrompt
	if p := s.a.cfg.SystemPromptPath; p != "" {
		p = strings.ReplaceAll(p, "{cwd}", s.Cwd)
		if data, err := os.ReadFile(p); err == nil {
			prompt = string(data)
		} else {
			s.a.log.Warn("Reading the system prompt", "path", p, "error", err)
		}
	}
	prompt = strings.NewReplacer("{cwd}", s.Cwd, "{os}", runtime.GOOS, "{date}", time.Now().Format("2006-01-02")).Replace(prompt)
	for _, name := range []string{"AGENTS.md", "CLAUDE.md"} {
		if data, err := os.ReadFile(filepath.Join(s.Cwd, name)); err == nil && len(data) < 64<<10 {
			prompt += "\n\n# " + name + " (project instructions)\n\n" + string(data)
			break
		}
	}
	return prompt
}

// estimateTokens is a rough size of the history: four bytes a token, a
// thousand an image.
func estimateTokens(ms []llm.Message) int {
	n := 0
	for _, m := range ms {
		for _, p := range m.Content {
			n += len(p.Text)/4 + 4
			if p.Type == "image" {
				n += 1000
			}
		}
		for _, c := range m.ToolCalls {
			n += (len(c.Name)+len(c.Args))/4 + 8
		}
	}
	return n
}

const elided = "[output removed to save context]"

// compact shrinks the history to fit the endpoint's context window: tool
// results first, oldest first, then whole early exchanges. The last user
// turn is kept intact. force compacts even under the threshold.
func (s *Session) compact(force bool) (before, after int) {
	epName, _ := s.model()
	ep, _ := s.a.cfg.Endpoint(epName)
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.rec.History
	before = estimateTokens(h)
	// The last call's real count includes what the estimate cannot see
	// (system prompt, tool definitions, the tokenizer's view): keep that
	// overhead in the sums.
	overhead := max(0, s.rec.Context-before)
	limit := ep.ContextWindow*3/4 - overhead
	switch {
	case force:
		limit = before / 2
	case ep.ContextWindow <= 0:
		return before, before
	case limit <= 0:
		limit = 1
	}
	lastUser := 0
	for i, m := range h {
		if m.Role == llm.RoleUser {
			lastUser = i
		}
	}
	for i := 0; i < lastUser && estimateTokens(h) > limit; i++ {
		if h[i].Role == llm.RoleTool && h[i].Text() != elided {
			h[i].Content = []llm.Part{llm.TextPart(elided)}
		}
	}
	// Drop whole exchanges from the front: from one user message up to
	// the next, so tool calls never lose their results.
	for estimateTokens(h) > limit && lastUser > 0 {
		next := -1
		for i := 1; i < len(h); i++ {
			if h[i].Role == llm.RoleUser {
				next = i
				break
			}
		}
		if next < 0 || next > lastUser {
			break
		}
		h = h[next:]
		lastUser -= next
	}
	s.rec.History = h
	after = estimateTokens(h)
	if s.rec.Context > 0 {
		s.rec.Context = after + overhead
	}
	return before, after
}
