// Package config loads cortex-acp's TOML configuration: the endpoints it
// can talk to (one per upstream, each with its wire dialect), the default
// one, the system prompt and the agent's limits. The keys are those of the
// agent cortex-acp replaces, so existing files keep working.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Wire dialects an endpoint can speak.
const (
	WireOpenAIChat        = "openai-chat"
	WireOpenAIResponses   = "openai-responses"
	WireAnthropicMessages = "anthropic-messages"
)

// Defaults used when the file (or the environment) leaves a value out.
const (
	DefaultBaseURL         = "http://127.0.0.1:8080/v1"
	DefaultMaxTokens       = 8192
	DefaultTimeout         = 10 * time.Minute
	DefaultMaxTurnRequests = 25
	DefaultCommandTimeout  = 10 * time.Minute
)

// Endpoint is one upstream API.
type Endpoint struct {
	// Name identifies the endpoint in model selectors (`name:model`).
	Name string `toml:"name"`
	// BaseURL includes the API version, e.g. http://host:8080/v1.
	BaseURL string `toml:"base_url"`
	// WireAPI is the dialect: openai-chat, openai-responses or
	// anthropic-messages ("anthropic" is accepted).
	WireAPI string `toml:"wire_api"`
	// DefaultModel is used when no model was chosen.
	DefaultModel string `toml:"default_model"`
	// APIKey, or the variable APIKeyEnv names, authenticates requests.
	APIKey    string `toml:"api_key"`
	APIKeyEnv string `toml:"api_key_env"`
	// MaxTokens caps each response (default 8192).
	MaxTokens int `toml:"max_tokens"`
	// ContextWindow, when set, turns on history compaction and usage updates.
	ContextWindow int `toml:"context_window"`
	// Temperature, when set, is sent with every request (0 for greedy).
	Temperature *float64 `toml:"temperature"`
	// Headers are added to every request.
	Headers map[string]string `toml:"headers"`
	// Timeout bounds one model request ("10m" by default).
	Timeout Duration `toml:"timeout"`
}

// Key returns the API key, from the file or the environment.
func (e *Endpoint) Key() string {
	if e.APIKey != "" {
		return e.APIKey
	}
	if e.APIKeyEnv != "" {
		return os.Getenv(e.APIKeyEnv)
	}
	return ""
}

// Config is the whole file.
type Config struct {
	// DefaultEndpoint names the endpoint new sessions use.
	DefaultEndpoint string `toml:"default_endpoint"`
	// SystemPromptPath is a file whose text replaces the built-in system
	// prompt; `{cwd}` in the path is replaced by the session's directory.
	SystemPromptPath string `toml:"system_prompt_path"`
	// MaxTurnRequests caps model requests in one prompt turn (default 25).
	MaxTurnRequests int `toml:"max_turn_requests"`
	// CommandTimeout bounds one bash command run locally (default 10m).
	CommandTimeout Duration `toml:"command_timeout"`
	// DataDir holds sessions and remembered permissions (default
	// $XDG_DATA_HOME/cortex-acp).
	DataDir string `toml:"data_dir"`
	// Tools, when set, lists the built-in tools offered to the model (all
	// of them by default; `tools = []` offers none but MCP servers' tools).
	Tools *[]string `toml:"tools"`
	// MCPShortNames offers MCP tools under their own names (`get_weather`)
	// rather than `mcp__<server>__<tool>` when the name is free: small
	// local models copy unusual names poorly.
	MCPShortNames bool `toml:"mcp_short_names"`
	// Endpoints are the upstreams.
	Endpoints []Endpoint `toml:"endpoints"`
}

// Duration is a time.Duration written as "30s" in TOML.
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// Endpoint returns the endpoint called name.
func (c *Config) Endpoint(name string) (*Endpoint, bool) {
	for i := range c.Endpoints {
		if c.Endpoints[i].Name == name {
			return &c.Endpoints[i], true
		}
	}
	return nil, false
}

// Path chooses the config file: the flag, then $CORTEX_ACP_CONFIG, then
// $XDG_CONFIG_HOME/cortex-acp/config.toml. explicit reports whether the
// user named it (a missing named file is an error; a missing default one
// means "configure from the environment").
func Path(flag string) (path string, explicit bool) {
	if flag != "" {
		return flag, true
	}
	if p := os.Getenv("CORTEX_ACP_CONFIG"); p != "" {
		return p, true
	}
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "cortex-acp", "config.toml"), false
}

