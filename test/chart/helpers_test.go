package chart

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/helexa-ai/cortex/internal/testenv"
)

const (
	releaseName = "cortex"
	namespace   = "cortex-system"
)

var (
	root     = testenv.RepoRoot()
	chartDir = filepath.Join(root, "charts", "cortex")
)

func TestMain(m *testing.M) {
	code := m.Run()
	if apiserver.env != nil {
		_ = apiserver.env.Stop()
	}
	os.Exit(code)
}

// helm obtains the helm binary once per package run (hack/helm.sh prints
// it, building it into ~/.cache on the first run). No helm is a failure.
var helmBin = sync.OnceValues(func() (string, error) {
	cmd := exec.Command(filepath.Join(root, "hack", "helm.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/helm.sh: %w\n%s", err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
})

func helm(t *testing.T) string {
	t.Helper()
	p, err := helmBin()
	if err != nil {
		t.Fatalf("no helm binary (the chart tests need one): %v", err)
	}
	return p
}

// run runs a command and returns its stdout; stderr is in the error.
func run(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// valueSet is one way of installing the chart.
type valueSet struct {
	name string
	// files are under testdata/values.
	files []string
	set   []string
}

func (v valueSet) args() []string {
	var a []string
	for _, f := range v.files {
		a = append(a, "--values", filepath.Join("testdata", "values", f))
	}
	for _, s := range v.set {
		a = append(a, "--set", s)
	}
	return a
}

// valueSets are the installs every render test covers.
var valueSets = []valueSet{
	{name: "defaults"},
	{name: "everything", files: []string{"everything.yaml"}},
	{name: "cpu", files: []string{"cpu.yaml"}},
	{name: "existing-secrets", files: []string{"existing-secrets.yaml"}},
	{name: "anonymous", files: []string{"anonymous.yaml"}},
}

// renderRaw runs helm template and returns its output or error.
func renderRaw(t *testing.T, extra ...string) (string, error) {
	t.Helper()
	args := append([]string{"template", releaseName, chartDir, "--namespace", namespace}, extra...)
	return run(helm(t), args...)
}

// render renders the chart with a value set and decodes every object.
func render(t *testing.T, vs valueSet) (string, []*unstructured.Unstructured) {
	t.Helper()
	out, err := renderRaw(t, vs.args()...)
	if err != nil {
		t.Fatalf("rendering %s: %v", vs.name, err)
	}
	objs, err := decodeAll(out)
	if err != nil {
		t.Fatalf("decoding %s: %v", vs.name, err)
	}
	return out, objs
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// decodeAll splits a multi-document YAML stream into objects, skipping
// empty documents.
func decodeAll(s string) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	for _, doc := range docSep.Split(s, -1) {
		j, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("%w in:\n%s", err, doc)
		}
		if s := strings.TrimSpace(string(j)); s == "null" || s == "{}" {
			continue
		}
		// Unstructured's own decoder keeps integers as int64, which the
		// typed conversions need.
		o := &unstructured.Unstructured{}
		if err := o.UnmarshalJSON(j); err != nil {
			return nil, fmt.Errorf("%w in:\n%s", err, doc)
		}
		objs = append(objs, o)
	}
	return objs, nil
}

// find returns the objects of a kind.
func find(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// get returns the one object of a kind and name, failing the test if it is
// missing.
func get(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range find(objs, kind) {
		if o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s rendered", kind, name)
	return nil
}

// typed converts an object into a typed API struct, rejecting unknown
// fields.
func typed[T any](t *testing.T, o *unstructured.Unstructured) *T {
	t.Helper()
	v := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, v, true); err != nil {
		t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
	}
	return v
}

// podTemplates returns the pod templates of the Deployments and DaemonSets
// with their workload's name.
func podTemplates(t *testing.T, objs []*unstructured.Unstructured) map[string]corev1.PodTemplateSpec {
	t.Helper()
	out := map[string]corev1.PodTemplateSpec{}
	for _, o := range find(objs, "Deployment") {
		out["Deployment/"+o.GetName()] = typed[appsv1.Deployment](t, o).Spec.Template
	}
	for _, o := range find(objs, "DaemonSet") {
		out["DaemonSet/"+o.GetName()] = typed[appsv1.DaemonSet](t, o).Spec.Template
	}
	return out
}

// apiserver is the package's kube-apiserver, started by the first test that
// needs it.
var apiserver struct {
	once    sync.Once
	env     *testenv.Env
	kubectl string
	err     error
}

// cluster starts the API server (once), creates the release namespace and
// installs the ServiceMonitor CRD the chart's monitoring objects need.
func cluster(t *testing.T) (*testenv.Env, string) {
	t.Helper()
	apiserver.once.Do(func() {
		env, err := testenv.Start()
		if err != nil {
			apiserver.err = err
			return
		}
		apiserver.env = env
		if apiserver.kubectl, err = env.Kubectl(); err != nil {
			apiserver.err = err
			return
		}
		k := func(args ...string) error {
			_, err := run(apiserver.kubectl, append([]string{"--kubeconfig", env.Kubeconfig}, args...)...)
			return err
		}
		steps := [][]string{
			{"create", "namespace", namespace},
			{"apply", "--server-side", "-f", filepath.Join("testdata", "servicemonitor-crd.yaml")},
			{"wait", "--for", "condition=Established", "--timeout", "60s", "crd/servicemonitors.monitoring.coreos.com"},
		}
		for _, s := range steps {
			if err := k(s...); err != nil {
				apiserver.err = err
				return
			}
		}
	})
	if apiserver.err != nil {
		t.Fatalf("no API server (the chart tests need one; KUBEBUILDER_ASSETS=$(hack/envtest.sh)): %v", apiserver.err)
	}
	return apiserver.env, apiserver.kubectl
}

// dryRunApply applies a manifest stream with --dry-run=server, so the API
// server validates every object (schemas, CRD validation rules, unknown
// fields) without persisting it.
func dryRunApply(t *testing.T, manifest string, extra ...string) string {
	t.Helper()
	env, kubectl := cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{"--kubeconfig", env.Kubeconfig, "apply", "--dry-run=server", "--validate=strict", "-f", "-"}, extra...)
	cmd := exec.CommandContext(ctx, kubectl, args...)
	cmd.Stdin = strings.NewReader(manifest)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl apply --dry-run=server: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
