package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	sdk "github.com/coder/acp-go-sdk"

	"github.com/helexa-ai/cortex/internal/acp/llm"
)

// builtinTools are offered to the model in every session.
var builtinTools = []llm.Tool{
	{Name: "read_file", Description: "Read a text file. Returns its content (optionally a range of lines).", Schema: json.RawMessage(`{"type":"object","properties":{"path":{"type":"string","description":"File path, relative to the workspace or absolute"},"offset":{"type":"integer","description":"First line to read, 1-based"},"limit":{"type":"integer","description":"Number of lines to read"}},"required":["path"]}`)},
	{Name: "write_file", Description: "Create or overwrite a file with the given content.", Schema: json.RawMessage(`{"type":"object","properties":{"path":{"type":"string"},"content":{"type":"string"}},"required":["path","content"]}`)},
	{Name: "edit_file", Description: "Replace old_string with new_string in a file. old_string must match exactly once unless replace_all is true.", Schema: json.RawMessage(`{"type":"object","properties":{"path":{"type":"string"},"old_string":{"type":"string"},"new_string":{"type":"string"},"replace_all":{"type":"boolean"}},"required":["path","old_string","new_string"]}`)},
	{Name: "list_dir", Description: "List a directory's entries (directories end with /).", Schema: json.RawMessage(`{"type":"object","properties":{"path":{"type":"string","description":"Directory, default the workspace"}}}`)},
	{Name: "glob", Description: "Find files whose workspace-relative path matches a glob pattern (** matches any number of directories).", Schema: json.RawMessage(`{"type":"object","properties":{"pattern":{"type":"string"},"path":{"type":"string","description":"Directory to search, default the workspace"}},"required":["pattern"]}`)},
	{Name: "grep", Description: "Search file contents with a regular expression; returns path:line: text.", Schema: json.RawMessage(`{"type":"object","properties":{"pattern":{"type":"string"},"path":{"type":"string"},"glob":{"type":"string","description":"Only files matching this glob"},"ignore_case":{"type":"boolean"}},"required":["pattern"]}`)},
	{Name: "bash", Description: "Run a shell command in the workspace and return its output and exit code.", Schema: json.RawMessage(`{"type":"object","properties":{"command":{"type":"string"},"timeout_seconds":{"type":"integer"}},"required":["command"]}`)},
	{Name: "update_plan", Description: "Record the plan for the task: the full list of steps with their status (pending, in_progress, completed).", Schema: json.RawMessage(`{"type":"object","properties":{"entries":{"type":"array","items":{"type":"object","properties":{"content":{"type":"string"},"status":{"type":"string","enum":["pending","in_progress","completed"]},"priority":{"type":"string","enum":["high","medium","low"]}},"required":["content","status"]}}},"required":["entries"]}`)},
}

func (s *Session) toolDefs() []llm.Tool {
	var tools []llm.Tool
	for _, t := range builtinTools {
		if allow := s.a.cfg.Tools; allow == nil || slices.Contains(*allow, t.Name) {
			tools = append(tools, t)
		}
	}
	s.mu.Lock()
	for _, m := range s.mcp {
		tools = append(tools, m.tools...)
	}
	s.mu.Unlock()
	return tools
}

// toolRun is one tool call as the client sees it.
type toolRun struct {
	s    *Session
	id   string
	call llm.ToolCall
	args map[string]any
	// view is the call as last shown, for replay.
	view sdk.SessionUpdateToolCall
}

func (r *toolRun) str(k string) string {
	v, _ := r.args[k].(string)
	return v
}

func (r *toolRun) num(k string) int {
	v, _ := r.args[k].(float64)
	return int(v)
}

func (r *toolRun) flag(k string) bool {
	v, _ := r.args[k].(bool)
	return v
}

// update sends a tool_call_update and folds it into the view.
func (r *toolRun) update(u sdk.SessionToolCallUpdate) {
	u.ToolCallId = sdk.ToolCallId(r.id)
	if u.Status != nil {
		r.view.Status = *u.Status
	}
	if u.Content != nil {
		r.view.Content = u.Content
	}
	if u.RawOutput != nil {
		r.view.RawOutput = u.RawOutput
	}
	if u.Title != nil {
		r.view.Title = *u.Title
	}
	if u.Locations != nil {
		r.view.Locations = u.Locations
	}
	r.s.notify(sdk.SessionUpdate{ToolCallUpdate: &u})
}

// toolResult is what a tool produced.
type toolResult struct {
	text    string
	isError bool
	content []sdk.ToolCallContent
}

func failed(format string, args ...any) toolResult {
	return toolResult{text: fmt.Sprintf(format, args...), isError: true}
}

