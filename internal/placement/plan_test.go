package placement

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"
)

func TestCompute(t *testing.T) {
	tests := []struct {
		name    string
		nodes   []Node
		models  []Model
		load    []string // "model@node[devices]"
		unload  []string // "model@node Reason[ for model]"
		keep    []string // "model@node"
		unsched map[string]string
		desired map[string]int // checked when not nil
	}{
		// ---- fitting ----
		{
			name:    "fits on one GPU",
			nodes:   []Node{mkNode("n1")},
			models:  []Model{mkModel("ns/a", wanted())},
			load:    []string{"ns/a@n1[0]"},
			desired: map[string]int{"ns/a": 1},
		},
		{
			name:   "no demand, no min: nothing placed",
			nodes:  []Node{mkNode("n1")},
			models: []Model{mkModel("ns/a", demandAgo(time.Hour))},
			// in demand an hour ago, keep-alive 15m: idle
			desired: map[string]int{"ns/a": 0},
		},
		{
			name:   "tightest single GPU that holds it",
			nodes:  []Node{mkNode("n1", withGPUs(80, 80, 80), used(0, 60), used(1, 68), used(2, 10))},
			models: []Model{mkModel("ns/a", wanted())},
			load:   []string{"ns/a@n1[1]"},
		},
		{
			name:   "several models on one GPU",
			nodes:  []Node{mkNode("n1")},
			models: []Model{mkModel("ns/a", needs(30), wanted()), mkModel("ns/b", needs(30), wanted()), mkModel("ns/c", needs(15), wanted())},
			load:   []string{"ns/a@n1[0]", "ns/b@n1[0]", "ns/c@n1[0]"},
		},
		{
			name:   "joins models already resident on the GPU",
			nodes:  []Node{mkNode("n1", holds("ns/x", size(40)), holds("ns/y", size(20)))},
			models: []Model{mkModel("ns/a", needs(20), wanted()), mkModel("ns/x", wanted()), mkModel("ns/y", wanted())},
			load:   []string{"ns/a@n1[0]"},
			keep:   []string{"ns/x@n1", "ns/y@n1"},
		},
		{
			name:   "split over the fewest GPUs when none holds it alone",
			nodes:  []Node{mkNode("n1", withGPUs(48, 48, 48, 48), used(0, 40), used(1, 8), used(2, 10))},
			models: []Model{mkModel("ns/big", needs(70), wanted())},
			// free 8, 40, 38, 48: the two largest (48 + 40) hold 70
			load: []string{"ns/big@n1[1 3]"},
		},
		{
			name:   "exact device count even when one GPU would do",
			nodes:  []Node{mkNode("n1", withGPUs(80, 80, 80, 80), used(0, 50), used(3, 70))},
			models: []Model{mkModel("ns/tp", needs(10), devices(2), wanted())},
			load:   []string{"ns/tp@n1[1 2]"},
		},
		{
			name:   "exact device count skips nodes with too few GPUs",
			nodes:  []Node{mkNode("a-small", withGPUs(80)), mkNode("b-big", withGPUs(24, 24, 24, 24))},
			models: []Model{mkModel("ns/tp", needs(40), devices(4), wanted())},
			load:   []string{"ns/tp@b-big[0 1 2 3]"},
		},
		{
			name:   "most free memory after placement wins, then name",
			nodes:  []Node{mkNode("n1", used(0, 30)), mkNode("n2", used(0, 20)), mkNode("n3", used(0, 20))},
			models: []Model{mkModel("ns/a", wanted())},
			load:   []string{"ns/a@n2[0]"},
		},
		{
			name:   "reservedBytes kept free on every device",
			nodes:  []Node{mkNode("n1", withGPUs(40, 40), reserve(8))},
			models: []Model{mkModel("ns/a", needs(33), devices(1), wanted()), mkModel("ns/b", needs(32), devices(1), wanted())},
			load:   []string{"ns/b@n1[0]"},
			unsched: map[string]string{
				"ns/a": "needs 33.0 GiB on one GPU; largest free is 32.0 GiB on n1",
			},
		},
		{
			name: "a loading model's memory counts as taken before the GPU shows it",
			nodes: []Node{mkNode("n1", holds("ns/dl", size(60), state(StateLoading))),
				mkNode("n2", used(0, 50))},
			models: []Model{mkModel("ns/dl", wanted()), mkModel("ns/a", needs(25), wanted())},
			// n1 reports 80 free, but 60 are promised to ns/dl: 20 < 25
			load: []string{"ns/a@n2[0]"},
			keep: []string{"ns/dl@n1"},
		},
		{
			name:   "two loads in one plan never overcommit a device",
			nodes:  []Node{mkNode("n1")},
			models: []Model{mkModel("ns/a", needs(50), wanted(), prio(1)), mkModel("ns/b", needs(50), wanted())},
			load:   []string{"ns/a@n1[0]"},
			unsched: map[string]string{
				"ns/b": "needs 50.0 GiB on one node; best is 30.0 GiB on n1 (1 GPU)",
			},
		},
		{
			name:  "two loads in one plan spread over devices and nodes",
			nodes: []Node{mkNode("n1", withGPUs(40, 40)), mkNode("n2", withGPUs(40))},
			models: []Model{mkModel("ns/a", needs(30), wanted()), mkModel("ns/b", needs(30), wanted()),
				mkModel("ns/c", needs(30), wanted()), mkModel("ns/d", needs(30), wanted())},
			// n1 has more free: a goes there; then n1 (50 left) vs n2 (40): b on n1; c on n2
			load: []string{"ns/a@n1[0]", "ns/b@n1[1]", "ns/c@n2[0]"},
			unsched: map[string]string{
				"ns/d": "needs 30.0 GiB on one node; best is 20.0 GiB on n1 (2 GPUs)",
			},
		},

		// ---- desired replicas, keep-alive, surplus ----
		{
			name:    "min replicas placed without demand",
			nodes:   []Node{mkNode("n1"), mkNode("n2")},
			models:  []Model{mkModel("ns/a", minR(2), maxR(2))},
			load:    []string{"ns/a@n1[0]", "ns/a@n2[0]"},
			desired: map[string]int{"ns/a": 2},
		},
		{
			name:    "pinned keeps one replica without demand",
			nodes:   []Node{mkNode("n1")},
			models:  []Model{mkModel("ns/a", pinned())},
			load:    []string{"ns/a@n1[0]"},
			desired: map[string]int{"ns/a": 1},
		},
		{
			name:    "idle past keep-alive is unloaded",
			nodes:   []Node{mkNode("n1", holds("ns/a", idleFor(20*time.Minute)))},
			models:  []Model{mkModel("ns/a", demandAgo(20*time.Minute))},
			unload:  []string{"ns/a@n1 Idle"},
			desired: map[string]int{"ns/a": 0},
		},
		{
			name:    "within keep-alive stays",
			nodes:   []Node{mkNode("n1", holds("ns/a", idleFor(10*time.Minute)))},
			models:  []Model{mkModel("ns/a", demandAgo(10*time.Minute))},
			keep:    []string{"ns/a@n1"},
			desired: map[string]int{"ns/a": 1},
		},
		{
			name:   "a fresh load gets a full keep-alive even if demand is older",
			nodes:  []Node{mkNode("n1", holds("ns/a", usedAgo(time.Hour), loadedAgo(time.Minute)))},
			models: []Model{mkModel("ns/a", demandAgo(20*time.Minute))},
			keep:   []string{"ns/a@n1"},
		},
		{
			name:   "keep-alive 0 is raised to the minimum",
			nodes:  []Node{mkNode("n1", holds("ns/a", idleFor(10*time.Second)))},
			models: []Model{mkModel("ns/a", keepAlive(0), demandAgo(10*time.Second))},
			keep:   []string{"ns/a@n1"},
		},
		{
			name:   "min replicas never idled out",
			nodes:  []Node{mkNode("n1", holds("ns/a", idleFor(48*time.Hour))), mkNode("n2", holds("ns/a", idleFor(47*time.Hour)))},
			models: []Model{mkModel("ns/a", minR(1), maxR(2))},
			// the one idle longest goes
			unload:  []string{"ns/a@n1 Idle"},
			keep:    []string{"ns/a@n2"},
			desired: map[string]int{"ns/a": 1},
		},
		{
			name:   "pinned model's last replica never idled out, extra ones are",
			nodes:  []Node{mkNode("n1", holds("ns/a", idleFor(48*time.Hour))), mkNode("n2", holds("ns/a", idleFor(47*time.Hour)))},
			models: []Model{mkModel("ns/a", pinned(), maxR(2))},
			unload: []string{"ns/a@n1 Idle"},
			keep:   []string{"ns/a@n2"},
		},
		{
			name: "a loading replica is never idled out and counts as demand",
			nodes: []Node{mkNode("n1", holds("ns/a", state(StateLoading), usedAgo(0), loadedAgo(0),
				func(r *Resident) { r.LastUsed, r.LoadedAt = time.Time{}, time.Time{} }))},
			models:  []Model{mkModel("ns/a", demandAgo(time.Hour))},
			keep:    []string{"ns/a@n1"},
			desired: map[string]int{"ns/a": 1},
		},
		{
			name: "max lowered: surplus unloaded, least useful first",
			nodes: []Node{
				mkNode("n1", holds("ns/a", busy(3))),
				mkNode("n2", holds("ns/a", usedAgo(time.Second))),
				mkNode("n3", holds("ns/a", usedAgo(time.Minute)))},
			models:  []Model{mkModel("ns/a", wanted(), maxR(2))},
			unload:  []string{"ns/a@n3 Surplus"},
			keep:    []string{"ns/a@n1", "ns/a@n2"},
			desired: map[string]int{"ns/a": 2},
		},
		{
			name: "scales out by in-flight load, spreading over nodes",
			nodes: []Node{mkNode("n1", holds("ns/a", busy(9))), mkNode("n2"), mkNode("n3"),
				mkNode("n4", holds("ns/other", size(75)))},
			models: []Model{mkModel("ns/a", wanted(), maxR(4), perReplica(4)), mkModel("ns/other", wanted())},
			// ceil(9/4) = 3
			load:    []string{"ns/a@n2[0]", "ns/a@n3[0]"},
			keep:    []string{"ns/a@n1", "ns/other@n4"},
			desired: map[string]int{"ns/a": 3, "ns/other": 1},
		},
		{
			name:   "scale-out replica stays while used, idles out on its own clock",
			nodes:  []Node{mkNode("n1", holds("ns/a", busy(1))), mkNode("n2", holds("ns/a", usedAgo(5*time.Minute))), mkNode("n3", holds("ns/a", idleFor(16*time.Minute)))},
			models: []Model{mkModel("ns/a", wanted(), maxR(4), perReplica(4))},
			// target 1; n2 used 5 min ago stays; n3 idle 16 min goes
			unload:  []string{"ns/a@n3 Idle"},
			keep:    []string{"ns/a@n1", "ns/a@n2"},
			desired: map[string]int{"ns/a": 2},
		},

		// ---- spread ----
		{
			name:   "at most one replica per node",
			nodes:  []Node{mkNode("n1", holds("ns/a")), mkNode("n2", cordoned())},
			models: []Model{mkModel("ns/a", minR(2), maxR(2))},
			keep:   []string{"ns/a@n1"},
			unsched: map[string]string{
				"ns/a": "the only schedulable node n1 already holds a replica (spread)",
			},
		},
		{
			name:   "all schedulable nodes hold a replica",
			nodes:  []Node{mkNode("n1", holds("ns/a")), mkNode("n2")},
			models: []Model{mkModel("ns/a", minR(3), maxR(3))},
			load:   []string{"ns/a@n2[0]"},
			keep:   []string{"ns/a@n1"},
			unsched: map[string]string{
				"ns/a": "all 2 schedulable nodes already hold a replica (spread)",
			},
			desired: map[string]int{"ns/a": 3},
		},

		// ---- node loss, failures, cordons, selectors ----
		{
			name:   "replica on a node that is not Ready is re-placed, and not unloaded there",
			nodes:  []Node{mkNode("n1", notReady(), holds("ns/a")), mkNode("n2")},
			models: []Model{mkModel("ns/a", minR(1))},
			load:   []string{"ns/a@n2[0]"},
		},
		{
			name:   "nothing is sent to a node that is not Ready, even for a deleted model",
			nodes:  []Node{mkNode("n1", notReady(), holds("ns/a"), holds("ns/gone"))},
			models: []Model{mkModel("ns/a", deleting())},
		},
		{
			name:   "failed replica cleared and retried on another node",
			nodes:  []Node{mkNode("n1", holds("ns/a", state(StateFailed))), mkNode("n2", used(0, 10))},
			models: []Model{mkModel("ns/a", wanted())},
			load:   []string{"ns/a@n2[0]"},
			unload: []string{"ns/a@n1 Failed"},
		},
		{
			name:   "failed replica cleared; its node waits a pass",
			nodes:  []Node{mkNode("n1", holds("ns/a", state(StateFailed)))},
			models: []Model{mkModel("ns/a", wanted())},
			unload: []string{"ns/a@n1 Failed"},
			unsched: map[string]string{
				"ns/a": "the only schedulable node n1 is still unloading a replica",
			},
		},
		{
			name:   "unloading replica left alone, its memory still held",
			nodes:  []Node{mkNode("n1", holds("ns/old", size(70), state(StateUnloading)))},
			models: []Model{mkModel("ns/a", needs(20), wanted())},
			unsched: map[string]string{
				"ns/a": "needs 20.0 GiB on one node; best is 10.0 GiB on n1 (1 GPU)",
			},
		},
		{
			name:   "AvoidNodes used last",
			nodes:  []Node{mkNode("n1"), mkNode("n2", used(0, 30))},
			models: []Model{mkModel("ns/a", wanted(), avoid("n1")), mkModel("ns/b", wanted(), avoid("n1", "n2"))},
			load:   []string{"ns/a@n2[0]", "ns/b@n1[0]"},
		},
		{
			name:   "AvoidNodes come after evicting elsewhere",
			nodes:  []Node{mkNode("n1"), mkNode("n2", holds("ns/low", size(80)))},
			models: []Model{mkModel("ns/a", needs(40), prio(5), wanted(), avoid("n1")), mkModel("ns/low", wanted())},
			load:   []string{"ns/a@n2[0]", "ns/low@n1[0]"},
			unload: []string{"ns/low@n2 Evicted for ns/a"},
		},
		{
			name:   "cordoned node keeps its replicas, takes no new ones",
			nodes:  []Node{mkNode("n1", cordoned(), holds("ns/a")), mkNode("n2")},
			models: []Model{mkModel("ns/a", wanted()), mkModel("ns/b", wanted())},
			load:   []string{"ns/b@n2[0]"},
			keep:   []string{"ns/a@n1"},
		},
		{
			name:   "all matching nodes cordoned",
			nodes:  []Node{mkNode("n1", cordoned()), mkNode("n2", cordoned()), mkNode("n3", cordoned()), mkNode("n4", notReady())},
			models: []Model{mkModel("ns/a", wanted())},
			unsched: map[string]string{
				"ns/a": "all 3 matching nodes are cordoned",
			},
		},
		{
			name:   "the only matching node cordoned",
			nodes:  []Node{mkNode("n1", cordoned(), labels("gpu", "h100")), mkNode("n2")},
			models: []Model{mkModel("ns/a", wanted(), selector("gpu", "h100"))},
			unsched: map[string]string{
				"ns/a": "the only matching node n1 is cordoned",
			},
		},
		{
			name:   "nodeSelector picks matching nodes only",
			nodes:  []Node{mkNode("n1", labels("gpu", "a100")), mkNode("n2", labels("gpu", "h100", "zone", "b"), used(0, 40))},
			models: []Model{mkModel("ns/a", wanted(), selector("gpu", "h100"))},
			load:   []string{"ns/a@n2[0]"},
		},
		{
			name:   "no Ready node matches nodeSelector",
			nodes:  []Node{mkNode("n1", labels("gpu", "a100")), mkNode("n2", labels("gpu", "h100"), notReady())},
			models: []Model{mkModel("ns/a", wanted(), selector("gpu", "h100"))},
			unsched: map[string]string{
				"ns/a": "no Ready node matches nodeSelector gpu=h100",
			},
		},
		{
			name:   "nodeNames restricts placement",
			nodes:  []Node{mkNode("n1"), mkNode("n2", used(0, 40)), mkNode("n3", used(0, 60))},
			models: []Model{mkModel("ns/a", wanted(), nodeNames("n3", "n2"))},
			load:   []string{"ns/a@n2[0]"},
		},
		{
			name:   "no Ready node among nodeNames, with a selector",
			nodes:  []Node{mkNode("n1", labels("gpu", "h100")), mkNode("n2")},
			models: []Model{mkModel("ns/a", wanted(), nodeNames("n9", "n2"), selector("gpu", "h100", "zone", "a"))},
			unsched: map[string]string{
				"ns/a": "no Ready node matches nodeSelector gpu=h100,zone=a and nodeNames n2,n9",
			},
		},
		{
			name:   "no Ready node at all",
			nodes:  []Node{mkNode("n1", notReady())},
			models: []Model{mkModel("ns/a", wanted())},
			unsched: map[string]string{
				"ns/a": "no Ready node",
			},
		},
		{
			name: "misplaced replica serves until a matching one is Ready",
			nodes: []Node{mkNode("n1", labels("gpu", "a100"), holds("ns/a")),
				mkNode("n2", labels("gpu", "h100"))},
			models: []Model{mkModel("ns/a", wanted(), selector("gpu", "h100"))},
			load:   []string{"ns/a@n2[0]"},
			keep:   []string{"ns/a@n1"},
		},
		{
			name: "misplaced replica unloaded once a matching one is Ready",
			nodes: []Node{mkNode("n1", labels("gpu", "a100"), holds("ns/a")),
				mkNode("n2", labels("gpu", "h100"), holds("ns/a"))},
			models: []Model{mkModel("ns/a", wanted(), selector("gpu", "h100"))},
			unload: []string{"ns/a@n1 Misplaced"},
			keep:   []string{"ns/a@n2"},
		},

		{
			name: "misplaced replica serving requests waits for them",
			nodes: []Node{mkNode("n1", labels("gpu", "a100"), holds("ns/a", busy(2))),
				mkNode("n2", labels("gpu", "h100"), holds("ns/a"))},
			models: []Model{mkModel("ns/a", wanted(), selector("gpu", "h100"))},
			keep:   []string{"ns/a@n1", "ns/a@n2"},
		},

		// ---- placement order ----
		{
			name:  "equal priority: every model's first replica before a second",
			nodes: []Node{mkNode("n1"), mkNode("n2")},
			models: []Model{mkModel("ns/a", needs(50), minR(2), maxR(2)),
				mkModel("ns/b", needs(50), minR(1))},
			load: []string{"ns/a@n1[0]", "ns/b@n2[0]"},
			unsched: map[string]string{
				"ns/a": "needs 50.0 GiB on one node; best is 30.0 GiB on n2 (1 GPU)",
			},
			desired: map[string]int{"ns/a": 2, "ns/b": 1},
		},
		{
			name:  "higher priority first, then pinned, then older demand, then key",
			nodes: []Node{mkNode("n1", withGPUs(80, 80, 80, 80))},
			models: []Model{
				mkModel("ns/a-new", needs(80), demandAgo(time.Minute)),
				mkModel("ns/b-old", needs(80), demandAgo(5*time.Minute)),
				mkModel("ns/c-pinned", needs(80), pinned()),
				mkModel("ns/d-high", needs(80), prio(1), wanted()),
				mkModel("ns/e-new", needs(80), demandAgo(time.Minute)),
			},
			load: []string{"ns/a-new@n1[3]", "ns/b-old@n1[2]", "ns/c-pinned@n1[1]", "ns/d-high@n1[0]"},
			unsched: map[string]string{
				"ns/e-new": "needs 80.0 GiB on one node; no candidate node has free memory",
			},
		},

		// ---- deletion, orphans ----
		{
			name: "deleting unloads everywhere reachable",
			nodes: []Node{mkNode("n1", holds("ns/a")), mkNode("n2", holds("ns/a", state(StateLoading))),
				mkNode("n3", holds("ns/a", state(StateFailed))), mkNode("n4", notReady(), holds("ns/a")),
				mkNode("n5", holds("ns/a", state(StateUnloading)))},
			models:  []Model{mkModel("ns/a", deleting(), pinned(), minR(3), maxR(5), wanted())},
			unload:  []string{"ns/a@n1 Deleted", "ns/a@n2 Deleted", "ns/a@n3 Deleted"},
			desired: map[string]int{"ns/a": 0},
		},
		{
			name:   "orphaned resident unloaded and its memory reused",
			nodes:  []Node{mkNode("n1", holds("ns/gone", size(70)))},
			models: []Model{mkModel("ns/a", needs(50), wanted())},
			load:   []string{"ns/a@n1[0]"},
			unload: []string{"ns/gone@n1 Orphaned"},
		},

		// ---- eviction ----
		{
			name:   "higher priority evicts lower priority",
			nodes:  []Node{mkNode("n1", holds("ns/low", size(70)))},
			models: []Model{mkModel("ns/high", needs(40), prio(10), wanted()), mkModel("ns/low", wanted())},
			load:   []string{"ns/high@n1[0]"},
			unload: []string{"ns/low@n1 Evicted for ns/high"},
			unsched: map[string]string{
				"ns/low": "evicted from n1 for ns/high; the only schedulable node n1 is still unloading a replica",
			},
			desired: map[string]int{"ns/high": 1, "ns/low": 1},
		},
		{
			name:   "equal priority in demand, no request waiting: never evicted",
			nodes:  []Node{mkNode("n1", holds("ns/b", size(70)))},
			models: []Model{mkModel("ns/a", needs(40), wanted()), mkModel("ns/b", wanted())},
			keep:   []string{"ns/b@n1"},
			unsched: map[string]string{
				"ns/a": "needs 40.0 GiB on one node; best is 10.0 GiB on n1 (1 GPU); the next request for it may evict 1 idle replica of equal priority",
			},
		},
		{
			name:   "idle past keep-alive is freed before anything is evicted, whatever its priority",
			nodes:  []Node{mkNode("n1", holds("ns/idle", size(40), idleFor(time.Hour)), holds("ns/low", size(40)))},
			models: []Model{mkModel("ns/a", needs(40), prio(5), wanted()), mkModel("ns/idle", prio(100), demandAgo(time.Hour)), mkModel("ns/low", wanted())},
			load:   []string{"ns/a@n1[0]"},
			unload: []string{"ns/idle@n1 Idle"},
			keep:   []string{"ns/low@n1"},
		},
		{
			name:   "pinned is never evicted",
			nodes:  []Node{mkNode("n1", holds("ns/pin", size(70)))},
			models: []Model{mkModel("ns/high", needs(40), prio(10), wanted()), mkModel("ns/pin", pinned(), prio(-5))},
			keep:   []string{"ns/pin@n1"},
			unsched: map[string]string{
				"ns/high": "needs 40.0 GiB on one node; best is 10.0 GiB on n1 (1 GPU); held by ns/pin (pinned)",
			},
		},
		{
			name:   "a replica serving requests is never evicted",
			nodes:  []Node{mkNode("n1", holds("ns/low", size(70), busy(1)))},
			models: []Model{mkModel("ns/high", needs(40), prio(10), wanted()), mkModel("ns/low", wanted())},
			keep:   []string{"ns/low@n1"},
			unsched: map[string]string{
				"ns/high": "needs 40.0 GiB on one node; best is 10.0 GiB on n1 (1 GPU); waiting for ns/low to finish 1 request",
			},
		},
		{
			name:   "never evicted below min replicas",
			nodes:  []Node{mkNode("n1", holds("ns/low", size(70))), mkNode("n2", holds("ns/low2", size(70))), mkNode("n3", holds("ns/low2", size(70)))},
			models: []Model{mkModel("ns/high", needs(40), prio(10), minR(2), maxR(2)), mkModel("ns/low", needs(70), minR(1)), mkModel("ns/low2", needs(70), minR(1), maxR(2))},
			// ns/low has only its min; ns/low2 can give up one of two;
			// neither fits anywhere else to move
			load:   []string{"ns/high@n2[0]"},
			unload: []string{"ns/low2@n2 Evicted for ns/high"},
			keep:   []string{"ns/low@n1", "ns/low2@n3"},
			unsched: map[string]string{
				"ns/high": "needs 40.0 GiB on one node; best is 10.0 GiB on n1 (1 GPU); held by ns/low (replicas.min)",
			},
		},
		// ---- busy nodes (a call unanswered) ----
		{
			name:   "a busy node goes after the other nodes that fit now",
			nodes:  []Node{mkNode("n1", busyNode()), mkNode("n2", used(0, 40))},
			models: []Model{mkModel("ns/a", wanted())},
			load:   []string{"ns/a@n2[0]"},
		},
		{
			name:   "a busy node that fits is used before evicting elsewhere",
			nodes:  []Node{mkNode("n1", busyNode(), used(0, 60)), mkNode("n2", holds("ns/low", size(80)))},
			models: []Model{mkModel("ns/a", prio(5), wanted()), mkModel("ns/low", demandAgo(time.Hour))},
			load:   []string{"ns/a@n1[0]"},
			keep:   []string{"ns/low@n2"},
		},

		// ---- outdated replicas ----
		{
			name:   "an outdated replica is replaced, elsewhere in the same plan",
			nodes:  []Node{mkNode("n1", holds("ns/a", outdated())), mkNode("n2")},
			models: []Model{mkModel("ns/a", minR(1))},
			load:   []string{"ns/a@n2[0]"},
			unload: []string{"ns/a@n1 Outdated"},
		},
		{
			name:   "on a single node the replacement waits for the next pass",
			nodes:  []Node{mkNode("n1", holds("ns/a", outdated()))},
			models: []Model{mkModel("ns/a", wanted())},
			unload: []string{"ns/a@n1 Outdated"},
			unsched: map[string]string{
				"ns/a": "the only schedulable node n1 is still unloading a replica",
			},
		},
		{
			name:   "outdated replicas are replaced one at a time, first node first",
			nodes:  []Node{mkNode("n1", holds("ns/a", outdated())), mkNode("n2", holds("ns/a", outdated())), mkNode("n3")},
			models: []Model{mkModel("ns/a", minR(2), maxR(2))},
			load:   []string{"ns/a@n3[0]"},
			unload: []string{"ns/a@n1 Outdated"},
			keep:   []string{"ns/a@n2"},
		},
		{
			name:   "no replacement while a replica of the model is loading",
			nodes:  []Node{mkNode("n1", holds("ns/a", outdated())), mkNode("n2", holds("ns/a", state(StateLoading)))},
			models: []Model{mkModel("ns/a", minR(2), maxR(2))},
			keep:   []string{"ns/a@n1", "ns/a@n2"},
		},

		// ---- demand beats idleness ----
		{
			name: "a waiting request evicts the cheapest idle replica of equal priority",
			nodes: []Node{mkNode("n1", holds("ns/a", size(40), idleFor(2*time.Minute)),
				holds("ns/b", size(40), idleFor(time.Minute)))},
			models: []Model{mkModel("ns/c", needs(40), waiting()),
				mkModel("ns/a", demandAgo(2*time.Minute)), mkModel("ns/b", demandAgo(time.Minute))},
			// cost a = 40 GiB / 120 s, b = 40 GiB / 60 s: a goes
			load:   []string{"ns/c@n1[0]"},
			unload: []string{"ns/a@n1 Evicted for ns/c"},
			keep:   []string{"ns/b@n1"},
			unsched: map[string]string{
				"ns/a": "evicted from n1 for ns/c; the only schedulable node n1 is still unloading a replica",
			},
		},
		{
			name: "a waiting request takes lower priority before equal priority",
			nodes: []Node{mkNode("n1", holds("ns/eq", size(40), idleFor(time.Hour-time.Minute)), used(0, 40)),
				mkNode("n2", holds("ns/low", size(40), usedAgo(time.Second)), used(0, 40))},
			models: []Model{mkModel("ns/c", needs(40), prio(5), waiting()),
				mkModel("ns/eq", prio(5), keepAlive(2*time.Hour), demandAgo(time.Hour)), mkModel("ns/low", prio(1), wanted())},
			load:   []string{"ns/c@n2[0]"},
			unload: []string{"ns/low@n2 Evicted for ns/c"},
			keep:   []string{"ns/eq@n1"},
			unsched: map[string]string{
				"ns/low": "evicted from n2 for ns/c; needs 10.0 GiB on one node; no candidate node has free memory; on n1, waiting for ns/eq to idle out (in 1h1m)",
			},
		},
		{
			name:   "a waiting request never evicts higher priority",
			nodes:  []Node{mkNode("n1", holds("ns/high", size(80), idleFor(10*time.Minute)))},
			models: []Model{mkModel("ns/c", needs(40), waiting()), mkModel("ns/high", prio(1), demandAgo(10*time.Minute))},
			keep:   []string{"ns/high@n1"},
			unsched: map[string]string{
				"ns/c": "needs 40.0 GiB on one node; no candidate node has free memory; on n1, waiting for ns/high to idle out (in 5m)",
			},
		},
		{
			name: "a waiting request never evicts a busy, pinned or replicas.min replica",
			nodes: []Node{mkNode("n1", holds("ns/busy", size(30), busy(2)), holds("ns/pin", size(25)),
				holds("ns/min", size(25)))},
			models: []Model{mkModel("ns/c", needs(40), waiting()), mkModel("ns/busy", wanted()), mkModel("ns/pin", pinned()),
				mkModel("ns/min", minR(1))},
			keep: []string{"ns/busy@n1", "ns/min@n1", "ns/pin@n1"},
			unsched: map[string]string{
				"ns/c": "needs 40.0 GiB on one node; no candidate node has free memory; on n1, waiting for ns/busy to finish 2 requests",
			},
		},
		{
			name: "a replica loaded for a request is not evicted by equal priority before it served it",
			nodes: []Node{mkNode("n1", holds("ns/fresh", size(40), loadedAgo(5*time.Second), usedAgo(time.Hour)),
				holds("ns/old", size(40), idleFor(20*time.Second)))},
			models: []Model{mkModel("ns/c", needs(40), waiting()), mkModel("ns/fresh", waiting()), mkModel("ns/old", wanted())},
			// fresh is the cheaper victim by idle time since load, but it has
			// not served the request it was loaded for
			load:   []string{"ns/c@n1[0]"},
			unload: []string{"ns/old@n1 Evicted for ns/c"},
			keep:   []string{"ns/fresh@n1"},
			unsched: map[string]string{
				"ns/old": "evicted from n1 for ns/c; the only schedulable node n1 is still unloading a replica",
			},
		},
		{
			name:   "a fresh replica's protection ends after FreshGrace",
			nodes:  []Node{mkNode("n1", holds("ns/fresh", size(80), loadedAgo(FreshGrace+time.Second), usedAgo(time.Hour)))},
			models: []Model{mkModel("ns/c", needs(40), waiting()), mkModel("ns/fresh", wanted())},
			load:   []string{"ns/c@n1[0]"},
			unload: []string{"ns/fresh@n1 Evicted for ns/c"},
			unsched: map[string]string{
				"ns/fresh": "evicted from n1 for ns/c; the only schedulable node n1 is still unloading a replica",
			},
		},
		{
			name:   "only a fresh replica: the waiting request says what it waits for",
			nodes:  []Node{mkNode("n1", holds("ns/fresh", size(80), loadedAgo(5*time.Second), usedAgo(time.Hour)))},
			models: []Model{mkModel("ns/c", needs(40), waiting()), mkModel("ns/fresh", wanted())},
			keep:   []string{"ns/fresh@n1"},
			unsched: map[string]string{
				"ns/c": "needs 40.0 GiB on one node; no candidate node has free memory; on n1, waiting for ns/fresh to serve the request it was loaded for",
			},
		},
		{
			name: "equal priority is not evicted to scale out a model that has a replica",
			nodes: []Node{mkNode("n1", holds("ns/c", size(40), busy(8)), holds("ns/x", size(40), idleFor(time.Minute))),
				mkNode("n2", holds("ns/y", size(80), idleFor(time.Minute)))},
			models: []Model{mkModel("ns/c", needs(40), waiting(), perReplica(4), maxR(2)),
				mkModel("ns/x", demandAgo(time.Minute)), mkModel("ns/y", demandAgo(time.Minute))},
			keep: []string{"ns/c@n1", "ns/x@n1", "ns/y@n2"},
			unsched: map[string]string{
				"ns/c": "needs 40.0 GiB on one node; no candidate node has free memory; on n2, waiting for ns/y to idle out (in 14m)",
			},
		},
		{
			name:  "two waiting models, one GPU: the older request goes first, the other waits for it to be served",
			nodes: []Node{mkNode("n1", holds("ns/idle", size(80), idleFor(time.Minute)))},
			models: []Model{mkModel("ns/b", needs(80), waiting(), demandAgo(2*time.Second)), mkModel("ns/a", needs(80), waiting(), demandAgo(time.Second)),
				mkModel("ns/idle", demandAgo(time.Minute))},
			load:   []string{"ns/b@n1[0]"},
			unload: []string{"ns/idle@n1 Evicted for ns/b"},
			unsched: map[string]string{
				"ns/a":    "needs 80.0 GiB on one node; no candidate node has free memory; on n1, waiting for ns/b to load and serve the request it is loaded for",
				"ns/idle": "evicted from n1 for ns/b; the only schedulable node n1 is still unloading a replica",
			},
		},
		{
			name:   "small sizes are shown in MiB",
			nodes:  []Node{mkNode("n1", withGPUs(0.5), used(0, 0.25), holds("ns/pin", size(0.125)))},
			models: []Model{mkModel("ns/a", needs(0.25), waiting()), mkModel("ns/pin", pinned())},
			keep:   []string{"ns/pin@n1"},
			unsched: map[string]string{
				"ns/a": "needs 256.0 MiB on one node; best is 128.0 MiB on n1 (1 GPU); held by ns/pin (pinned)",
			},
		},
		{
			name:   "nearly equal sizes are shown with the precision that tells them apart",
			nodes:  []Node{mkNode("n1", withGPUs(0.5), used(0, 0.375))},
			models: []Model{mkModel("ns/a", func(m *Model) { m.BytesNeeded = 128<<20 + 4<<10 }, wanted())},
			unsched: map[string]string{
				"ns/a": "needs 128.004 MiB on one node; best is 128.000 MiB on n1 (1 GPU)",
			},
		},
		{
			name: "unplaceable message names evictable memory",
			nodes: []Node{mkNode("n1", holds("ns/low", size(30), on(0)), holds("ns/pin", size(45), on(0))),
				mkNode("n2", holds("ns/same", size(60)))},
			models: []Model{mkModel("ns/high", needs(50), prio(10), devices(1), wanted()),
				mkModel("ns/low", wanted()), mkModel("ns/pin", pinned()), mkModel("ns/same", prio(10), wanted())},
			keep: []string{"ns/low@n1", "ns/pin@n1", "ns/same@n2"},
			unsched: map[string]string{
				"ns/high": "needs 50.0 GiB on one GPU; largest free is 35.0 GiB on n1 (including 30.0 GiB evictable); held by ns/pin (pinned)",
			},
		},
		{
			name: "fits now beats fits after evicting",
			nodes: []Node{mkNode("n1", holds("ns/low", size(70))),
				mkNode("n2", used(0, 45))},
			models: []Model{mkModel("ns/high", needs(30), prio(10), wanted()), mkModel("ns/low", wanted())},
			load:   []string{"ns/high@n2[0]"},
			keep:   []string{"ns/low@n1"},
		},
		{
			name: "lowest priority victim first, then the node whose victims matter least",
			nodes: []Node{mkNode("n1", holds("ns/p1", size(60))),
				mkNode("n2", holds("ns/p0", size(60)))},
			models: []Model{mkModel("ns/high", needs(40), prio(10), wanted()),
				mkModel("ns/p0", needs(60), prio(0), wanted()), mkModel("ns/p1", needs(60), prio(1), wanted())},
			load:   []string{"ns/high@n2[0]"},
			unload: []string{"ns/p0@n2 Evicted for ns/high"},
			keep:   []string{"ns/p1@n1"},
			unsched: map[string]string{
				"ns/p0": "evicted from n2 for ns/high; needs 60.0 GiB on one node; best is 20.0 GiB on n1 (1 GPU); waiting for ns/p1 to idle out (in 14m)",
			},
		},
		{
			name: "without measured rates, a large model idle slightly longer goes before a small one",
			nodes: []Node{mkNode("n1", holds("ns/big", size(40), idleFor(11*time.Minute)),
				holds("ns/small", size(4), idleFor(10*time.Minute)), holds("ns/pin", size(34)))},
			models: []Model{mkModel("ns/new", needs(5), prio(10), wanted()),
				mkModel("ns/big", demandAgo(11*time.Minute)), mkModel("ns/small", demandAgo(10*time.Minute)),
				mkModel("ns/pin", pinned())},
			// one request over the idle time, per byte: big 1/660 s/40 GiB,
			// small 1/600 s/4 GiB: big is worth less per byte
			load:   []string{"ns/new@n1[0]"},
			unload: []string{"ns/big@n1 Evicted for ns/new"},
			keep:   []string{"ns/pin@n1", "ns/small@n1"},
			unsched: map[string]string{
				"ns/big": "evicted from n1 for ns/new; the only schedulable node n1 is still unloading a replica",
			},
		},
		{
			name: "a large model asked for often is kept over a small one asked for rarely",
			nodes: []Node{mkNode("n1", holds("ns/big", size(40), idleFor(11*time.Minute)),
				holds("ns/small", size(4), idleFor(10*time.Second)), holds("ns/pin", size(34)))},
			models: []Model{mkModel("ns/new", needs(5), prio(10), wanted()),
				mkModel("ns/big", demandAgo(11*time.Minute), perHour(200)), mkModel("ns/small", wanted(), perHour(2)),
				mkModel("ns/pin", pinned())},
			// per GiB and hour: big 5, small 0.5; recency does not protect small
			load:   []string{"ns/new@n1[0]"},
			unload: []string{"ns/small@n1 Evicted for ns/new"},
			keep:   []string{"ns/big@n1", "ns/pin@n1"},
			unsched: map[string]string{
				"ns/small": "evicted from n1 for ns/new; the only schedulable node n1 is still unloading a replica",
			},
		},
		{
			name: "a large model asked for as rarely as a small one goes first",
			nodes: []Node{mkNode("n1", holds("ns/big", size(40), idleFor(time.Minute)),
				holds("ns/small", size(4), idleFor(10*time.Minute)), holds("ns/pin", size(34)))},
			models: []Model{mkModel("ns/new", needs(5), prio(10), wanted()),
				mkModel("ns/big", wanted(), perHour(6)), mkModel("ns/small", demandAgo(10*time.Minute), perHour(6)),
				mkModel("ns/pin", pinned())},
			load:   []string{"ns/new@n1[0]"},
			unload: []string{"ns/big@n1 Evicted for ns/new"},
			keep:   []string{"ns/pin@n1", "ns/small@n1"},
			unsched: map[string]string{
				"ns/big": "evicted from n1 for ns/new; the only schedulable node n1 is still unloading a replica",
			},
		},
		{
			name: "equal rates per byte: the least recently used goes",
			nodes: []Node{mkNode("n1", holds("ns/a", size(40), idleFor(time.Minute)),
				holds("ns/b", size(40), idleFor(2*time.Minute)))},
			models: []Model{mkModel("ns/new", needs(30), waiting()),
				mkModel("ns/a", wanted(), perHour(6)), mkModel("ns/b", wanted(), perHour(6))},
			load:   []string{"ns/new@n1[0]"},
			unload: []string{"ns/b@n1 Evicted for ns/new"},
			keep:   []string{"ns/a@n1"},
			unsched: map[string]string{
				"ns/b": "evicted from n1 for ns/new; the only schedulable node n1 is still unloading a replica",
			},
		},
		{
			name: "priority still comes before the rate",
			nodes: []Node{mkNode("n1", holds("ns/low", size(40), idleFor(time.Minute)),
				holds("ns/same", size(40), idleFor(time.Minute)))},
			models: []Model{mkModel("ns/new", needs(30), waiting(), prio(5)),
				mkModel("ns/low", wanted(), perHour(600), prio(1)), mkModel("ns/same", wanted(), perHour(1), prio(5))},
			load:   []string{"ns/new@n1[0]"},
			unload: []string{"ns/low@n1 Evicted for ns/new"},
			keep:   []string{"ns/same@n1"},
			unsched: map[string]string{
				"ns/low": "evicted from n1 for ns/new; the only schedulable node n1 is still unloading a replica",
			},
		},
		{
			name: "no victim evicted in vain",
			nodes: []Node{mkNode("n1", holds("ns/tiny", size(2), idleFor(14*time.Minute)),
				holds("ns/large", size(30), idleFor(time.Minute)), holds("ns/pin", size(48)))},
			models: []Model{mkModel("ns/new", needs(20), prio(10), wanted()),
				mkModel("ns/tiny", demandAgo(14*time.Minute)), mkModel("ns/large", wanted()), mkModel("ns/pin", pinned())},
			// tiny is the cheaper victim but 2 GiB cannot help without large,
			// and large alone suffices
			load:   []string{"ns/new@n1[0]"},
			unload: []string{"ns/large@n1 Evicted for ns/new"},
			keep:   []string{"ns/pin@n1", "ns/tiny@n1"},
			unsched: map[string]string{
				"ns/large": "evicted from n1 for ns/new; the only schedulable node n1 is still unloading a replica",
			},
		},
		{
			name: "evicts only on the devices it uses",
			nodes: []Node{mkNode("n1", withGPUs(40, 40),
				holds("ns/l0", size(40), on(0), idleFor(10*time.Minute)),
				holds("ns/l1", size(40), on(1), idleFor(5*time.Minute)))},
			models: []Model{mkModel("ns/new", needs(30), prio(10), wanted()),
				mkModel("ns/l0", demandAgo(10*time.Minute)), mkModel("ns/l1", demandAgo(5*time.Minute))},
			load:   []string{"ns/new@n1[0]"},
			unload: []string{"ns/l0@n1 Evicted for ns/new"},
			keep:   []string{"ns/l1@n1"},
			unsched: map[string]string{
				"ns/l0": "evicted from n1 for ns/new; the only schedulable node n1 is still unloading a replica",
			},
		},
		{
			name: "multi-GPU victim frees every device it spans",
			nodes: []Node{mkNode("n1", withGPUs(40, 40),
				holds("ns/wide", size(80), on(0, 1)))},
			models: []Model{mkModel("ns/a", needs(35), prio(10), wanted()), mkModel("ns/b", needs(35), prio(10), wanted()),
				mkModel("ns/wide", wanted())},
			load:   []string{"ns/a@n1[0]", "ns/b@n1[1]"},
			unload: []string{"ns/wide@n1 Evicted for ns/a"},
			unsched: map[string]string{
				"ns/wide": "evicted from n1 for ns/a; the only schedulable node n1 is still unloading a replica",
			},
		},
		{
			name: "evicted model re-placed elsewhere in the same plan",
			nodes: []Node{mkNode("n1", holds("ns/low", size(60), usedAgo(time.Second))),
				mkNode("n2", used(0, 50))},
			models: []Model{mkModel("ns/high", needs(50), prio(10), devices(1), wanted()), mkModel("ns/low", needs(20), wanted())},
			load:   []string{"ns/high@n1[0]", "ns/low@n2[0]"},
			unload: []string{"ns/low@n1 Evicted for ns/high"},
		},
		{
			name:   "never evicts what the same plan loaded",
			nodes:  []Node{mkNode("n1")},
			models: []Model{mkModel("ns/a", needs(50), prio(5), wanted()), mkModel("ns/b", needs(50), prio(1), minR(1))},
			load:   []string{"ns/a@n1[0]"},
			unsched: map[string]string{
				"ns/b": "needs 50.0 GiB on one node; best is 30.0 GiB on n1 (1 GPU)",
			},
		},

		// ---- messages ----
		{
			name:   "needs more GPUs than any node has",
			nodes:  []Node{mkNode("n1", withGPUs(80, 80)), mkNode("n2")},
			models: []Model{mkModel("ns/a", devices(4), wanted())},
			unsched: map[string]string{
				"ns/a": "needs 4 GPUs on one node; matching nodes have at most 2 GPUs",
			},
		},
		{
			name:   "exact multi-GPU does not fit",
			nodes:  []Node{mkNode("n1", withGPUs(16, 16, 16)), mkNode("n2", withGPUs(24, 24), used(1, 12))},
			models: []Model{mkModel("ns/a", needs(40), devices(2), wanted())},
			unsched: map[string]string{
				"ns/a": "needs 40.0 GiB across 2 GPUs; best is 36.0 GiB on n2 (2 GPUs)",
			},
		},
		{
			name:   "one-GPU model does not fit",
			nodes:  []Node{mkNode("node-a", used(0, 70.2)), mkNode("node-b", withGPUs(8, 8))},
			models: []Model{mkModel("ns/a", needs(14.2), devices(1), wanted())},
			unsched: map[string]string{
				"ns/a": "needs 14.2 GiB on one GPU; largest free is 9.8 GiB on node-a",
			},
		},
		// ---- defragmentation ----
		{
			// 16 GiB free on each node, 32 in all: a 20 GiB model fits
			// on neither. The pinned replicas cannot be evicted, but one
			// can move: its copy loads first, nothing is unloaded yet.
			name: "scattered memory: a copy loads elsewhere first",
			nodes: []Node{mkNode("n1", withGPUs(24), holds("ns/x", size(8))),
				mkNode("n2", withGPUs(24), holds("ns/y", size(8)))},
			models: []Model{mkModel("ns/m", needs(20), waiting()),
				mkModel("ns/x", needs(8), pinned()), mkModel("ns/y", needs(8), pinned())},
			load: []string{"ns/x@n2[0]"},
			keep: []string{"ns/x@n1", "ns/y@n2"},
			unsched: map[string]string{
				"ns/m": "needs 20.0 GiB on one node; best is 16.0 GiB on n1 (1 GPU); held by ns/x (pinned); " +
					"free memory is scattered: moving ns/x to n2 to make room on n1 (make before break)",
			},
		},
		{
			name: "scattered memory: the copy is loading, both stay",
			nodes: []Node{mkNode("n1", withGPUs(24), holds("ns/x", size(8))),
				mkNode("n2", withGPUs(24), holds("ns/y", size(8)), holds("ns/x", size(8), state(StateLoading)), used(0, 8))},
			models: []Model{mkModel("ns/m", needs(20), waiting()),
				mkModel("ns/x", needs(8), pinned()), mkModel("ns/y", needs(8), pinned())},
			keep: []string{"ns/x@n1", "ns/x@n2", "ns/y@n2"},
			unsched: map[string]string{
				"ns/m": "needs 20.0 GiB on one node; best is 16.0 GiB on n1 (1 GPU); held by ns/x (pinned); " +
					"free memory is scattered: moving ns/x to n2 to make room on n1 (make before break)",
			},
		},
		{
			name: "scattered memory: the copy is Ready, the original leaves and the model loads",
			nodes: []Node{mkNode("n1", withGPUs(24), holds("ns/x", size(8))),
				mkNode("n2", withGPUs(24), holds("ns/y", size(8)), holds("ns/x", size(8), idleFor(time.Minute)))},
			models: []Model{mkModel("ns/m", needs(20), waiting()),
				mkModel("ns/x", needs(8), pinned()), mkModel("ns/y", needs(8), pinned())},
			load:   []string{"ns/m@n1[0]"},
			unload: []string{"ns/x@n1 Moved for ns/m"},
			keep:   []string{"ns/x@n2", "ns/y@n2"},
		},
		{
			name: "scattered memory: a replica serving requests does not start moving",
			nodes: []Node{mkNode("n1", withGPUs(24), holds("ns/x", size(8), busy(1))),
				mkNode("n2", withGPUs(24), holds("ns/y", size(8), busy(2)))},
			models: []Model{mkModel("ns/m", needs(20), waiting()),
				mkModel("ns/x", needs(8), pinned()), mkModel("ns/y", needs(8), pinned())},
			keep: []string{"ns/x@n1", "ns/y@n2"},
			unsched: map[string]string{
				"ns/m": "needs 20.0 GiB on one node; best is 16.0 GiB on n1 (1 GPU); waiting for ns/x to finish 1 request",
			},
		},
		{
			name: "scattered memory: a replica loaded within FreshGrace does not move",
			nodes: []Node{mkNode("n1", withGPUs(24), holds("ns/x", size(8), loadedAgo(10*time.Second))),
				mkNode("n2", withGPUs(24), holds("ns/y", size(8), loadedAgo(10*time.Second)))},
			models: []Model{mkModel("ns/m", needs(20), waiting()),
				mkModel("ns/x", needs(8), pinned()), mkModel("ns/y", needs(8), pinned())},
			keep: []string{"ns/x@n1", "ns/y@n2"},
			unsched: map[string]string{
				"ns/m": "needs 20.0 GiB on one node; best is 16.0 GiB on n1 (1 GPU); waiting for ns/x to serve the request it was loaded for",
			},
		},
		{
			name: "scattered memory: nothing moves for a model nobody waits for",
			nodes: []Node{mkNode("n1", withGPUs(24), holds("ns/x", size(8))),
				mkNode("n2", withGPUs(24), holds("ns/y", size(8)))},
			models: []Model{mkModel("ns/m", needs(20), wanted()),
				mkModel("ns/x", needs(8), pinned()), mkModel("ns/y", needs(8), pinned())},
			keep: []string{"ns/x@n1", "ns/y@n2"},
			unsched: map[string]string{
				"ns/m": "needs 20.0 GiB on one node; best is 16.0 GiB on n1 (1 GPU); held by ns/x (pinned)",
			},
		},
		{
			name: "scattered memory: replicas.min opens a hole too",
			nodes: []Node{mkNode("n1", withGPUs(24), holds("ns/x", size(8))),
				mkNode("n2", withGPUs(24), holds("ns/y", size(8)))},
			models: []Model{mkModel("ns/m", needs(20), minR(1)),
				mkModel("ns/x", needs(8), prio(5)), mkModel("ns/y", needs(8), prio(5), wanted())},
			load: []string{"ns/x@n2[0]"},
			keep: []string{"ns/x@n1", "ns/y@n2"},
			unsched: map[string]string{
				"ns/m": "needs 20.0 GiB on one node; best is 16.0 GiB on n1 (1 GPU); waiting for ns/x to idle out (in 14m); " +
					"free memory is scattered: moving ns/x to n2 to make room on n1 (make before break)",
			},
		},
		{
			name:   "memory need unknown",
			nodes:  []Node{mkNode("n1")},
			models: []Model{mkModel("ns/a", needs(0), wanted())},
			unsched: map[string]string{
				"ns/a": "memory need unknown (no VRAM estimate yet)",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{Nodes: tc.nodes, Models: tc.models, Now: now}
			p := Compute(in)
			if got, want := join(loadsOf(p)), join(tc.load); got != want {
				t.Errorf("loads:\n%s\nwant:\n%s", got, want)
			}
			if got, want := join(unloadsOf(p)), join(tc.unload); got != want {
				t.Errorf("unloads:\n%s\nwant:\n%s", got, want)
			}
			if got, want := join(keepsOf(p)), join(tc.keep); got != want {
				t.Errorf("keeps:\n%s\nwant:\n%s", got, want)
			}
			if tc.unsched == nil {
				tc.unsched = map[string]string{}
			}
			if !maps.Equal(p.Unschedulable, tc.unsched) {
				t.Errorf("unschedulable:\n%q\nwant:\n%q", p.Unschedulable, tc.unsched)
			}
			for k, v := range tc.desired {
				if p.Desired[k] != v {
					t.Errorf("desired[%s] = %d, want %d", k, p.Desired[k], v)
				}
			}
			checkInvariants(t, in, p)
		})
	}
}

