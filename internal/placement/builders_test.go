package placement

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

const giB = int64(1) << 30

// now is the snapshot time of every test.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func gb(g float64) int64 { return int64(g * float64(giB)) }

// ---- nodes ----

type nodeOpt func(*Node)

// mkNode builds a Ready node with one 80 GiB GPU unless told otherwise.
// Options apply in order; withGPUs must come before residents.
func mkNode(name string, opts ...nodeOpt) Node {
	n := Node{Name: name, Ready: true, Devices: []Device{{Index: 0, TotalBytes: 80 * giB, FreeBytes: 80 * giB}}}
	for _, o := range opts {
		o(&n)
	}
	return n
}

// withGPUs gives the node GPUs of these sizes (GiB), all free.
func withGPUs(sizes ...float64) nodeOpt {
	return func(n *Node) {
		n.Devices = nil
		for i, s := range sizes {
			n.Devices = append(n.Devices, Device{Index: i, TotalBytes: gb(s), FreeBytes: gb(s)})
		}
	}
}

// used marks memory on a device as taken by something outside cortex.
func used(index int, g float64) nodeOpt {
	return func(n *Node) {
		for i := range n.Devices {
			if n.Devices[i].Index == index {
				n.Devices[i].FreeBytes -= gb(g)
			}
		}
	}
}

func notReady() nodeOpt { return func(n *Node) { n.Ready = false } }
func busyNode() nodeOpt { return func(n *Node) { n.Busy = true } }
func cordoned() nodeOpt { return func(n *Node) { n.Unschedulable = true } }
func reserve(g float64) nodeOpt {
	return func(n *Node) { n.ReservedBytes = gb(g) }
}

func labels(kv ...string) nodeOpt {
	return func(n *Node) {
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			n.Labels[kv[i]] = kv[i+1]
		}
	}
}

// holds adds a resident (Ready on device 0, 10 GiB, loaded an hour ago and
// used a minute ago unless told otherwise) and takes its memory off the
// devices' free bytes, as the neuron reports it.
func holds(model string, opts ...resOpt) nodeOpt {
	return func(n *Node) {
		r := Resident{Model: model, Devices: []int{0}, Bytes: 10 * giB, State: StateReady,
			LoadedAt: now.Add(-time.Hour), LastUsed: now.Add(-time.Minute)}
		for _, o := range opts {
			o(&r)
		}
		if r.State != StateLoading {
			for _, d := range r.Devices {
				for i := range n.Devices {
					if n.Devices[i].Index == d {
						n.Devices[i].FreeBytes -= r.Bytes / int64(len(r.Devices))
					}
				}
			}
		}
		n.Residents = append(n.Residents, r)
	}
}

type resOpt func(*Resident)

func size(g float64) resOpt            { return func(r *Resident) { r.Bytes = gb(g) } }
func on(devs ...int) resOpt            { return func(r *Resident) { r.Devices = devs } }
func state(s State) resOpt             { return func(r *Resident) { r.State = s } }
func outdated() resOpt                 { return func(r *Resident) { r.Outdated = true } }
func busy(n int) resOpt                { return func(r *Resident) { r.InFlight = n } }
func usedAgo(d time.Duration) resOpt   { return func(r *Resident) { r.LastUsed = now.Add(-d) } }
func loadedAgo(d time.Duration) resOpt { return func(r *Resident) { r.LoadedAt = now.Add(-d) } }

// idleFor sets both LastUsed and LoadedAt so the replica has been idle d.
func idleFor(d time.Duration) resOpt {
	return func(r *Resident) { r.LastUsed, r.LoadedAt = now.Add(-d), now.Add(-d-time.Hour) }
}

// ---- models ----

type modelOpt func(*Model)

// mkModel builds a 10 GiB model at priority 0, min 0 max 1, keep-alive 15m,
// with no demand unless told otherwise.
func mkModel(key string, opts ...modelOpt) Model {
	m := Model{Key: key, MaxReplicas: 1, KeepAlive: 15 * time.Minute, BytesNeeded: 10 * giB}
	for _, o := range opts {
		o(&m)
	}
	return m
}

