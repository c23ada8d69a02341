package config

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func load(t *testing.T, text string) (*Config, string, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	c, err := Load(p, slog.New(slog.NewTextHandler(&logs, nil)))
	return c, logs.String(), err
}

func TestLoad(t *testing.T) {
	t.Setenv("TEST_KEY", "from-env")
	c, logs, err := load(t, `
default_endpoint = "local"
system_prompt_path = "{cwd}/PROMPT.md"

[[endpoints]]
name = "local"
base_url = "http://127.0.0.1:8080/v1/"
wire_api = "openai-chat"
default_model = "qwen"
api_key_env = "TEST_KEY"
context_window = 32768
headers = { X-Team = "a" }
timeout = "30s"

[[endpoints]]
name = "claude"
base_url = "https://api.anthropic.com/v1"
wire_api = "anthropic"
default_model = "claude"
max_tokens = 4096

[[endpoints]]
name = "broken"
base_url = "ftp://x"
`)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Endpoints) != 2 || !strings.Contains(logs, "broken") {
		t.Fatalf("endpoints %+v, logs %s", c.Endpoints, logs)
	}
	local, _ := c.Endpoint("local")
	if local.BaseURL != "http://127.0.0.1:8080/v1" || local.Key() != "from-env" || local.Timeout.Seconds() != 30 ||
		local.MaxTokens != DefaultMaxTokens || local.Headers["X-Team"] != "a" {
		t.Errorf("local %+v", local)
	}
	claude, _ := c.Endpoint("claude")
	if claude.WireAPI != WireAnthropicMessages || claude.MaxTokens != 4096 {
		t.Errorf("claude %+v", claude)
	}
	if c.MaxTurnRequests != DefaultMaxTurnRequests {
		t.Errorf("max turn requests %d", c.MaxTurnRequests)
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{`default_endpoint = "x"` + "\n[[endpoints]]\nname = \"x\"\nbase_url = \"http://h/v1\"\nwire_api = \"grpc\"", "wire_api"},
		{`[[endpoints]]` + "\nname = \"x\"", "base_url"},
		{`default_endpoint = "nope"` + "\n[[endpoints]]\nname = \"x\"\nbase_url = \"http://h/v1\"", "default_endpoint"},
		{`max_turn_requests = -1` + "\n[[endpoints]]\nname = \"x\"\nbase_url = \"http://h/v1\"", "max_turn_requests"},
		{`[[endpoints]]` + "\nname = \"x\"\nbase_url = \"http://h/v1\"\ntimeout = \"soon\"", "timeout"},
		{`this is not toml`, "config"},
		{``, "endpoints"},
	} {
		_, _, err := load(t, tc.text)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one naming %q", tc.text, err, tc.want)
		}
	}
}

func TestFromEnv(t *testing.T) {
	t.Setenv("CORTEX_ACP_CONFIG", "")
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("CORTEX_ACP_BASE_URL", "http://gw:8080/v1")
	t.Setenv("CORTEX_ACP_MODEL", "toolchat")
	c, err := Load("", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ep, _ := c.Endpoint(c.DefaultEndpoint)
	if ep.BaseURL != "http://gw:8080/v1" || ep.DefaultModel != "toolchat" || ep.WireAPI != WireOpenAIChat {
		t.Errorf("endpoint %+v", ep)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.toml"), slog.New(slog.DiscardHandler)); err == nil {
		t.Error("a missing named config file must be an error")
	}
}
