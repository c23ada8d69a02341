package anthropic

import (
	"net/http"
	"strings"
)

// API versions cortex knows. Any other anthropic-version value is accepted
// as well: the Messages API shape cortex serves does not differ between
// them, and refusing a newer client would help no one.
const (
	Version20230601 = "2023-06-01"
	Version20261021 = "2026-10-21"
	// DefaultVersion applies when a client sends no anthropic-version.
	DefaultVersion = Version20230601
)

// Headers are the Anthropic request headers that shape a request.
type Headers struct {
	// Version is anthropic-version, trimmed; DefaultVersion when absent.
	Version string
	// KnownVersion reports whether Version is one cortex knows.
	KnownVersion bool
	// Betas are the anthropic-beta values: split on commas across every
	// header line, trimmed, empty ones dropped, duplicates removed, in
	// order. Unknown betas are kept and never an error.
	Betas []string
}

// ParseHeaders reads anthropic-version and anthropic-beta from h. It never
// fails: the gateway logs what it did not know and serves the request.
func ParseHeaders(h http.Header) Headers {
	v := strings.TrimSpace(h.Get("anthropic-version"))
	if v == "" {
		v = DefaultVersion
	}
	out := Headers{Version: v, KnownVersion: v == Version20230601 || v == Version20261021}
	seen := map[string]bool{}
	for _, line := range h.Values("anthropic-beta") {
		for _, b := range strings.Split(line, ",") {
			b = strings.TrimSpace(b)
			if b == "" || seen[b] {
				continue
			}
			seen[b] = true
			out.Betas = append(out.Betas, b)
		}
	}
	return out
}

// HasBeta reports whether the client enabled beta name.
func (h Headers) HasBeta(name string) bool {
	for _, b := range h.Betas {
		if b == name {
			return true
		}
	}
	return false
}