func needs(g float64) modelOpt  { return func(m *Model) { m.BytesNeeded = gb(g) } }
func prio(p int32) modelOpt     { return func(m *Model) { m.Priority = p } }
func pinned() modelOpt          { return func(m *Model) { m.Pinned = true } }
func minR(n int) modelOpt       { return func(m *Model) { m.MinReplicas = n } }
func maxR(n int) modelOpt       { return func(m *Model) { m.MaxReplicas = n } }
func devices(k int) modelOpt    { return func(m *Model) { m.Devices = k } }
func deleting() modelOpt        { return func(m *Model) { m.Deleting = true } }
func perReplica(n int) modelOpt { return func(m *Model) { m.TargetInFlight = n } }

// perHour sets the model's measured request rate.
func perHour(n float64) modelOpt { return func(m *Model) { m.RequestRate = n / 3600 } }
func keepAlive(d time.Duration) modelOpt {
	return func(m *Model) { m.KeepAlive = d }
}
func demandAgo(d time.Duration) modelOpt {
	return func(m *Model) { m.LastDemand = now.Add(-d) }
}

// wanted is in demand right now.
func wanted() modelOpt { return demandAgo(time.Second) }

// waiting has requests held at the gateway right now.
func waiting() modelOpt {
	return func(m *Model) { m.LastDemand, m.Waiting = now.Add(-time.Second), true }
}

func selector(kv ...string) modelOpt {
	return func(m *Model) {
		m.NodeSelector = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m.NodeSelector[kv[i]] = kv[i+1]
		}
	}
}
func nodeNames(names ...string) modelOpt { return func(m *Model) { m.NodeNames = names } }
func avoid(names ...string) modelOpt     { return func(m *Model) { m.AvoidNodes = names } }

// ---- plan rendering ----

// loads renders loads as "model@node[devices]".
func loadsOf(p Plan) []string {
	var out []string
	for _, l := range p.Load {
		out = append(out, fmt.Sprintf("%s@%s%v", l.Model, l.Node, l.Devices))
	}
	return out
}

// unloadsOf renders unloads as "model@node Reason" or "model@node Evicted
// for other".
func unloadsOf(p Plan) []string {
	var out []string
	for _, u := range p.Unload {
		s := fmt.Sprintf("%s@%s %s", u.Model, u.Node, u.Reason)
		if u.ForModel != "" {
			s += " for " + u.ForModel
		}
		out = append(out, s)
	}
	return out
}

func keepsOf(p Plan) []string {
	var out []string
	for _, k := range p.Keep {
		out = append(out, k.Model+"@"+k.Node)
	}
	return out
}

// ---- invariants ----

