package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	sdk "github.com/coder/acp-go-sdk"
)

// outputLimit bounds the command output kept for the model; outputEvery
// paces live output updates.
const (
	outputLimit = 1 << 20
	outputEvery = 100 * time.Millisecond
)

func (s *Session) describeBash(r *toolRun) description {
	command := r.str("command")
	key, what := commandKey(command)
	d := description{title: clip(command, 200), kind: sdk.ToolKindExecute, class: classExecute, key: key, what: what}
	d.locations = []sdk.ToolCallLocation{{Path: s.Cwd}}
	if strings.TrimSpace(command) == "" {
		d.err = errors.New("bash needs a command")
		return d
	}
	timeout := s.a.cfg.CommandTimeout.Duration
	if t := r.num("timeout_seconds"); t > 0 {
		timeout = min(time.Duration(t)*time.Second, timeout)
	}
	d.run = func(ctx context.Context) toolResult {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if s.a.clientCaps().Terminal {
			return s.runInTerminal(ctx, r, command)
		}
		return s.runLocal(ctx, r, command)
	}
	return d
}

func exitText(code int, signal string, timedOut bool) string {
	switch {
	case timedOut:
		return "\n[timed out; the command was killed]"
	case signal != "":
		return "\n[killed by " + signal + "]"
	case code != 0:
		return fmt.Sprintf("\n[exit code %d]", code)
	}
	return ""
}

// runLocal runs the command in its own process group, streaming its output
// into the tool call as it comes, and kills the whole group when the turn
// is cancelled or the command times out.
func (s *Session) runLocal(ctx context.Context, r *toolRun, command string) toolResult {
	pr, pw, err := os.Pipe()
	if err != nil {
		return failed("Starting the command: %v", err)
	}
	cmd := exec.Command("bash", "-c", command)
	cmd.Dir = s.Cwd
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.Env = append(os.Environ(), "CORTEX_ACP=1", "PAGER=cat", "GIT_PAGER=cat")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = pr.Close()
		_ = pw.Close()
		return failed("Starting the command: %v", err)
	}
	_ = pw.Close()
	pgid := cmd.Process.Pid

	var mu sync.Mutex
	var out []byte
	dirty := false
	// Output goes to the client as it comes, at most every outputEvery, so
	// a chatty command does not flood the editor with updates.
	show := func() {
		mu.Lock()
		if !dirty {
			mu.Unlock()
			return
		}
		dirty = false
		text := tail(string(out), 16<<10)
		mu.Unlock()
		r.update(sdk.SessionToolCallUpdate{Content: []sdk.ToolCallContent{sdk.ToolContent(sdk.TextBlock(fence(text)))}})
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 32<<10)
		last := time.Time{}
		for {
			n, err := pr.Read(buf)
			if n > 0 {
				mu.Lock()
				out = append(out, buf[:n]...)
				if len(out) > outputLimit {
					out = out[len(out)-outputLimit:]
				}
				dirty = true
				mu.Unlock()
				if time.Since(last) >= outputEvery {
					last = time.Now()
					show()
				}
			}
			if err != nil {
				return
			}
		}
	}()
	tick := time.NewTicker(outputEvery)
	defer tick.Stop()
	tickDone := make(chan struct{})
	go func() {
		defer close(tickDone)
		for {
			select {
			case <-tick.C:
				show()
			case <-readDone:
				return
			}
		}
	}()
	waitDone := make(chan error, 1)
	go func() { waitDone <- cmd.Wait() }()
	var waitErr error
	killed := false
	select {
	case waitErr = <-waitDone:
	case <-ctx.Done():
		killed = true
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case waitErr = <-waitDone:
		case <-time.After(2 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			waitErr = <-waitDone
		}
	}
	// Whatever the command left running in its group goes with it, so no
	// stray process keeps the output pipe (or anything else) alive.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-readDone:
	case <-time.After(2 * time.Second):
	}
	_ = pr.Close()
	<-readDone
	<-tickDone

	mu.Lock()
	text := string(out)
	mu.Unlock()
	code, signal := 0, ""
	var ee *exec.ExitError
	if errors.As(waitErr, &ee) {
		code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			signal = ws.Signal().String()
		}
	} else if waitErr != nil {
		return failed("Running the command: %v", waitErr)
	}
	timedOut := killed && errors.Is(ctx.Err(), context.DeadlineExceeded)
	res := toolResult{text: text + exitText(code, signal, timedOut), isError: code != 0 || signal != "" || killed}
	res.content = []sdk.ToolCallContent{sdk.ToolContent(sdk.TextBlock(fence(tail(res.text, 16<<10))))}
	return res
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "[...]\n" + s[len(s)-n:]
}

func fence(s string) string { return "```\n" + strings.TrimRight(s, "\n") + "\n```" }

// runInTerminal runs the command in an editor terminal, which shows the
// output live; the tool call embeds the terminal.
func (s *Session) runInTerminal(ctx context.Context, r *toolRun, command string) toolResult {
	sid := sdk.SessionId(s.ID)
	var created sdk.CreateTerminalResponse
	err := s.a.conn.Call(ctx, sdk.ClientMethodTerminalCreate, sdk.CreateTerminalRequest{
		SessionId: sid, Command: "bash", Args: []string{"-c", command}, Cwd: sdk.Ptr(s.Cwd),
		OutputByteLimit: sdk.Ptr(outputLimit),
	}, &created)
	if err != nil {
		return failed("Creating a terminal: %v", err)
	}
	tid := created.TerminalId
	r.update(sdk.SessionToolCallUpdate{Content: []sdk.ToolCallContent{sdk.ToolTerminalRef(tid)}})
	// Cleanup must reach the editor even when the turn's context is gone.
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	defer func() {
		_ = s.a.conn.Call(bg, sdk.ClientMethodTerminalRelease, sdk.ReleaseTerminalRequest{SessionId: sid, TerminalId: tid}, nil)
	}()
	var exit sdk.WaitForTerminalExitResponse
	werr := s.a.conn.Call(ctx, sdk.ClientMethodTerminalWaitForExit, sdk.WaitForTerminalExitRequest{SessionId: sid, TerminalId: tid}, &exit)
	killed := false
	if werr != nil {
		if ctx.Err() == nil {
			return failed("Waiting for the terminal: %v", werr)
		}
		killed = true
		_ = s.a.conn.Call(bg, sdk.ClientMethodTerminalKill, sdk.KillTerminalRequest{SessionId: sid, TerminalId: tid}, nil)
	}
	var out sdk.TerminalOutputResponse
	if err := s.a.conn.Call(bg, sdk.ClientMethodTerminalOutput, sdk.TerminalOutputRequest{SessionId: sid, TerminalId: tid}, &out); err != nil {
		return failed("Reading the terminal: %v", err)
	}
	code, signal := 0, ""
	if st := out.ExitStatus; st != nil {
		if st.ExitCode != nil {
			code = *st.ExitCode
		}
		if st.Signal != nil {
			signal = *st.Signal
		}
	} else if exit.ExitCode != nil {
		code = *exit.ExitCode
	}
	timedOut := killed && errors.Is(ctx.Err(), context.DeadlineExceeded)
	text := out.Output
	if out.Truncated {
		text = "[earlier output truncated]\n" + text
	}
	return toolResult{text: text + exitText(code, signal, timedOut), isError: code != 0 || signal != "" || killed,
		content: []sdk.ToolCallContent{sdk.ToolTerminalRef(tid)}}
}
