package e2e

import (
	"regexp"
	"strings"
	"testing"
)

// 1. kubectl apply → Ready, shown by kubectl get.
func TestApplyWithKubectlBecomesReady(t *testing.T) {
	apply(t, modelManifest("stories", "stories260K.gguf",
		"  servedNames: [stories, tinystories]\n  priority: 100\n  replicas: {min: 1, max: 1}\n  engine: {contextLength: 2048, parallel: 2}\n"))
	mustRun(t, "wait", "-n", ns, "--for=condition=Ready", "model/stories", "--timeout=120s")
	out := mustRun(t, "get", "models", "-n", ns)
	t.Logf("kubectl get models:\n%s", out)
	if !regexp.MustCompile(`(?m)^stories\s+1/1\s+Ready\s+neuron-[ab]\s+\S+Mi\s`).MatchString(out) {
		t.Fatalf("kubectl get models does not show stories ready on a node:\n%s", out)
	}
	out = mustRun(t, "get", "neuronnodes")
	t.Logf("kubectl get neuronnodes:\n%s", out)
	if strings.Count(out, "True") < 2 {
		t.Fatalf("both neurons should be Ready:\n%s", out)
	}
}
