package chart

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

// TestChartCopiesAreCurrent: the chart's CRDs and RBAC files are the
// generated ones (hack/chart-sync.sh, run by `make manifests`).
func TestChartCopiesAreCurrent(t *testing.T) {
	const fix = "run `make manifests` (hack/chart-sync.sh) and commit"
	srcs, err := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
	if err != nil || len(srcs) == 0 {
		t.Fatalf("no CRDs in config/crd/bases: %v", err)
	}
	var names []string
	for _, src := range srcs {
		name := filepath.Base(src)
		names = append(names, name)
		if readFile(t, src) != readFileOr(filepath.Join(chartDir, "crds", name)) {
			t.Errorf("charts/cortex/crds/%s differs from config/crd/bases: %s", name, fix)
		}
	}
	copies, _ := filepath.Glob(filepath.Join(chartDir, "crds", "*.yaml"))
	for _, c := range copies {
		if n := filepath.Base(c); n != "kustomization.yaml" && !slices.Contains(names, n) {
			t.Errorf("charts/cortex/crds/%s has no source in config/crd/bases: %s", n, fix)
		}
	}
	kust := readFile(t, filepath.Join(chartDir, "crds", "kustomization.yaml"))
	for _, n := range names {
		if !strings.Contains(kust, "- "+n+"\n") {
			t.Errorf("charts/cortex/crds/kustomization.yaml does not list %s: %s", n, fix)
		}
	}

	for _, c := range []string{"manager", "gateway", "neuron"} {
		src := filepath.Join(root, "config", "rbac", c, "role.yaml")
		dst := filepath.Join(chartDir, "files", "rbac", c+".yaml")
		want, err := os.ReadFile(src)
		switch {
		case err == nil:
			if string(want) != readFileOr(dst) {
				t.Errorf("charts/cortex/files/rbac/%s.yaml differs from config/rbac/%s/role.yaml: %s", c, c, fix)
			}
		case os.IsNotExist(err) && c == "neuron":
			if !strings.Contains(readFileOr(dst), "PLACEHOLDER") {
				t.Errorf("config/rbac/neuron/role.yaml is missing and files/rbac/neuron.yaml is not the placeholder: %s", fix)
			}
			t.Logf("PENDING: config/rbac/neuron/role.yaml is not generated yet; the chart uses the placeholder rules in charts/cortex/files/rbac/neuron.yaml")
		default:
			t.Errorf("%s: %v", src, err)
		}
	}
}

func readFileOr(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// grants flattens rules into "group/resource:verb" strings.
func grants(rules []rbacv1.PolicyRule) []string {
	var out []string
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					out = append(out, g+"/"+res+":"+v)
				}
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// TestRBACFromGeneratedRoles: each component is granted exactly what its
// generated role asks for — nothing missing, nothing added — except that
// the manager's Lease rules live in a namespaced Role (with the events of
// its leader election) instead of its ClusterRole.
func TestRBACFromGeneratedRoles(t *testing.T) {
	_, objs := render(t, valueSet{name: "defaults"})
	for _, c := range []string{"manager", "gateway", "neuron"} {
		t.Run(c, func(t *testing.T) {
			generated, err := decodeAll(readFile(t, filepath.Join(chartDir, "files", "rbac", c+".yaml")))
			if err != nil {
				t.Fatal(err)
			}
			var want []rbacv1.PolicyRule
			for _, o := range generated {
				if o.GetKind() == "ClusterRole" {
					want = append(want, typed[rbacv1.ClusterRole](t, o).Rules...)
				}
			}
			if len(want) == 0 {
				t.Fatal("the generated role has no rules")
			}
			cluster := typed[rbacv1.ClusterRole](t, get(t, objs, "ClusterRole", "cortex-"+c)).Rules
			binding := typed[rbacv1.ClusterRoleBinding](t, get(t, objs, "ClusterRoleBinding", "cortex-"+c))
			if binding.RoleRef.Name != "cortex-"+c || binding.Subjects[0].Name != "cortex-"+c || binding.Subjects[0].Namespace != namespace {
				t.Errorf("ClusterRoleBinding %+v does not bind the component's ServiceAccount", binding)
			}
			var namespaced []rbacv1.PolicyRule
			if c == "manager" {
				namespaced = typed[rbacv1.Role](t, get(t, objs, "Role", "cortex-manager-leader-election")).Rules
			}
			got := grants(append(slices.Clone(cluster), namespaced...))
			for _, g := range grants(want) {
				if !slices.Contains(got, g) {
					t.Errorf("generated grant %s is missing from the chart", g)
				}
			}
			wantGrants := grants(want)
			for _, g := range grants(cluster) {
				if !slices.Contains(wantGrants, g) {
					t.Errorf("the chart's ClusterRole grants %s, which the generated role does not", g)
				}
			}
			for _, g := range grants(namespaced) {
				if !slices.Contains(wantGrants, g) && !strings.HasPrefix(g, "/events:") {
					t.Errorf("the leader-election Role grants %s beyond the generated role", g)
				}
			}
		})
	}
}
