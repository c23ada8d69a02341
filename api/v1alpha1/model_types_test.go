package v1alpha1

import "testing"

func TestParseModelKey(t *testing.T) {
	m := &Model{}
	m.Namespace, m.Name = "team-a", "llama"
	if ns, name, ok := ParseModelKey(m.Key()); !ok || ns != m.Namespace || name != m.Name {
		t.Fatalf("ParseModelKey(%q) = %q, %q, %v", m.Key(), ns, name, ok)
	}
	for _, bad := range []string{"", "llama", "/llama", "team-a/", "/", "a/b/c", "team-a//llama"} {
		if ns, name, ok := ParseModelKey(bad); ok {
			t.Errorf("ParseModelKey(%q) = %q, %q, true; want not a key", bad, ns, name)
		}
	}
}
