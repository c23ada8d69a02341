package gateway

import (
	"fmt"
	"testing"
	"time"
)

func reps(n int) []Replica {
	var out []Replica
	for i := range n {
		out = append(out, Replica{Node: fmt.Sprintf("n%d", i), Endpoint: fmt.Sprintf("http://n%d", i)})
	}
	return out
}

func TestAffinityIsStableAndBoundedByLoad(t *testing.T) {
	b := NewBalancer()
	rs := reps(4)
	first, rel, _ := b.Pick(rs, 42, nil)
	rel()
	for range 20 {
		r, rel, _ := b.Pick(rs, 42, nil)
		rel()
		if r != first {
			t.Fatalf("same prefix went to %s, then %s", first.Node, r.Node)
		}
	}
	// One hot prefix held open: the bound spreads it over every replica.
	counts := map[string]int{}
	var releases []func()
	for range 40 {
		r, rel, _ := b.Pick(rs, 42, nil)
		counts[r.Node]++
		releases = append(releases, rel)
	}
	for _, rel := range releases {
		rel()
	}
	// Consistent hashing with bounded loads caps every replica at
	// ceil((1+ε) × average) = 13 of 40; the hottest takes its full share.
	for _, r := range rs {
		if c := counts[r.Node]; c > 13 {
			t.Fatalf("load %v: %s above the bound of 13", counts, r.Node)
		}
	}
	if counts[first.Node] != 13 {
		t.Fatalf("load %v: the prefix's own replica should fill up to the bound", counts)
	}
}

func TestLeastLoadedWithoutAffinity(t *testing.T) {
	b := NewBalancer()
	rs := reps(2)
	a, _, _ := b.Pick(rs, 0, nil)
	c, _, _ := b.Pick(rs, 0, nil)
	if a == c {
		t.Fatalf("both requests on %s", a.Node)
	}
	if _, _, ok := b.Pick(rs, 0, []string{rs[0].Endpoint, rs[1].Endpoint}); ok {
		t.Fatal("picked an excluded replica")
	}
}

func TestDownReplicaIsSkippedWhileOthersServe(t *testing.T) {
	b := NewBalancer()
	now := time.Unix(1000, 0)
	b.now = func() time.Time { return now }
	rs := reps(2)
	b.MarkDown(rs[0].Endpoint, 5*time.Second)
	for i := range 10 {
		r, rel, _ := b.Pick(rs, uint64(i+1), nil)
		rel()
		if r == rs[0] {
			t.Fatal("picked the replica that is down")
		}
	}
	// The only one left is better than none.
	if r, _, ok := b.Pick(rs, 0, []string{rs[1].Endpoint}); !ok || r != rs[0] {
		t.Fatalf("last resort: %v %v", r, ok)
	}
	now = now.Add(6 * time.Second)
	seen := map[Replica]bool{}
	for i := range 20 {
		r, rel, _ := b.Pick(rs, uint64(i+1), nil)
		rel()
		seen[r] = true
	}
	if !seen[rs[0]] {
		t.Fatal("the replica never came back after its time out")
	}
}
