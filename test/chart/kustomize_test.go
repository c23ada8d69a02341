package chart

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the kustomize bases in config/ from the chart (make kustomize-bases)")

// kustomizeFiles maps each generated file to the objects it holds.
var kustomizeFiles = map[string]func(o *unstructured.Unstructured) bool{
	"config/manager/manager.yaml": componentIs("manager"),
	"config/gateway/gateway.yaml": func(o *unstructured.Unstructured) bool {
		return componentIs("gateway")(o) || componentIs("gateway-peers")(o)
	},
	"config/neuron/neuron.yaml":              componentIs("neuron"),
	"config/prometheus/servicemonitors.yaml": func(o *unstructured.Unstructured) bool { return o.GetKind() == "ServiceMonitor" },
}

func componentIs(c string) func(o *unstructured.Unstructured) bool {
	return func(o *unstructured.Unstructured) bool {
		return o.GetKind() != "ServiceMonitor" && o.GetLabels()["app.kubernetes.io/component"] == c
	}
}

var kindOrder = []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
	"Service", "Deployment", "DaemonSet", "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor"}

// kustomizeBases renders the chart with testdata/kustomize-values.yaml and
// turns it into the plain manifests of the kustomize bases: no Secrets
// (the user creates them), no Helm bookkeeping labels.
func kustomizeBases(t *testing.T) map[string]string {
	t.Helper()
	out, err := renderRaw(t, "--values", filepath.Join("testdata", "kustomize-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeAll(out)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]*unstructured.Unstructured{}
	for _, o := range objs {
		if o.GetKind() == "Secret" {
			continue
		}
		l := o.GetLabels()
		delete(l, "helm.sh/chart")
		l["app.kubernetes.io/managed-by"] = "kustomize"
		o.SetLabels(l)
		placed := ""
		for f, match := range kustomizeFiles {
			if match(o) {
				if placed != "" {
					t.Fatalf("%s %s belongs to %s and %s", o.GetKind(), o.GetName(), placed, f)
				}
				placed = f
			}
		}
		if placed == "" {
			t.Fatalf("%s %s belongs to no kustomize base", o.GetKind(), o.GetName())
		}
		files[placed] = append(files[placed], o)
	}
	result := map[string]string{}
	for f, list := range files {
		slices.SortStableFunc(list, func(a, b *unstructured.Unstructured) int {
			if d := slices.Index(kindOrder, a.GetKind()) - slices.Index(kindOrder, b.GetKind()); d != 0 {
				return d
			}
			return strings.Compare(a.GetName(), b.GetName())
		})
		var b strings.Builder
		b.WriteString("# Generated from charts/cortex by `make kustomize-bases` (values:\n")
		b.WriteString("# test/chart/testdata/kustomize-values.yaml). Do not edit: change the chart.\n")
		for _, o := range list {
			if slices.Index(kindOrder, o.GetKind()) < 0 {
				t.Fatalf("no place in kindOrder for %s", o.GetKind())
			}
			y, err := yaml.Marshal(o.Object)
			if err != nil {
				t.Fatal(err)
			}
			b.WriteString("---\n")
			b.Write(y)
		}
		result[f] = b.String()
	}
	return result
}

// TestKustomizeBases: config/{manager,gateway,neuron,prometheus} are what
// the chart renders, so the two ways of installing cannot drift apart.
func TestKustomizeBases(t *testing.T) {
	want := kustomizeBases(t)
	if len(want) != len(kustomizeFiles) {
		t.Fatalf("generated %d files, want %d", len(want), len(kustomizeFiles))
	}
	for f, content := range want {
		path := filepath.Join(root, f)
		if *update {
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if readFileOr(path) != content {
			t.Errorf("%s is stale: run `make kustomize-bases` and commit", f)
		}
	}
}

// TestKustomizeDryRun builds the kustomize bases with kubectl's kustomize
// and applies them with --dry-run=server.
func TestKustomizeDryRun(t *testing.T) {
	env, kubectl := cluster(t)
	for _, dir := range []string{"config/default", "config/prometheus"} {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			out, err := run(kubectl, "--kubeconfig", env.Kubeconfig, "kustomize", filepath.Join(root, dir))
			if err != nil {
				t.Fatal(err)
			}
			objs, err := decodeAll(out)
			if err != nil {
				t.Fatal(err)
			}
			k := kinds(objs)
			want := map[string]map[string]int{
				"config/default":    {"CustomResourceDefinition": 2, "Namespace": 1, "Deployment": 2, "DaemonSet": 1, "ClusterRole": 3, "NetworkPolicy": 1},
				"config/prometheus": {"ServiceMonitor": 3, "ConfigMap": 1},
			}[dir]
			for kind, n := range want {
				if k[kind] != n {
					t.Errorf("%s builds %d %s, want %d (all: %v)", dir, k[kind], kind, n, k)
				}
			}
			for _, o := range objs {
				if ns := o.GetNamespace(); ns != "" && ns != namespace {
					t.Errorf("%s %s is in namespace %s", o.GetKind(), o.GetName(), ns)
				}
			}
			applied := dryRunApply(t, out)
			if n := strings.Count(applied, "(server dry run)"); n != len(objs) {
				t.Errorf("%d of %d objects applied:\n%s", n, len(objs), applied)
			}
		})
	}
}
