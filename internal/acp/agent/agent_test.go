package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/helexa-ai/cortex/internal/acp/config"
	"github.com/helexa-ai/cortex/internal/acp/llm"
)

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		glob  string
		match []string
		miss  []string
	}{
		{"*.go", []string{"a.go", "x/y/b.go"}, []string{"a.go.txt", "ago"}},
		{"cmd/*/main.go", []string{"cmd/x/main.go"}, []string{"cmd/x/y/main.go", "main.go"}},
		{"**/*_test.go", []string{"a_test.go", "p/q/a_test.go"}, []string{"a.go"}},
		{"src/**", []string{"src/a", "src/a/b.c"}, []string{"srcx/a"}},
		{"*.{ts,tsx}", []string{"a.ts", "b/c.tsx"}, []string{"a.js"}},
		{"file?.txt", []string{"file1.txt"}, []string{"file10.txt"}},
	} {
		re, err := globRegexp(tc.glob)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range tc.match {
			if !re.MatchString(m) {
				t.Errorf("%s should match %s", tc.glob, m)
			}
		}
		for _, m := range tc.miss {
			if re.MatchString(m) {
				t.Errorf("%s should not match %s", tc.glob, m)
			}
		}
	}
	if _, err := globRegexp("{a,b"); err == nil {
		t.Error("unbalanced brace accepted")
	}
}

func testSession(t *testing.T, window int) *Session {
	cfg := &config.Config{DefaultEndpoint: "e", Endpoints: []config.Endpoint{{Name: "e", ContextWindow: window}}}
	dir := t.TempDir()
	a := &Agent{cfg: cfg, perms: &permStore{Dir: filepath.Join(dir, "perms")}, store: &Store{Dir: filepath.Join(dir, "sessions")}}
	cwd := filepath.Join(dir, "work")
	if err := os.MkdirAll(cwd, 0o755); err != nil {
		t.Fatal(err)
	}
	return newSession(a, "s1", cwd, nil)
}

func TestResolveConfinesPaths(t *testing.T) {
	s := testSession(t, 0)
	outside := filepath.Dir(s.Cwd)
	if err := os.Symlink(outside, filepath.Join(s.Cwd, "escape")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a.txt", "sub/new/file", s.Cwd, filepath.Join(s.Cwd, "x")} {
		if _, err := s.resolve(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	for _, p := range []string{"../x", "/etc/passwd", "escape/secret", "sub/../../x", "file://" + outside} {
		if _, err := s.resolve(p); err == nil || !strings.Contains(err.Error(), "outside the workspace") {
			t.Errorf("%s: error %v", p, err)
		}
	}
	s.Dirs = []string{outside}
	if _, err := s.resolve("../x"); err != nil {
		t.Errorf("additional directory refused: %v", err)
	}
}

func TestPolicy(t *testing.T) {
	s := testSession(t, 0)
	file := filepath.Join(s.Cwd, "a.go")
	plan := filepath.Join(s.Cwd, PlanDir, "p.md")
	for _, tc := range []struct {
		mode, class, path string
		want              decision
	}{
		{ModeDefault, classRead, "", allowed},
		{ModeDefault, classEdit, file, ask},
		{ModeDefault, classExecute, "", ask},
		{ModeAccept, classEdit, file, allowed},
		{ModeAccept, classExecute, "", ask},
		{ModePlan, classEdit, file, denied},
		{ModePlan, classEdit, plan, allowed},
		{ModePlan, classExecute, "", denied},
		{ModePlan, classMCP, "", denied},
		{ModeBypass, classExecute, "", allowed},
	} {
		s.setMode(tc.mode)
		if got, _ := s.policy(tc.class, "k", tc.path); got != tc.want {
			t.Errorf("%s %s %s: %v, want %v", tc.mode, tc.class, tc.path, got, tc.want)
		}
	}
	s.setMode(ModeDefault)
	if err := s.a.perms.add(s.Cwd, ruleKey(classExecute, "go"), true); err != nil {
		t.Fatal(err)
	}
	if err := s.a.perms.add(s.Cwd, ruleKey(classExecute, "rm"), false); err != nil {
		t.Fatal(err)
	}
	key := func(c string) string { k, _ := commandKey(c); return k }
	if d, _ := s.policy(classExecute, key("go test ./..."), ""); d != allowed {
		t.Errorf("remembered allow: %v", d)
	}
	if d, _ := s.policy(classExecute, key("rm -rf x"), ""); d != denied {
		t.Errorf("remembered deny: %v", d)
	}
	if d, _ := s.policy(classExecute, key("make"), ""); d != ask {
		t.Errorf("unknown command: %v", d)
	}
	// An allowed program does not let a chained command through.
	for _, c := range []string{"go test ./... && rm -rf /", "go build | sh", "go run $(curl x)", "go vet; reboot"} {
		if d, _ := s.policy(classExecute, key(c), ""); d != ask {
			t.Errorf("%q: %v, want ask", c, d)
		}
	}
}

func TestCompact(t *testing.T) {
	s := testSession(t, 1000)        // compaction above 750 tokens
	big := strings.Repeat("x", 1200) // about 300 tokens
	var h []llm.Message
	for i := range 4 {
		h = append(h,
			llm.Message{Role: llm.RoleUser, Content: []llm.Part{llm.TextPart("question " + string(rune('a'+i)))}},
			llm.Message{Role: llm.RoleAssistant, ToolCalls: []llm.ToolCall{{ID: "c", Name: "read_file", Args: "{}"}}},
			llm.Message{Role: llm.RoleTool, ToolCallID: "c", Content: []llm.Part{llm.TextPart(big)}},
			llm.Message{Role: llm.RoleAssistant, Content: []llm.Part{llm.TextPart("answer")}})
	}
	s.rec.History = h
	before, after := s.compact(false)
	if before <= 750 || after > 750 {
		t.Fatalf("compacted %d → %d", before, after)
	}
	got := s.history()
	// Tool results went first; all four exchanges survive, the last intact.
	if len(got) != 16 || got[2].Text() != elided || got[14].Text() != big {
		t.Errorf("history after compaction: %d messages, first result %q", len(got), clip(got[2].Text(), 20))
	}
	// Forcing it further drops whole exchanges, never splitting a call from
	// its result.
	s.rec.History[14].Content = []llm.Part{llm.TextPart(strings.Repeat("y", 4000))}
	s.compact(false)
	got = s.history()
	if got[0].Role != llm.RoleUser || got[len(got)-2].Text() == elided {
		t.Errorf("after dropping: first %s, last result %q", got[0].Role, clip(got[len(got)-2].Text(), 20))
	}
	for i, m := range got {
		if m.Role == llm.RoleTool && (i == 0 || len(got[i-1].ToolCalls) == 0) {
			t.Errorf("tool result %d lost its call", i)
		}
	}
}