// TestDefragmentConverges runs the scattered-memory case pass after pass,
// as the manager would: the copy loads, then the original leaves and the
// waiting model loads in the hole, and then nothing changes.
func TestDefragmentConverges(t *testing.T) {
	in := Input{Now: now,
		Nodes: []Node{mkNode("n1", withGPUs(24), holds("ns/x", size(8))),
			mkNode("n2", withGPUs(24), holds("ns/y", size(8)))},
		Models: []Model{mkModel("ns/m", needs(20), waiting()),
			mkModel("ns/x", needs(8), pinned()), mkModel("ns/y", needs(8), pinned())}}
	var got []string
	for pass := range 5 {
		p := Compute(in)
		checkInvariants(t, in, p)
		for _, l := range p.Load {
			got = append(got, fmt.Sprintf("%d: load %s@%s", pass, l.Model, l.Node))
		}
		for _, u := range p.Unload {
			got = append(got, fmt.Sprintf("%d: unload %s@%s %s", pass, u.Model, u.Node, u.Reason))
		}
		in = apply(in, p)
		in.Now = in.Now.Add(time.Minute)
	}
	// The copy, loaded later, is the replica worth keeping: the original
	// goes as surplus (ReasonMoved when the original is the one kept by
	// recency; see the table test).
	want := []string{"0: load ns/x@n2", "1: load ns/m@n1", "1: unload ns/x@n1 Surplus"}
	if join(got) != join(want) {
		t.Errorf("passes:\n%s\nwant:\n%s", join(got), join(want))
	}
}

