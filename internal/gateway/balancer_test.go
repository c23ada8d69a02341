package gateway

import (
	"fmt"
	"math"
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

// keys is a prompt of n whole chunks with the given keys.
func keys(ks ...uint64) Prompt { return Prompt{Keys: ks, Bytes: len(ks) * PrefixChunk} }

func TestAffinityIsStableAndYieldsToTheWait(t *testing.T) {
	b := NewBalancer()
	rs := reps(4)
	first := pickOnce(b, rs, keys(42))
	for range 20 {
		r := pickOnce(b, rs, keys(42))
		if r != first {
			t.Fatalf("same prefix went to %s, then %s", first.Node, r.Node)
		}
	}
	// One hot prompt held open, none of it past its prefill: its replica
	// keeps it while the wait there is within 2.5× the soonest's, and the
	// rest spreads over every replica.
	counts := map[string]int{}
	var held []*Lease
	for range 40 {
		r, l, _ := b.Pick(rs, keys(42), nil)
		counts[r.Node]++
		held = append(held, l)
	}
	for _, l := range held {
		l.Release()
	}
	lo, hi := 40, 0
	for _, r := range rs {
		lo, hi = min(lo, counts[r.Node]), max(hi, counts[r.Node])
	}
	if lo == 0 || hi > 2*lo+2 {
		t.Fatalf("load %v: want every replica used and none above twice the least loaded (+2)", counts)
	}
	if b.Loads() == nil || len(b.Loads()) != 0 {
		t.Fatalf("released everything, load left: %v", b.Loads())
	}
}

// A replica still prefilling a long prompt is passed over for a short
// one; once that prompt's first token came, it is not.
func TestPrefillInFlightCountsUntilTheFirstToken(t *testing.T) {
	b := NewBalancer()
	rs := reps(2)
	long := Prompt{Keys: []uint64{1}, Bytes: 64 * PrefixChunk}
	busy, big, _ := b.Pick(rs, long, nil)
	short := Prompt{Keys: []uint64{2}, Bytes: 100}
	for i := range 5 {
		short.Keys = []uint64{uint64(100 + i)}
		r := pickOnce(b, rs, short)
		if r == busy {
			t.Fatalf("short prompt %d went to %s, still prefilling 128 KiB", i, busy.Node)
		}
	}
	big.Started()
	if got := b.Loads()[deviceKey(busy)]; got != (Load{InFlight: 1}) {
		t.Fatalf("after the first token: %+v, want one in flight and no prefill", got)
	}
	big.Started() // twice is harmless
	big.Release()
	big.Release()
	if len(b.Loads()) != 0 {
		t.Fatalf("released: load %v left", b.Loads())
	}
	var nilLease *Lease
	nilLease.Started()
	nilLease.Release()
}

// A request goes to the replica that served the longest prefix it shares
// with an earlier request, not to where its first chunk hashes, and stays
// there while its wait is within bounds — even with more requests in
// flight there than elsewhere, since the prefix it holds saves the
// prefill.
func TestLongestKnownPrefixWins(t *testing.T) {
	b := NewBalancer()
	rs := reps(4)
	home, l, _ := b.Pick(rs, keys(7), nil) // where prefix 7 hashes
	l.Release()
	// Keep home prefilling a long prompt, so a conversation starting
	// with 7 goes elsewhere and is remembered there.
	_, hold, _ := b.Pick([]Replica{home}, Prompt{Bytes: 64 * PrefixChunk}, nil)
	away := pickOnce(b, rs, keys(7, 8, 9))
	if away == home {
		t.Fatalf("went to %s, busy prefilling 128 KiB", home.Node)
	}
	hold.Release()
	// The conversation goes on (7, 8, 9, 10): its replica holds 7-8-9.
	// Another that shares only the first chunk (7, 11) follows 7, which
	// was served last by the same replica.
	for _, p := range []Prompt{keys(7, 8, 9, 10), keys(7, 8), keys(7, 11)} {
		r := pickOnce(b, rs, p)
		if r != away {
			t.Fatalf("%v went to %s; %s served its prefix", p.Keys, r.Node, away.Node)
		}
	}
	// Three requests decoding there (past their first token) do not send
	// a long conversation away from the replica that holds all but its
	// last chunk: elsewhere it would prefill 40 chunks.
	conv := make([]uint64, 40)
	for i := range conv {
		conv[i] = uint64(1000 + i)
	}
	holder := pickOnce(b, rs, keys(conv...))
	for range 3 {
		_, l, _ := b.Pick([]Replica{holder}, Prompt{}, nil)
		l.Started()
		defer l.Release()
	}
	if r := pickOnce(b, rs, keys(append(conv, 2000)...)); r != holder {
		t.Fatalf("went to %s, away from %s which holds 40 of its 41 chunks", r.Node, holder.Node)
	}
	// Behind a long prefill there, it goes elsewhere after all.
	_, l, _ = b.Pick([]Replica{holder}, Prompt{Bytes: 256 * PrefixChunk}, nil)
	defer l.Release()
	if r := pickOnce(b, rs, keys(append(conv, 2001)...)); r == holder {
		t.Fatalf("stayed on %s behind 256 chunks of prefill", holder.Node)
	}
}

// A replica whose parallel sequences are all taken makes a request wait
// for one to free: that counts against it.
func TestFullReplicaCountsTheWaitForASequence(t *testing.T) {
	b := NewBalancer()
	rs := reps(2)
	p := Prompt{Keys: []uint64{5}, Bytes: 3 * PrefixChunk, Parallel: 2}
	home := pickOnce(b, rs, p)
	// Two decoding there: with this one, three.
	for range 2 {
		_, l, _ := b.Pick([]Replica{home}, Prompt{}, nil)
		l.Started()
		defer l.Release()
	}
	// With four sequences it fits, and the cached prefix wins.
	p.Parallel = 4
	if r := pickOnce(b, rs, p); r != home {
		t.Fatalf("went to %s, away from the prefix on %s with a sequence free", r.Node, home.Node)
	}
	p.Parallel = 2
	if r := pickOnce(b, rs, p); r == home {
		t.Fatalf("went to %s, whose two sequences are busy", home.Node)
	}
}

func TestPrefixTableIsBounded(t *testing.T) {
	b := NewBalancer()
	b.PrefixEntries = 64
	rs := reps(2)
	for i := range 1000 {
		pickOnce(b, rs, keys(uint64(i+1), uint64(i+100000)))
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
	a, _, _ := b.Pick(rs, Prompt{}, nil)
	c, _, _ := b.Pick(rs, Prompt{}, nil)
	if a == c {
		t.Fatalf("both requests on %s", a.Node)
	}
	if _, _, ok := b.Pick(rs, Prompt{}, []string{rs[0].Endpoint, rs[1].Endpoint}); ok {
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
		r := pickOnce(b, rs, keys(uint64(i+1)))
		if r == rs[0] {
			t.Fatal("picked the replica that is down")
		}
	}
	// The only one left is better than none.
	r, l, ok := b.Pick(rs, Prompt{}, []string{rs[1].Endpoint})
	if !ok || r != rs[0] {
		t.Fatalf("last resort: %v %v", r, ok)
	}
	l.Release()
	now = now.Add(6 * time.Second)
	seen := map[Replica]bool{}
	for i := range 20 {
		r := pickOnce(b, rs, keys(uint64(i+1)))
		seen[r] = true
	}
	if !seen[rs[0]] {
		t.Fatal("the replica never came back after its time out")
	}
}

// A replica whose neuron reported a slower prefill counts its wait as
// longer, by the power SpeedExponent of the ratio, per Model.
func TestReplicaSpeedWeighsTheWait(t *testing.T) {
	b := NewBalancer()
	rs := reps(2)
	p := Prompt{Model: "ns/m", Bytes: 4 * PrefixChunk}
	// Unknown speeds: equal waits, the first replica.
	if r := pickOnce(b, rs, p); r != rs[0] {
		t.Fatalf("without speeds went to %s", r.Node)
	}
	b.SetSpeed("ns/m", rs[0].Endpoint, 1000)
	b.SetSpeed("ns/m", rs[1].Endpoint, 8000)
	if r := pickOnce(b, rs, p); r != rs[1] {
		t.Fatalf("went to %s, the slower", r.Node)
	}
	// Another Model's speeds do not apply.
	if r := pickOnce(b, rs, Prompt{Model: "ns/other", Bytes: p.Bytes}); r != rs[0] {
		t.Fatalf("another model went to %s", r.Node)
	}
	// Behind 16 chunks of prefill on the fast replica, a 4-chunk prompt
	// waits 21 chunks there (one more for the request in flight) and
	// 4 ÷ 8^-0.25 ≈ 6.7 on the slow one.
	_, hold, _ := b.Pick([]Replica{rs[1]}, Prompt{Model: "ns/m", Bytes: 16 * PrefixChunk}, nil)
	if r := pickOnce(b, rs, p); r != rs[0] {
		t.Fatalf("went to %s behind 16 chunks of prefill", r.Node)
	}
	hold.Release()
	// Rates within a factor of two are the same speed: what one kind of
	// GPU measures varies with the prompts.
	b.SetSpeed("ns/m", rs[0].Endpoint, 4500)
	if r := pickOnce(b, rs, p); r != rs[0] {
		t.Fatalf("went to %s, reported 1.8× as fast", r.Node)
	}
	// An absurd rate on one replica does not make the other's wait
	// infinite: behind a long prefill there, the slow one still serves.
	b.SetSpeed("ns/m", rs[1].Endpoint, 1e300)
	_, hold, _ = b.Pick([]Replica{rs[1]}, Prompt{Model: "ns/m", Bytes: 4096 * PrefixChunk}, nil)
	if r := pickOnce(b, rs, p); r != rs[0] {
		t.Fatalf("went to %s behind 4096 chunks of prefill", r.Node)
	}
	hold.Release()
	// A rate of 0 (or nonsense) forgets it.
	b.SetSpeed("ns/m", rs[1].Endpoint, 0)
	b.SetSpeed("ns/m", rs[0].Endpoint, math.NaN())
	if r := pickOnce(b, rs, p); r != rs[0] {
		t.Fatalf("speeds forgotten, went to %s", r.Node)
	}
}

// pickOnce picks a replica for p and ends the request at once.
func pickOnce(b *Balancer, rs []Replica, p Prompt) Replica {
	r, l, _ := b.Pick(rs, p, nil)
	l.Release()
	return r
}

// Models on one device take turns on its worker, so a long prompt of one
// delays the others there; a Model on the node's other device runs on
// another worker and delays nobody here.
func TestLoadCountsPerDeviceWorker(t *testing.T) {
	x0 := Replica{Node: "x", Endpoint: "http://x", Device: "0"}
	x1 := Replica{Node: "x", Endpoint: "http://x", Device: "1"}
	y0 := Replica{Node: "y", Endpoint: "http://y", Device: "0"}
	a := []Replica{x0, y0}
	toX := func(b *Balancer) int {
		n := 0
		for i := range 16 {
			if pickOnce(b, a, Prompt{Model: "a", Keys: []uint64{uint64(1000 + i)}, Bytes: 100}) == x0 {
				n++
			}
		}
		return n
	}

	b := NewBalancer()
	_, other, _ := b.Pick([]Replica{x1}, Prompt{Model: "b", Keys: []uint64{1}, Bytes: 256 * PrefixChunk}, nil)
	if n := toX(b); n == 0 || n == 16 {
		t.Fatalf("with b prefilling on x's other device, %d of 16 new prompts of a went to x; want x and y both used", n)
	}
	other.Release()

	b = NewBalancer()
	_, other, _ = b.Pick([]Replica{{Node: "x", Endpoint: "http://x", Device: "0"}}, Prompt{Model: "b", Keys: []uint64{1}, Bytes: 256 * PrefixChunk}, nil)
	if n := toX(b); n != 0 {
		t.Fatalf("with b prefilling on a's device of x, %d of 16 new prompts of a went to x; want none", n)
	}
	other.Release()
	if len(b.Loads()) != 0 {
		t.Fatalf("released: load %v left", b.Loads())
	}
}

// A Model's parallel sequences are its own: another Model's requests on
// the same device slow its steps (a chunk each) but take none of its
// sequences.
func TestSequenceWaitCountsTheModelsOwnRequests(t *testing.T) {
	x := Replica{Node: "x", Endpoint: "http://x", Device: "0"}
	y := Replica{Node: "y", Endpoint: "http://y", Device: "0"}
	b := NewBalancer()
	b.HitEpsilon = 0
	// Three answers of b decoding on a's device of x.
	for i := range 3 {
		if _, _, ok := b.Pick([]Replica{x}, Prompt{Model: "b", Keys: []uint64{uint64(50 + i)}, Bytes: 100, Parallel: 1}, nil); !ok {
			t.Fatal("no pick")
		}
	}
	// a's conversation: 7 of its 8 chunks served on x.
	conv := []uint64{1, 2, 3, 4, 5, 6, 7, 8}
	b.Learn(conv[:7], x.Endpoint)
	p := Prompt{Model: "a", Keys: conv, Bytes: 8 * PrefixChunk, Parallel: 1}
	// On x: 1 chunk to prefill and 3 in flight; on y: 8 to prefill.
	if r := pickOnce(b, []Replica{x, y}, p); r != x {
		t.Fatalf("a's turn went to %s; want x, where b's requests hold none of a's sequences", r.Node)
	}
	// Four of a's own requests on x fill its one sequence and queue: 3 + 4
	// chunks and 16 for the sequences, against y's 8.
	for i := range 4 {
		b.Pick([]Replica{x}, Prompt{Model: "a", Keys: []uint64{uint64(90 + i)}, Bytes: 1, Parallel: 1}, nil)
	}
	if r := pickOnce(b, []Replica{x, y}, p); r != y {
		t.Fatalf("a's turn went to %s; want y, as x's one sequence has a queue", r.Node)
	}
}
