package neuronapi

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