func TestSplitProportional(t *testing.T) {
	in := Input{Now: now,
		Nodes:  []Node{mkNode("n1", withGPUs(80, 80, 80), used(0, 70), used(1, 20), used(2, 40))},
		Models: []Model{mkModel("ns/a", needs(90), wanted())},
	}
	p := Compute(in)
	if len(p.Load) != 1 {
		t.Fatalf("loads = %v", loadsOf(p))
	}
	l := p.Load[0]
	// free 10, 60, 40: the two largest (60 + 40) hold 90, split 54 / 36
	if !slices.Equal(l.Devices, []int{1, 2}) || !slices.Equal(l.DeviceBytes, []int64{gb(54), gb(36)}) {
		t.Errorf("load = %v %v, want [1 2] [54 GiB 36 GiB]", l.Devices, l.DeviceBytes)
	}
	checkInvariants(t, in, p)
}

// The per-device buffers count on every device a replica spans, as the
// neuron reserves them (vram.Shares): a replica that would fit if they
// were counted once does not, and the shares the plan accounts are the
// neuron's.
func TestPerDeviceBuffersOnEveryDevice(t *testing.T) {
	each := func(g float64) modelOpt { return func(m *Model) { m.EachBytes = gb(g) } }
	for _, tc := range []struct {
		name   string
		gpus   []float64
		model  Model
		load   string
		shares []int64
		unsch  string
	}{
		{
			// 16 GiB split + 1 GiB per device: 18 GiB on two GPUs, 17 if
			// the buffers were counted once; 8.8 GiB free on each
			name: "two GPUs, short by the second device's buffers", gpus: []float64{8.8, 8.8},
			model: mkModel("ns/a", needs(17), each(1), wanted()),
			unsch: "needs 18.0 GiB on one node; best is 17.6 GiB on n1 (2 GPUs)",
		},
		{
			name: "two GPUs that hold it with the buffers on both", gpus: []float64{9, 9},
			model: mkModel("ns/a", needs(17), each(1), wanted()),
			load:  "ns/a@n1[0 1]", shares: []int64{gb(9), gb(9)},
		},
		{
			// 30 GiB split + 1 GiB on each of four devices = 34 GiB
			name: "four GPUs", gpus: []float64{8.5, 8.5, 8.5, 8.5},
			model: mkModel("ns/a", needs(31), each(1), devices(4), wanted()),
			load:  "ns/a@n1[0 1 2 3]", shares: []int64{gb(8.5), gb(8.5), gb(8.5), gb(8.5)},
		},
		{
			name: "four GPUs, short by a quarter GiB on each", gpus: []float64{8.25, 8.25, 8.25, 8.25},
			model: mkModel("ns/a", needs(31), each(1), devices(4), wanted()),
			unsch: "needs 34.0 GiB across 4 GPUs; best is 33.0 GiB on n1 (4 GPUs)",
		},
		{
			// the fewest devices that hold it: three would do if the
			// buffers were counted once (3 x 6 = 18 >= 17), four are needed
			name: "as few GPUs as fit, counting the buffers on each", gpus: []float64{6, 6, 6, 6},
			model: mkModel("ns/a", needs(17), each(1), wanted()),
			load:  "ns/a@n1[0 1 2 3]", shares: []int64{gb(5), gb(5), gb(5), gb(5)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{Now: now, Nodes: []Node{mkNode("n1", withGPUs(tc.gpus...))}, Models: []Model{tc.model}}
			p := Compute(in)
			if got := join(loadsOf(p)); got != tc.load {
				t.Errorf("loads = %q, want %q", got, tc.load)
			}
			if tc.load != "" && !slices.Equal(p.Load[0].DeviceBytes, tc.shares) {
				t.Errorf("shares = %v, want %v", p.Load[0].DeviceBytes, tc.shares)
			}
			if got := p.Unschedulable["ns/a"]; got != tc.unsch {
				t.Errorf("unschedulable = %q, want %q", got, tc.unsch)
			}
			checkInvariants(t, in, p)
		})
	}
}

