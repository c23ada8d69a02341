package gateway

import (
	"fmt"
	"slices"
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
	first, rel, _ := b.Pick(rs, []uint64{42}, nil)
	rel()
	for range 20 {
		r, rel, _ := b.Pick(rs, []uint64{42}, nil)
		rel()
		if r != first {
			t.Fatalf("same prefix went to %s, then %s", first.Node, r.Node)
		}
	}
	// One hot prefix held open: the bound spreads it over every replica.
	counts := map[string]int{}
	var releases []func()
	for range 40 {
		r, rel, _ := b.Pick(rs, []uint64{42}, nil)
		counts[r.Node]++
		releases = append(releases, rel)
	}
	for _, rel := range releases {
		rel()
	}
	// Consistent hashing with bounded loads caps every replica at
	// ceil((1+HitEpsilon) × average) = 15 of 40 for a prefix it served,
	// and the overflow goes where the prefix was served last.
	for _, r := range rs {
		if c := counts[r.Node]; c > 15 {
			t.Fatalf("load %v: %s above the bound of 15", counts, r.Node)
		}
	}
	if len(counts) < 3 || counts[first.Node] < 10 {
		t.Fatalf("load %v: the prefix's own replica (%s) should take a full share, the rest spread", counts, first.Node)
	}
}

// A request goes to the replica that served the longest prefix it shares
// with an earlier request, not to where its first chunk hashes.
func TestLongestKnownPrefixWins(t *testing.T) {
	b := NewBalancer()
	rs := reps(4)
	home, rel, _ := b.Pick(rs, []uint64{7}, nil) // where prefix 7 hashes
	rel()
	// Load home past the bound, so a conversation starting with 7 goes
	// elsewhere and is remembered there.
	var hold []func()
	for range 3 {
		r, rel, _ := b.Pick([]Replica{home}, nil, nil)
		if r != home {
			t.Fatal("single candidate not picked")
		}
		hold = append(hold, rel)
	}
	away, rel, _ := b.Pick(rs, []uint64{7, 8, 9}, nil)
	rel()
	if away == home {
		t.Fatalf("went to %s, loaded past the bound", home.Node)
	}
	for _, rel := range hold {
		rel()
	}
	// The conversation goes on (7, 8, 9, 10): its replica holds 7-8-9.
	// Another that shares only the first chunk (7, 11) follows 7, which
	// was served last by the same replica.
	for _, keys := range [][]uint64{{7, 8, 9, 10}, {7, 8}, {7, 11}} {
		r, rel, _ := b.Pick(rs, keys, nil)
		rel()
		if r != away {
			t.Fatalf("%v went to %s; %s served its prefix", keys, r.Node, away.Node)
		}
	}
	// Loaded past the hit bound, the prefix's replica is passed over.
	for range 4 {
		_, rel, _ := b.Pick([]Replica{away}, nil, nil)
		defer rel()
	}
	if r, rel, _ := b.Pick(rs, []uint64{7, 8, 9, 10}, nil); r == away {
		t.Fatalf("%s took a 5th request with nothing elsewhere: past the bound", away.Node)
	} else {
		rel()
	}
}

func TestPrefixTableIsBounded(t *testing.T) {
	b := NewBalancer()
	b.PrefixEntries = 64
	rs := reps(2)
	for i := range 1000 {
		_, rel, _ := b.Pick(rs, []uint64{uint64(i + 1), uint64(i + 100000)}, nil)
		rel()
	}
	if n := len(b.recent) + len(b.older); n > 64 {
		t.Fatalf("table holds %d keys, bound 64", n)
	}
	if _, ok := b.lookup(1000); !ok {
		t.Fatal("the newest key was forgotten")
	}
	if _, ok := b.lookup(1); ok {
		t.Fatal("the oldest key is still there")
	}
}

func TestPrefixKeys(t *testing.T) {
	long := make([]byte, 10*PrefixChunk+100)
	for i := range long {
		long[i] = byte('a' + i%26)
	}
	k := PrefixKeys("ns/m", long)
	if len(k) != 10 {
		t.Fatalf("%d keys for 10 whole chunks, want 10", len(k))
	}
	// A conversation that grows keeps its keys: each stands for the whole
	// prefix up to its chunk.
	grown := PrefixKeys("ns/m", append(long[:len(long):len(long)], make([]byte, 3*PrefixChunk)...))
	if len(grown) != 13 || !slices.Equal(grown[:10], k) {
		t.Fatalf("grown prompt: %d keys, first 10 equal: %v", len(grown), slices.Equal(grown[:min(10, len(grown))], k))
	}
	// A change in the first chunk changes every key after it.
	changed := slices.Clone(long)
	changed[5] = '!'
	for i, c := range PrefixKeys("ns/m", changed) {
		if c == k[i] {
			t.Fatalf("key %d unchanged after the first chunk changed", i)
		}
	}
	if o := PrefixKeys("ns/other", long); o[0] == k[0] {
		t.Fatal("two models share a key")
	}
	if s := PrefixKeys("ns/m", []byte("hi")); len(s) != 1 {
		t.Fatalf("short prompt: %d keys, want 1", len(s))
	}
	if e := PrefixKeys("ns/m", nil); e != nil {
		t.Fatalf("empty prompt: %v, want none", e)
	}
	if n := len(PrefixKeys("ns/m", make([]byte, 200*PrefixChunk))); n != MaxPrefixKeys {
		t.Fatalf("%d keys for 200 chunks, want %d", n, MaxPrefixKeys)
	}
}

func TestLeastLoadedWithoutAffinity(t *testing.T) {
	b := NewBalancer()
	rs := reps(2)
	a, _, _ := b.Pick(rs, nil, nil)
	c, _, _ := b.Pick(rs, nil, nil)
	if a == c {
		t.Fatalf("both requests on %s", a.Node)
	}
	if _, _, ok := b.Pick(rs, nil, []string{rs[0].Endpoint, rs[1].Endpoint}); ok {
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
		r, rel, _ := b.Pick(rs, []uint64{uint64(i + 1)}, nil)
		rel()
		if r == rs[0] {
			t.Fatal("picked the replica that is down")
		}
	}
	// The only one left is better than none.
	r, rel, ok := b.Pick(rs, nil, []string{rs[1].Endpoint})
	if !ok || r != rs[0] {
		t.Fatalf("last resort: %v %v", r, ok)
	}
	rel()
	now = now.Add(6 * time.Second)
	seen := map[Replica]bool{}
	for i := range 20 {
		r, rel, _ := b.Pick(rs, []uint64{uint64(i + 1)}, nil)
		rel()
		seen[r] = true
	}
	if !seen[rs[0]] {
		t.Fatal("the replica never came back after its time out")
	}
}
