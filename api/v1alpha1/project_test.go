package v1alpha1

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// TestProjectFile keeps the kubebuilder PROJECT file true to the API: the
// group is group.domain, every kind registered here is listed with this
// package's path and version, and each kind's scope matches its generated
// CRD.
func TestProjectFile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "PROJECT"))
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Domain      string   `json:"domain"`
		Layout      []string `json:"layout"`
		ProjectName string   `json:"projectName"`
		Repo        string   `json:"repo"`
		Version     string   `json:"version"`
		Resources   []struct {
			API *struct {
				CRDVersion string `json:"crdVersion"`
				Namespaced bool   `json:"namespaced"`
			} `json:"api"`
			Controller bool   `json:"controller"`
			Domain     string `json:"domain"`
			Group      string `json:"group"`
			Kind       string `json:"kind"`
			Path       string `json:"path"`
			Version    string `json:"version"`
		} `json:"resources"`
	}
	if err := yaml.UnmarshalStrict(data, &p); err != nil {
		t.Fatalf("PROJECT: %v", err)
	}
	gopath := reflect.TypeFor[Model]().PkgPath()
	if p.Version != "3" || !slices.Equal(p.Layout, []string{"go.kubebuilder.io/v4"}) || p.ProjectName != "cortex" ||
		!strings.HasPrefix(gopath, p.Repo+"/") {
		t.Errorf("PROJECT header: version %q, layout %v, projectName %q, repo %q (package %s)", p.Version, p.Layout, p.ProjectName, p.Repo, gopath)
	}

	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for k := range s.KnownTypes(GroupVersion) {
		if !strings.HasSuffix(k, "List") && !strings.HasSuffix(k, "Options") && k != "WatchEvent" && k != "Status" {
			kinds = append(kinds, k)
		}
	}
	slices.Sort(kinds)
	var listed []string
	for _, r := range p.Resources {
		listed = append(listed, r.Kind)
		if r.Group+"."+r.Domain != GroupVersion.Group || r.Domain != p.Domain || r.Version != GroupVersion.Version || r.Path != gopath || !r.Controller {
			t.Errorf("PROJECT resource %s: group %q domain %q version %q path %q controller %v; want %s/%s from %s with a controller",
				r.Kind, r.Group, r.Domain, r.Version, r.Path, r.Controller, GroupVersion.Group, GroupVersion.Version, gopath)
		}
		if r.API == nil || r.API.CRDVersion != "v1" {
			t.Errorf("PROJECT resource %s: want api.crdVersion v1", r.Kind)
			continue
		}
		crd, err := os.ReadFile(filepath.Join("..", "..", "config", "crd", "bases", GroupVersion.Group+"_"+strings.ToLower(r.Kind)+"s.yaml"))
		if err != nil {
			t.Errorf("PROJECT resource %s: %v", r.Kind, err)
			continue
		}
		var c struct {
			Spec struct {
				Scope string `json:"scope"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(crd, &c); err != nil {
			t.Fatal(err)
		}
		if want := c.Spec.Scope == "Namespaced"; r.API.Namespaced != want {
			t.Errorf("PROJECT resource %s: namespaced %v, but its CRD's scope is %s", r.Kind, r.API.Namespaced, c.Spec.Scope)
		}
	}
	slices.Sort(listed)
	if !slices.Equal(listed, kinds) {
		t.Errorf("PROJECT lists kinds %v; the API registers %v", listed, kinds)
	}
}