// TestResidentDeviceBytes checks that a resident's per-device bytes, when
// given, are what an eviction frees on each device.
func TestResidentDeviceBytes(t *testing.T) {
	n := mkNode("n1", withGPUs(40, 40))
	n.Devices[0].FreeBytes, n.Devices[1].FreeBytes = gb(10), gb(30)
	n.Residents = []Resident{{Model: "ns/wide", Devices: []int{0, 1}, DeviceBytes: []int64{gb(30), gb(10)},
		Bytes: gb(40), State: StateReady, LoadedAt: now.Add(-time.Hour), LastUsed: now.Add(-time.Minute)}}
	in := Input{Now: now, Nodes: []Node{n},
		Models: []Model{mkModel("ns/a", needs(35), devices(1), prio(1), wanted()), mkModel("ns/wide", wanted())}}
	p := Compute(in)
	// an even split would free 20 per device (30 + 20 < 35 on device 0 is
	// false, 50 >= 35): the real split frees 30 on device 0 and 10 on 1.
	if got := join(loadsOf(p)); got != "ns/a@n1[0]" {
		t.Errorf("loads = %s", got)
	}
	checkInvariants(t, in, p)
}

func TestDuplicatesIgnored(t *testing.T) {
	in := Input{Now: now,
		Nodes:  []Node{mkNode("n1"), mkNode("n1", notReady())},
		Models: []Model{mkModel("ns/a", wanted()), mkModel("ns/a", deleting())},
	}
	p := Compute(in)
	if got := join(loadsOf(p)); got != "ns/a@n1[0]" {
		t.Errorf("loads = %s, want the first node and model of each name", got)
	}
}