// checkInvariants verifies what must hold of every plan, whatever the
// input: it is run on every table case and on random fleets.
func checkInvariants(t *testing.T, in Input, p Plan) {
	t.Helper()
	nodes := map[string]*Node{}
	for i := range in.Nodes {
		if _, dup := nodes[in.Nodes[i].Name]; !dup {
			nodes[in.Nodes[i].Name] = &in.Nodes[i]
		}
	}
	models := map[string]*Model{}
	for i := range in.Models {
		if _, dup := models[in.Models[i].Key]; !dup {
			models[in.Models[i].Key] = &in.Models[i]
		}
	}
	resident := func(node, model string) *Resident {
		for i := range nodes[node].Residents {
			if nodes[node].Residents[i].Model == model {
				return &nodes[node].Residents[i]
			}
		}
		return nil
	}

	// Memory per device, as the planner must see it: free, bounded by total
	// minus what residents hold.
	type dk struct {
		node  string
		index int
	}
	free := map[dk]int64{}
	for _, n := range nodes {
		held := map[int]int64{}
		for _, r := range n.Residents {
			for j, d := range r.Devices {
				if len(r.DeviceBytes) == len(r.Devices) {
					held[d] += r.DeviceBytes[j]
				} else {
					held[d] += r.Bytes / int64(len(r.Devices))
				}
			}
		}
		for _, d := range n.Devices {
			f := d.FreeBytes
			if d.TotalBytes > 0 {
				f = min(f, d.TotalBytes-held[d.Index])
			}
			free[dk{n.Name, d.Index}] = max(0, f)
		}
	}

	counted := map[string]int{}
	for _, n := range nodes {
		if !n.Ready {
			continue
		}
		for _, r := range n.Residents {
			if r.State == StateReady || r.State == StateLoading {
				counted[r.Model]++
			}
		}
	}

	touched := map[string]bool{}
	outdated := map[string]int{}
	for _, u := range p.Unload {
		id := u.Model + "@" + u.Node
		if touched[id] {
			t.Errorf("invariant: %s unloaded twice", id)
		}
		touched[id] = true
		n := nodes[u.Node]
		if n == nil || !n.Ready {
			t.Errorf("invariant: unload %s sent to a node that is not Ready", id)
			continue
		}
		r := resident(u.Node, u.Model)
		if r == nil {
			t.Errorf("invariant: unload %s of nothing", id)
			continue
		}
		if r.State == StateUnloading {
			t.Errorf("invariant: unload %s of an unloading resident", id)
		}
		for j, d := range r.Devices {
			if len(r.DeviceBytes) == len(r.Devices) {
				free[dk{u.Node, d}] += r.DeviceBytes[j]
			} else {
				free[dk{u.Node, d}] += r.Bytes / int64(len(r.Devices))
			}
		}
		m := models[u.Model]
		if u.Reason == ReasonOrphaned {
			if m != nil {
				t.Errorf("invariant: %s orphaned but its model exists", id)
			}
			continue
		}
		if m == nil {
			t.Errorf("invariant: %s unloaded for %s but has no model", id, u.Reason)
			continue
		}
		if (u.Reason == ReasonEvicted || u.Reason == ReasonMoved) != (u.ForModel != "") {
			t.Errorf("invariant: %s reason %s with ForModel %q", id, u.Reason, u.ForModel)
		}
		if u.Reason == ReasonEvicted {
			f := models[u.ForModel]
			if m.Pinned {
				t.Errorf("invariant: pinned %s evicted", id)
			}
			switch {
			case f == nil || m.Priority > f.Priority:
				t.Errorf("invariant: %s evicted for %s of lower priority", id, u.ForModel)
			case m.Priority == f.Priority && !f.Waiting:
				t.Errorf("invariant: %s evicted for %s of equal priority with no request waiting", id, u.ForModel)
			case m.Priority == f.Priority && counted[u.ForModel] > 0:
				t.Errorf("invariant: %s evicted for %s of equal priority, which already has a replica", id, u.ForModel)
			case m.Priority == f.Priority && !r.LoadedAt.IsZero() && r.LastUsed.Before(r.LoadedAt) && in.Now.Sub(r.LoadedAt) < FreshGrace:
				t.Errorf("invariant: %s evicted for %s of equal priority before serving its first request", id, u.ForModel)
			}
			if r.InFlight > 0 {
				t.Errorf("invariant: %s evicted with requests in flight", id)
			}
			if !slices.ContainsFunc(p.Load, func(l Load) bool { return l.Model == u.ForModel && l.Node == u.Node }) {
				t.Errorf("invariant: %s evicted for %s, which is not loaded there", id, u.ForModel)
			}
		}
		if u.Reason == ReasonMoved {
			// Make before break: a Ready copy elsewhere stays.
			if r.InFlight > 0 || r.State != StateReady {
				t.Errorf("invariant: %s moved while %s with %d in flight", id, r.State, r.InFlight)
			}
			if !slices.ContainsFunc(p.Keep, func(k Keep) bool {
				c := resident(k.Node, k.Model)
				return k.Model == u.Model && k.Node != u.Node && c != nil && c.State == StateReady
			}) {
				t.Errorf("invariant: %s moved with no Ready copy kept elsewhere", id)
			}
		}
		if u.Reason == ReasonOutdated {
			if !r.Outdated || r.State != StateReady {
				t.Errorf("invariant: %s replaced as outdated while %s, outdated=%v", id, r.State, r.Outdated)
			}
			outdated[u.Model]++
			if outdated[u.Model] > 1 {
				t.Errorf("invariant: %s: more than one replica of the model replaced in one plan", id)
			}
		}
		if u.Reason == ReasonIdle && (r.InFlight > 0 || r.State != StateReady) {
			t.Errorf("invariant: %s idled out while %s with %d in flight", id, r.State, r.InFlight)
		}
	}

	loadedOn := map[dk]bool{}
	for _, l := range p.Load {
		id := l.Model + "@" + l.Node
		if touched[id] {
			t.Errorf("invariant: %s loaded and unloaded, or loaded twice", id)
		}
		touched[id] = true
		n, m := nodes[l.Node], models[l.Model]
		if n == nil || m == nil {
			t.Errorf("invariant: load %s of unknown node or model", id)
			continue
		}
		if !n.Ready || n.Unschedulable {
			t.Errorf("invariant: load %s on a node not Ready or cordoned", id)
		}
		if m.Deleting {
			t.Errorf("invariant: load %s of a deleting model", id)
		}
		for k, v := range m.NodeSelector {
			if n.Labels[k] != v {
				t.Errorf("invariant: load %s on a node not matching nodeSelector", id)
			}
		}
		if len(m.NodeNames) > 0 && !slices.Contains(m.NodeNames, l.Node) {
			t.Errorf("invariant: load %s outside nodeNames", id)
		}
		if resident(l.Node, l.Model) != nil {
			t.Errorf("invariant: load %s where it already resides (spread)", id)
		}
		if m.Devices > 0 && len(l.Devices) != m.Devices {
			t.Errorf("invariant: load %s on %d devices, want %d", id, len(l.Devices), m.Devices)
		}
		if len(l.DeviceBytes) != len(l.Devices) || l.Bytes != m.BytesNeeded+int64(len(l.Devices)-1)*m.EachBytes {
			t.Errorf("invariant: load %s malformed: %+v", id, l)
		}
		var sum int64
		for j, d := range l.Devices {
			if j > 0 && d <= l.Devices[j-1] {
				t.Errorf("invariant: load %s devices not ascending: %v", id, l.Devices)
			}
			if l.DeviceBytes[j] <= 0 {
				t.Errorf("invariant: load %s gives device %d no share", id, d)
			}
			sum += l.DeviceBytes[j]
			free[dk{l.Node, d}] -= l.DeviceBytes[j]
			loadedOn[dk{l.Node, d}] = true
		}
		if sum != l.Bytes {
			t.Errorf("invariant: load %s shares sum to %d, want %d", id, sum, l.Bytes)
		}
	}
	for d := range loadedOn {
		if f := free[d] - max(0, nodes[d.node].ReservedBytes); f < 0 {
			t.Errorf("invariant: device %s/%d overcommitted by %d bytes", d.node, d.index, -f)
		}
	}

	// Every replica on a Ready node is kept or unloaded, never both; no
	// model drops below replicas.min by this plan's choice.
	kept := map[string]int{}
	for _, k := range p.Keep {
		id := k.Model + "@" + k.Node
		if touched[id] {
			t.Errorf("invariant: %s kept and unloaded", id)
		}
		r := resident(k.Node, k.Model)
		if r == nil || (r.State != StateReady && r.State != StateLoading) || !nodes[k.Node].Ready {
			t.Errorf("invariant: keep %s of no replica", id)
		}
		kept[k.Model]++
	}
	for key, m := range models {
		if m.Deleting {
			continue
		}
		// replacing an outdated replica may take the model below its floor
		// for one load's time
		if floor := min(m.MinReplicas, counted[key]) - outdated[key]; kept[key] < floor {
			t.Errorf("invariant: %s keeps %d replicas, below min(%d, %d)", key, kept[key], m.MinReplicas, counted[key])
		}
		if m.Pinned && counted[key] > 0 && kept[key] == 0 && outdated[key] == 0 {
			t.Errorf("invariant: pinned %s lost its last replica", key)
		}
	}

	// Same plan whatever the input order.
	shuffled := shuffle(in, rand.New(rand.NewPCG(1, 2)))
	if again := Compute(shuffled); !plansEqual(p, again) {
		t.Errorf("invariant: plan depends on input order:\n%v\n%v", p, again)
	}
}

func plansEqual(a, b Plan) bool {
	return fmt.Sprint(a.Load, a.Unload, a.Keep) == fmt.Sprint(b.Load, b.Unload, b.Keep) &&
		fmt.Sprint(a.Unschedulable) == fmt.Sprint(b.Unschedulable) &&
		fmt.Sprint(a.Desired) == fmt.Sprint(b.Desired)
}

func shuffle(in Input, r *rand.Rand) Input {
	out := Input{Now: in.Now, Nodes: slices.Clone(in.Nodes), Models: slices.Clone(in.Models)}
	r.Shuffle(len(out.Nodes), func(i, j int) { out.Nodes[i], out.Nodes[j] = out.Nodes[j], out.Nodes[i] })
	r.Shuffle(len(out.Models), func(i, j int) { out.Models[i], out.Models[j] = out.Models[j], out.Models[i] })
	for i := range out.Nodes {
		res := slices.Clone(out.Nodes[i].Residents)
		r.Shuffle(len(res), func(a, b int) { res[a], res[b] = res[b], res[a] })
		out.Nodes[i].Residents = res
	}
	return out
}

func join(ss []string) string { return strings.Join(ss, "\n") }