// Load reads and validates the config. With no file it builds one
// endpoint from the environment: CORTEX_ACP_BASE_URL (default a local
// cortex gateway), CORTEX_ACP_WIRE_API, CORTEX_ACP_MODEL and
// CORTEX_ACP_API_KEY (or OPENAI_API_KEY). Bad endpoints other than the
// default are dropped with a warning to log.
func Load(flag string, log *slog.Logger) (*Config, error) {
	path, explicit := Path(flag)
	var c Config
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		md, err := toml.Decode(string(data), &c)
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		if un := md.Undecoded(); len(un) > 0 {
			keys := make([]string, len(un))
			for i, k := range un {
				keys[i] = k.String()
			}
			log.Warn("Ignoring unknown config keys", "file", path, "keys", strings.Join(keys, ", "))
		}
	case errors.Is(err, os.ErrNotExist) && !explicit:
		c = FromEnv()
	default:
		return nil, fmt.Errorf("reading config: %w", err)
	}
	if err := c.validate(log); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &c, nil
}

// FromEnv is the configuration used without a file.
func FromEnv() Config {
	ep := Endpoint{
		Name:         "cortex",
		BaseURL:      envOr("CORTEX_ACP_BASE_URL", DefaultBaseURL),
		WireAPI:      envOr("CORTEX_ACP_WIRE_API", WireOpenAIChat),
		DefaultModel: os.Getenv("CORTEX_ACP_MODEL"),
		APIKey:       envOr("CORTEX_ACP_API_KEY", os.Getenv("OPENAI_API_KEY")),
	}
	return Config{DefaultEndpoint: ep.Name, Endpoints: []Endpoint{ep}}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func (c *Config) validate(log *slog.Logger) error {
	if c.MaxTurnRequests == 0 {
		c.MaxTurnRequests = DefaultMaxTurnRequests
	}
	if c.MaxTurnRequests < 0 {
		return fmt.Errorf("max_turn_requests: must be positive, got %d", c.MaxTurnRequests)
	}
	if c.CommandTimeout.Duration == 0 {
		c.CommandTimeout.Duration = DefaultCommandTimeout
	}
	if len(c.Endpoints) == 0 {
		return errors.New("endpoints: at least one [[endpoints]] entry is required")
	}
	if c.DefaultEndpoint == "" {
		c.DefaultEndpoint = c.Endpoints[0].Name
	}
	seen := map[string]bool{}
	var kept []Endpoint
	for i := range c.Endpoints {
		ep := c.Endpoints[i]
		err := ep.normalise()
		if err == nil && seen[ep.Name] {
			err = errors.New("name: duplicate")
		}
		if err != nil {
			err = fmt.Errorf("endpoints[%d] (%q): %w", i, ep.Name, err)
			if ep.Name == c.DefaultEndpoint {
				return err
			}
			log.Warn("Skipping a bad endpoint", "error", err.Error())
			continue
		}
		seen[ep.Name] = true
		kept = append(kept, ep)
	}
	c.Endpoints = kept
	if _, ok := c.Endpoint(c.DefaultEndpoint); !ok {
		return fmt.Errorf("default_endpoint: no endpoint is named %q", c.DefaultEndpoint)
	}
	return nil
}

func (e *Endpoint) normalise() error {
	if e.Name == "" {
		return errors.New("name: required")
	}
	if strings.ContainsAny(e.Name, ": ") {
		return errors.New("name: must not contain ':' or spaces")
	}
	if e.BaseURL == "" {
		return errors.New("base_url: required")
	}
	if !strings.HasPrefix(e.BaseURL, "http://") && !strings.HasPrefix(e.BaseURL, "https://") {
		return fmt.Errorf("base_url: %q is not an http(s) URL", e.BaseURL)
	}
	e.BaseURL = strings.TrimRight(e.BaseURL, "/")
	switch e.WireAPI {
	case "", WireOpenAIChat, "openai", "chat":
		e.WireAPI = WireOpenAIChat
	case WireOpenAIResponses, "responses":
		e.WireAPI = WireOpenAIResponses
	case WireAnthropicMessages, "anthropic":
		e.WireAPI = WireAnthropicMessages
	default:
		return fmt.Errorf("wire_api: %q is not openai-chat, openai-responses or anthropic-messages", e.WireAPI)
	}
	if e.MaxTokens == 0 {
		e.MaxTokens = DefaultMaxTokens
	}
	if e.MaxTokens < 0 || e.ContextWindow < 0 {
		return errors.New("max_tokens and context_window: must not be negative")
	}
	if e.Timeout.Duration == 0 {
		e.Timeout.Duration = DefaultTimeout
	}
	return nil
}
