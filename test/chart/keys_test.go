package chart

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/helexa-ai/cortex/internal/gateway"
)

// TestKeysWithLimitsRenderTheStructuredFile: keys with models or limits
// become the structured keys file, which the gateway itself accepts, and
// the gateway is told how many replicas share the limits.
func TestKeysWithLimitsRenderTheStructuredFile(t *testing.T) {
	_, objs := render(t, valueSet{name: "limited", set: []string{
		"gateway.apiKeys.keys[0].name=alice", "gateway.apiKeys.keys[0].key=sk-alice-0123456789",
		"gateway.apiKeys.keys[1].name=ci", "gateway.apiKeys.keys[1].key=sk-ci-0123456789",
		"gateway.apiKeys.keys[1].models={llama,team/*}",
		"gateway.apiKeys.keys[1].requestsPerMinute=60", "gateway.apiKeys.keys[1].maxConcurrent=4",
		"gateway.replicas=3",
	}})
	keys := secretData(t, get(t, objs, "Secret", "cortex-api-keys"), "api-keys")
	for _, want := range []string{"\nkeys:\n", "name: ci", "requestsPerMinute: 60", "team/*"} {
		if !strings.Contains(keys, want) {
			t.Fatalf("keys file lacks %q:\n%s", want, keys)
		}
	}
	p := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(p, []byte(keys), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := gateway.DefaultConfig()
	cfg.APIKeysFile, cfg.AllowAnonymous = p, false
	if _, err := gateway.New(cfg, gateway.Options{}); err != nil {
		t.Fatalf("the gateway refuses the rendered keys file: %v\n%s", err, keys)
	}
	gw := container(t, podTemplates(t, objs)["Deployment/cortex-gateway"], "gateway")
	if !slices.Contains(gw.Args, "--key-limit-replicas=3") {
		t.Fatalf("gateway args %q lack --key-limit-replicas=3", gw.Args)
	}

	// Plain keys keep the plain format.
	_, objs = render(t, valueSet{name: "plain", set: []string{"gateway.apiKeys.keys[0].name=bob", "gateway.apiKeys.keys[0].key=sk-bob-0123456789"}})
	if keys := secretData(t, get(t, objs, "Secret", "cortex-api-keys"), "api-keys"); !strings.Contains(keys, "\nbob:sk-bob-0123456789\n") {
		t.Fatalf("plain keys file %q", keys)
	}
	// A negative limit is refused by the schema.
	if _, err := renderRaw(t, "--set", "gateway.apiKeys.keys[0].name=a", "--set", "gateway.apiKeys.keys[0].key=sk-a-0123456789",
		"--set", "gateway.apiKeys.keys[0].tokensPerMinute=-1"); err == nil {
		t.Fatal("a negative limit rendered")
	}
}
