package neuronapi

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReadTokenFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content, want, wantErr string
	}{
		{name: "plain", content: "s3cr3t", want: "s3cr3t"},
		{name: "trailing newline", content: "s3cr3t\n", want: "s3cr3t"},
		{name: "surrounding whitespace", content: "  s3cr3t \r\n\t", want: "s3cr3t"},
		{name: "empty", content: "", wantErr: "is empty"},
		{name: "only whitespace", content: " \n\n", wantErr: "is empty"},
		{name: "two lines", content: "one\ntwo\n", wantErr: "control"},
		{name: "inner space", content: "one two", wantErr: "space"},
		{name: "non-ASCII", content: "tökén", wantErr: "non-ASCII"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := ReadTokenFile(p)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), p) {
					t.Fatalf("ReadTokenFile = %q, %v; want an error naming the file and %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ReadTokenFile = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := ReadTokenFile(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestToken(t *testing.T) {
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ file, token, want string }{
		{"", "", ""},
		{"", "value", "value"},
		{p, "value", "from-file"},
		{p, "", "from-file"},
	} {
		if got, err := Token(tc.file, tc.token); err != nil || got != tc.want {
			t.Errorf("Token(%q, %q) = %q, %v; want %q", tc.file, tc.token, got, err, tc.want)
		}
	}
	if _, err := Token(p+".missing", "value"); err == nil {
		t.Error("a missing file must not fall back to the value")
	}
}

// fakeNow is a clock tests move by hand.
type fakeNow struct{ t time.Time }

func (f *fakeNow) now() time.Time            { return f.t }
func (f *fakeNow) step(d time.Duration)      { f.t = f.t.Add(d) }
func writeToken(t *testing.T, p, tok string) { t.Helper(); mustWrite(t, p, tok+"\n") }

func mustWrite(t *testing.T, p, content string) {
	t.Helper()
	// Write beside and rename, as the kubelet swaps a Secret volume, so a
	// reader never sees half a file.
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}

func newFileSource(t *testing.T, grace time.Duration) (*TokenSource, string, *fakeNow) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	writeToken(t, p, "old")
	clk := &fakeNow{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s, err := NewTokenSource(p, "ignored", TokenOptions{Recheck: 10 * time.Second, Grace: grace, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	return s, p, clk
}

func TestTokenSourceRereadsAfterRecheck(t *testing.T) {
	s, p, clk := newFileSource(t, time.Minute)
	if got := s.Token(); got != "old" {
		t.Fatalf("Token = %q", got)
	}
	writeToken(t, p, "new")
	clk.step(9 * time.Second)
	if got := s.Token(); got != "old" {
		t.Fatalf("before the recheck period: %q, want old", got)
	}
	clk.step(time.Second)
	if got := s.Token(); got != "new" {
		t.Fatalf("after the recheck period: %q, want new", got)
	}
	// An emptied or malformed file keeps the last good token.
	mustWrite(t, p, "")
	clk.step(10 * time.Second)
	if got := s.Token(); got != "new" {
		t.Fatalf("after emptying the file: %q, want new", got)
	}
	mustWrite(t, p, "two words\n")
	clk.step(10 * time.Second)
	if got := s.Token(); got != "new" {
		t.Fatalf("after a malformed token: %q, want new", got)
	}
}

func TestTokenSourceAcceptsPreviousWithinGrace(t *testing.T) {
	s, p, clk := newFileSource(t, time.Minute)
	if !s.Accepts("old") || s.Accepts("new") || s.Accepts("") || s.Accepts("ol") {
		t.Fatal("before rotation only old is good")
	}
	writeToken(t, p, "new")
	clk.step(2 * time.Second)
	// The sender saw the new file first: the unknown token makes the
	// receiver read its file at once, without waiting for the recheck.
	if !s.Accepts("new") {
		t.Fatal("new token refused right after the file changed")
	}
	if !s.Accepts("old") {
		t.Fatal("old token refused within the grace period")
	}
	clk.step(59 * time.Second)
	if !s.Accepts("old") {
		t.Fatal("old token refused just before the grace period ends")
	}
	clk.step(time.Second)
	if s.Accepts("old") {
		t.Fatal("old token accepted after the grace period")
	}
	if !s.Accepts("new") {
		t.Fatal("new token refused")
	}
}

func TestTokenSourceWithoutGrace(t *testing.T) {
	s, p, clk := newFileSource(t, -1)
	writeToken(t, p, "new")
	clk.step(2 * time.Second)
	if !s.Accepts("new") || s.Accepts("old") {
		t.Fatal("without grace only the new token is good")
	}
	if got := s.Fallback("new"); got != "" {
		t.Fatalf("Fallback without grace = %q", got)
	}
}

func TestTokenSourceFallback(t *testing.T) {
	t.Run("sender saw the new file first", func(t *testing.T) {
		s, p, clk := newFileSource(t, time.Minute)
		writeToken(t, p, "new")
		clk.step(10 * time.Second)
		if got := s.Token(); got != "new" {
			t.Fatalf("Token = %q", got)
		}
		// The receiver still has the old file and refused new: retry old.
		if got := s.Fallback("new"); got != "old" {
			t.Fatalf("Fallback(new) = %q, want old", got)
		}
		clk.step(time.Minute)
		if got := s.Fallback("new"); got != "" {
			t.Fatalf("Fallback after the grace = %q, want none", got)
		}
	})
	t.Run("receiver saw the new file first", func(t *testing.T) {
		s, p, clk := newFileSource(t, time.Minute)
		writeToken(t, p, "new")
		clk.step(time.Second) // within the recheck period: Token is still old
		if got := s.Token(); got != "old" {
			t.Fatalf("Token = %q", got)
		}
		if got := s.Fallback("old"); got != "new" {
			t.Fatalf("Fallback(old) = %q, want new (read at once)", got)
		}
	})
	t.Run("nothing changed", func(t *testing.T) {
		s, _, _ := newFileSource(t, time.Minute)
		if got := s.Fallback("old"); got != "" {
			t.Fatalf("Fallback = %q, want none", got)
		}
	})
}

func TestTokenSourceForcedRereadsAreBounded(t *testing.T) {
	s, p, clk := newFileSource(t, time.Minute)
	if s.Accepts("wrong") {
		t.Fatal("wrong token accepted")
	}
	// A flood of wrong tokens within a second re-reads at most once: the
	// change below is seen only a second after the last forced re-read.
	writeToken(t, p, "new")
	if s.Accepts("new") {
		t.Fatal("the file was re-read again within the same second")
	}
	clk.step(time.Second)
	if !s.Accepts("new") {
		t.Fatal("new token refused a second later")
	}
}

func TestStaticToken(t *testing.T) {
	s := StaticToken("fixed")
	if !s.Enabled() || s.Token() != "fixed" || !s.Accepts("fixed") || s.Accepts("other") || s.Fallback("fixed") != "" {
		t.Fatal("a fixed token is just that")
	}
	none := StaticToken("")
	if none.Enabled() || none.Token() != "" || none.Accepts("") {
		t.Fatal("no token: nothing enabled, nothing accepted")
	}
	if _, err := NewTokenSource(filepath.Join(t.TempDir(), "missing"), "", TokenOptions{}); err == nil {
		t.Fatal("a missing file must be an error at start")
	}
}