// runTool describes, authorises and runs one call, keeping the client
// informed, and returns the tool message for the history.
func (s *Session) runTool(ctx context.Context, call llm.ToolCall) llm.Message {
	r := &toolRun{s: s, id: s.nextCallID(), call: call}
	msg := llm.Message{Role: llm.RoleTool, ToolCallID: call.ID, ToolName: call.Name}
	var rawInput any
	argErr := json.Unmarshal([]byte(strings.TrimSpace(call.Args)), &r.args)
	if argErr != nil || r.args == nil {
		rawInput = call.Args
	} else {
		rawInput = r.args
	}
	d := s.describe(ctx, r)
	r.view = sdk.SessionUpdateToolCall{ToolCallId: sdk.ToolCallId(r.id), Title: d.title, Kind: d.kind,
		Status: sdk.ToolCallStatusPending, Locations: d.locations, RawInput: rawInput}
	view := r.view
	s.notify(sdk.SessionUpdate{ToolCall: &view})

	var res toolResult
	switch {
	case argErr != nil || r.args == nil:
		res = failed("Invalid arguments for %s: not a JSON object (%v). Call the tool again with a JSON object.", call.Name, argErr)
	case d.err != nil:
		res = failed("%v", d.err)
	default:
		res = s.authoriseAndRun(ctx, r, d)
	}
	if strings.TrimSpace(res.text) == "" {
		// Some APIs refuse an empty tool result; say so instead.
		res.text = "(no output)"
	}
	status := sdk.ToolCallStatusCompleted
	if res.isError {
		status = sdk.ToolCallStatusFailed
	}
	content := res.content
	if content == nil && res.text != "" {
		content = []sdk.ToolCallContent{sdk.ToolContent(sdk.TextBlock(clip(res.text, 16<<10)))}
	}
	r.update(sdk.SessionToolCallUpdate{Status: &status, Content: content, RawOutput: map[string]any{"output": clip(res.text, 16<<10), "isError": res.isError}})
	msg.Content = []llm.Part{llm.TextPart(clip(res.text, 256<<10))}
	msg.IsError = res.isError
	if b, err := json.Marshal(r.view); err == nil {
		msg.Display = b
	}
	return msg
}

func (s *Session) authoriseAndRun(ctx context.Context, r *toolRun, d description) toolResult {
	switch dec, why := s.policy(d.class, d.key, d.path); dec {
	case denied:
		return failed("Permission denied: %s.", why)
	case ask:
		st := sdk.ToolCallStatusPending
		ok, err := s.requestPermission(ctx, d.class, d.key, d.what, sdk.ToolCallUpdate{
			ToolCallId: sdk.ToolCallId(r.id), Title: &r.view.Title, Kind: &r.view.Kind, Status: &st,
			Locations: r.view.Locations, RawInput: r.view.RawInput, Content: d.preview,
		})
		if errors.Is(err, errCancelled) || ctx.Err() != nil {
			return failed("Cancelled by the user.")
		}
		if err != nil {
			return failed("Could not ask the user for permission: %v", err)
		}
		if !ok {
			return failed("The user rejected this %s. Do not retry it; ask the user what to do instead.", d.class)
		}
	}
	st := sdk.ToolCallStatusInProgress
	r.update(sdk.SessionToolCallUpdate{Status: &st})
	res := d.run(ctx)
	if ctx.Err() != nil && !res.isError {
		res.text += "\n(cancelled by the user)"
		res.isError = true
	}
	return res
}

// description is what is known about a call before it runs.
type description struct {
	title     string
	kind      sdk.ToolKind
	locations []sdk.ToolCallLocation
	class     string
	// key and path feed the permission rules; what names them for people.
	key, path, what string
	preview         []sdk.ToolCallContent
	err             error
	run             func(ctx context.Context) toolResult
}

func (s *Session) describe(ctx context.Context, r *toolRun) description {
	name := r.call.Name
	if m := s.mcpTool(name); m != nil {
		return m.describe(s, r)
	}
	if !slices.Contains(s.toolNames(), name) {
		return description{title: name, kind: sdk.ToolKindOther, class: classRead,
			err: fmt.Errorf("unknown tool %q; available tools: %s", name, strings.Join(s.toolNames(), ", "))}
	}
	switch name {
	case "read_file":
		return s.describeRead(r)
	case "write_file", "edit_file":
		return s.describeEdit(ctx, r)
	case "list_dir", "glob", "grep":
		return s.describeSearch(r)
	case "bash":
		return s.describeBash(r)
	case "update_plan":
		return s.describePlan(r)
	}
	return description{title: name, kind: sdk.ToolKindOther, class: classRead,
		err: fmt.Errorf("unknown tool %q; available tools: %s", name, strings.Join(s.toolNames(), ", "))}
}

func (s *Session) toolNames() []string {
	var names []string
	for _, t := range s.toolDefs() {
		names = append(names, t.Name)
	}
	return names
}

func (s *Session) describePlan(r *toolRun) description {
	d := description{title: "Update plan", kind: sdk.ToolKindThink, class: classRead}
	entries, _ := r.args["entries"].([]any)
	var plan []sdk.PlanEntry
	for _, e := range entries {
		m, _ := e.(map[string]any)
		content, _ := m["content"].(string)
		status, _ := m["status"].(string)
		prio, _ := m["priority"].(string)
		switch status {
		case "pending", "in_progress", "completed":
		default:
			status = "pending"
		}
		switch prio {
		case "high", "medium", "low":
		default:
			prio = "medium"
		}
		plan = append(plan, sdk.PlanEntry{Content: content, Status: sdk.PlanEntryStatus(status), Priority: sdk.PlanEntryPriority(prio)})
	}
	if len(plan) == 0 {
		d.err = errors.New("update_plan needs entries: [{content, status}]")
		return d
	}
	d.run = func(context.Context) toolResult {
		s.notify(sdk.UpdatePlan(plan...))
		return toolResult{text: fmt.Sprintf("Plan updated (%d steps).", len(plan))}
	}
	return d
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("\n[... %d more bytes]", len(s)-n)
}
