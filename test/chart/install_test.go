package chart

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestInstallUpgradeKeepsSecrets installs the chart for real into the API
// server, upgrades it, and checks that the generated neuron token and API
// key survive the upgrade (the chart reads them back with lookup) and that
// the install notes tell the user how to reach the gateway.
func TestInstallUpgradeKeepsSecrets(t *testing.T) {
	env, _ := cluster(t)
	const ns = "cortex-install"
	h := helm(t)
	base := []string{"--kubeconfig", env.Kubeconfig, "--namespace", ns}

	notes, err := run(h, append([]string{"install", "cortex", chartDir, "--create-namespace"}, base...)...)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"kubectl -n cortex-install port-forward svc/cortex-gateway 8080:80",
		"export CORTEX_API_KEY=$(kubectl -n cortex-install get secret cortex-api-keys",
		"kind: Model",
		"ANTHROPIC_BASE_URL=$CORTEX_URL",
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("install notes lack %q:\n%s", want, notes)
		}
	}

	read := func() (token, keys string) {
		t.Helper()
		var s corev1.Secret
		ctx := context.Background()
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "cortex-neuron-token"}, &s); err != nil {
			t.Fatal(err)
		}
		token = string(s.Data["token"])
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "cortex-api-keys"}, &s); err != nil {
			t.Fatal(err)
		}
		return token, string(s.Data["api-keys"])
	}
	token, keys := read()
	if len(token) != 64 || !strings.Contains(keys, "default:sk-cortex-") {
		t.Fatalf("generated token %q, keys %q", token, keys)
	}

	if _, err := run(h, append([]string{"upgrade", "cortex", chartDir, "--set", "gateway.replicas=3"}, base...)...); err != nil {
		t.Fatal(err)
	}
	token2, keys2 := read()
	if token2 != token || keys2 != keys {
		t.Errorf("upgrade regenerated the secrets:\ntoken %q -> %q\nkeys %q -> %q", token, token2, keys, keys2)
	}

	// Explicit keys replace the generated one.
	if _, err := run(h, append([]string{"upgrade", "cortex", chartDir, "--set", "gateway.apiKeys.keys[0].name=bob", "--set", "gateway.apiKeys.keys[0].key=sk-bob-0123456789"}, base...)...); err != nil {
		t.Fatal(err)
	}
	if _, keys3 := read(); !strings.Contains(keys3, "bob:sk-bob-0123456789") || strings.Contains(keys3, "default:") {
		t.Errorf("keys after setting gateway.apiKeys.keys: %q", keys3)
	}

	if _, err := run(h, append([]string{"uninstall", "cortex"}, base...)...); err != nil {
		t.Fatal(err)
	}
}