// TestRandomFleets runs the planner over many random fleets and checks
// the invariants of every plan.
func TestRandomFleets(t *testing.T) {
	for seed := range uint64(300) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			in := randomFleet(seed, 6+int(seed%20), 4+int(seed%7), 1+int(seed%4))
			p := Compute(in)
			checkInvariants(t, in, p)
		})
	}
}

// TestRandomFleetsConverge replays plans: executing a plan and planning
// again must not undo it (no flapping between passes).
func TestRandomFleetsConverge(t *testing.T) {
	for seed := range uint64(100) {
		in := randomFleet(seed, 30, 8, 4)
		p1 := Compute(in)
		in2 := apply(in, p1)
		p2 := Compute(in2)
		for _, u := range p2.Unload {
			if u.Reason == ReasonEvicted || u.Reason == ReasonFailed {
				continue
			}
			for _, l := range p1.Load {
				if l.Model == u.Model && l.Node == u.Node {
					t.Errorf("seed %d: %s loaded on %s and then unloaded (%s)", seed, u.Model, u.Node, u.Reason)
				}
			}
		}
		checkInvariants(t, in2, p2)
	}
}

// apply executes a plan on a snapshot, as the neurons would: unloads free
// memory, loads become Ready residents used just now.
func apply(in Input, p Plan) Input {
	out := Input{Now: in.Now.Add(5 * time.Second), Models: in.Models}
	for _, n := range in.Nodes {
		n.Devices = slices.Clone(n.Devices)
		var res []Resident
		for _, r := range n.Residents {
			gone := slices.ContainsFunc(p.Unload, func(u Unload) bool { return u.Model == r.Model && u.Node == n.Name })
			if !gone {
				res = append(res, r)
				continue
			}
			for j, d := range r.Devices {
				for i := range n.Devices {
					if n.Devices[i].Index == d {
						b := r.Bytes / int64(len(r.Devices))
						if len(r.DeviceBytes) == len(r.Devices) {
							b = r.DeviceBytes[j]
						}
						n.Devices[i].FreeBytes += b
					}
				}
			}
		}
		for _, l := range p.Load {
			if l.Node != n.Name {
				continue
			}
			res = append(res, Resident{Model: l.Model, Devices: l.Devices, DeviceBytes: l.DeviceBytes, Bytes: l.Bytes,
				State: StateReady, LoadedAt: in.Now, LastUsed: in.Now})
			for j, d := range l.Devices {
				for i := range n.Devices {
					if n.Devices[i].Index == d {
						n.Devices[i].FreeBytes -= l.DeviceBytes[j]
					}
				}
			}
		}
		n.Residents = res
		out.Nodes = append(out.Nodes, n)
	}
	return out
}

func TestNodeAdmits(t *testing.T) {
	labels := map[string]string{"gpu": "h100", "empty": ""}
	for _, tc := range []struct {
		selector map[string]string
		names    []string
		want     bool
	}{
		{nil, nil, true},
		{map[string]string{"gpu": "h100"}, nil, true},
		{map[string]string{"gpu": "a100"}, nil, false},
		{map[string]string{"empty": ""}, nil, true},
		// a missing label never matches, not even an empty value
		{map[string]string{"zone": ""}, nil, false},
		{nil, []string{"n2", "n1"}, true},
		{nil, []string{"n2"}, false},
		{map[string]string{"gpu": "h100"}, []string{"n2"}, false},
	} {
		if got := NodeAdmits(tc.selector, tc.names, "n1", labels); got != tc.want {
			t.Errorf("NodeAdmits(%v, %v) = %v, want %v", tc.selector, tc.names, got, tc.want)
		}
	}
}
