package chart

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestDryRunChart applies what the chart renders, for every value set, to
// a real API server with --dry-run=server: built-in schemas, strict field
// validation and the ServiceMonitor CRD all check it.
func TestDryRunChart(t *testing.T) {
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			out, objs := render(t, vs)
			applied := dryRunApply(t, out)
			if n := strings.Count(applied, "(server dry run)"); n != len(objs) {
				t.Errorf("%d objects applied, %d rendered:\n%s", n, len(objs), applied)
			}
		})
	}
}

// TestRestrictedPods: the manager's and the gateway's pods are admitted
// into a namespace that enforces the "restricted" Pod Security Standard.
// (The neuron needs a hostPath model cache, which only "privileged"
// namespaces allow.)
func TestRestrictedPods(t *testing.T) {
	env, kubectl := cluster(t)
	const ns = "cortex-restricted"
	for _, args := range [][]string{
		{"create", "namespace", ns},
		{"label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/enforce-version=latest"},
		{"-n", ns, "create", "serviceaccount", "cortex-manager"},
		{"-n", ns, "create", "serviceaccount", "cortex-gateway"},
	} {
		if _, err := run(kubectl, append([]string{"--kubeconfig", env.Kubeconfig}, args...)...); err != nil {
			t.Fatal(err)
		}
	}
	_, objs := render(t, valueSet{name: "everything", files: []string{"everything.yaml"}})
	tpls := podTemplates(t, objs)
	for _, name := range []string{"Deployment/cortex-manager", "Deployment/cortex-gateway"} {
		tpl := tpls[name]
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: strings.ToLower(strings.ReplaceAll(name, "/", "-")), Namespace: ns, Labels: tpl.Labels},
			Spec:       tpl.Spec,
		}
		pod.Spec.PriorityClassName = "" // the API server here has no such PriorityClass objects to resolve
		if err := env.Client.Create(context.Background(), pod, client.DryRunAll); err != nil {
			t.Errorf("%s is not admitted under the restricted Pod Security Standard: %v", name, err)
		}
	}

	// The namespace does enforce: a root pod is refused.
	root := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "root", Namespace: ns},
		Spec: corev1.PodSpec{
			ServiceAccountName: "cortex-manager",
			Containers:         []corev1.Container{{Name: "c", Image: "busybox"}},
		},
	}
	if err := env.Client.Create(context.Background(), root, client.DryRunAll); err == nil {
		t.Error("the restricted namespace admitted a pod without any security context")
	}
}

// TestSamples applies config/samples with --dry-run=server: every sample
// Model passes the CRD's schema and CEL validation.
func TestSamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(root, "config", "samples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var manifest strings.Builder
	models := 0
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		s := readFile(t, f)
		objs, err := decodeAll(s)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, o := range objs {
			if o.GetKind() != "Model" {
				t.Errorf("%s holds a %s", f, o.GetKind())
			}
			models++
		}
		manifest.WriteString("---\n" + s + "\n")
		kust := readFile(t, filepath.Join(root, "config", "samples", "kustomization.yaml"))
		if !strings.Contains(kust, "- "+filepath.Base(f)) {
			t.Errorf("config/samples/kustomization.yaml does not list %s", filepath.Base(f))
		}
	}
	if models < 4 {
		t.Fatalf("only %d sample Models", models)
	}
	out := dryRunApply(t, manifest.String(), "--namespace", "default")
	if n := strings.Count(out, "(server dry run)"); n != models {
		t.Errorf("%d of %d samples applied:\n%s", n, models, out)
	}
}

// TestDryRunRejectsInvalidModels: the dry-run above is not vacuous — the
// API server refuses a Model its validation rules forbid.
func TestDryRunRejectsInvalidModels(t *testing.T) {
	env, kubectl := cluster(t)
	bad := `apiVersion: cortex.helexa.ai/v1alpha1
kind: Model
metadata:
  name: bad
  namespace: default
spec:
  source:
    uri: hf://only-an-org.gguf
  replicas: {min: 3, max: 1}
`
	f := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(f, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := run(kubectl, "--kubeconfig", env.Kubeconfig, "apply", "--dry-run=server", "-f", f)
	if err == nil {
		t.Fatal("an invalid Model passed the dry run")
	}
	for _, want := range []string{"hf://", "replicas.min"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the rejection does not mention %q: %v", want, err)
		}
	}
}
