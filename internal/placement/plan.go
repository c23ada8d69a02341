package placement

import (
	"cmp"
	"slices"
	"time"

	"github.com/helexa-ai/cortex/internal/vram"
)

// Compute plans one pass: which replicas to load, unload and keep, and why
// models cannot be placed. It is a pure function of in: same input, same
// plan, whatever the order of in.Nodes, in.Models and the residents.
func Compute(in Input) Plan {
	p := run(in, nil)
	if d := p.findDefrag(); d != nil {
		// Plan again with the hole to open (see defrag.go): the first plan
		// is discarded.
		p = run(in, d)
		if m := p.byKey[d.forModel]; m != nil && m.failed {
			p.unsched[d.forModel] = p.explain(m) + "; " + d.text()
		}
	}
	return p.finish()
}

// run plans one pass, with hint naming a hole to open (nil for none).
func run(in Input, hint *defragPlan) *planner {
	p := newPlanner(in)
	p.hint = hint
	p.classifyResidents()
	for _, m := range p.models {
		p.decideModel(m)
	}
	p.place()
	p.placeMoves()
	return p
}

// planner is the state of one Compute call.
type planner struct {
	now time.Time

	nodes  []*nodeState // sorted by name
	models []*modelState
	byKey  map[string]*modelState
	res    []resState

	loads   []Load
	unloads []Unload
	unsched map[string]string

	scratch scratch
	// hint is the hole this plan opens by moving replicas, nil for none.
	hint *defragPlan
	// epoch counts changes to which models may lose a replica to eviction.
	epoch uint64
}

type nodeState struct {
	idx      int
	name     string
	labels   map[string]string
	ready    bool
	sched    bool // Ready and not cordoned
	busy     bool // a call to it is unanswered (Node.Busy)
	reserved int64
	devIndex []int   // device Index by position
	free     []int64 // free bytes by position, updated as the plan unloads and loads
	res      []int   // indices into planner.res, sorted by model key
	// version counts the plan's changes to the node (loads, unloads).
	version uint64
	// victimOrder lists the residents that could ever be evicted, best
	// victims first, once victimsSorted.
	victimOrder   []victim
	victimsSorted bool
	evictions     []cachedEviction
}

// avail is what a new load may take on device position i: free minus the
// node's reserve, never negative.
func (n *nodeState) avail(i int) int64 { return max(0, n.free[i]-n.reserved) }

// totalAvail sums avail over the node's devices.
func (n *nodeState) totalAvail() int64 {
	var s int64
	for i := range n.free {
		s += n.avail(i)
	}
	return s
}

type resState struct {
	node  int
	model *modelState // nil: no such Model
	r     *Resident
	pos   []int   // device positions on the node
	share []int64 // bytes held per position
	// lastActive is the later of LastUsed and LoadedAt: the replica's own
	// keep-alive runs from it.
	lastActive time.Time
	counted    bool // Loading or Ready on a Ready node: a replica
	matching   bool // on a node the model may be placed on
	gone       bool // unloaded or evicted by this plan
	reason     UnloadReason
	// kept is set on the Ready copy of a replica this plan moves: it is
	// neither idled out nor evicted in the same plan.
	kept bool
}

type modelState struct {
	in       *Model
	need     vram.Need // BytesNeeded split into its divisible and per-device parts
	ka       time.Duration
	maxR     int
	target   int
	inDemand bool
	// replicas are the counted residents (indices into planner.res).
	replicas []int
	// touched are node indices holding the model in any state, or where the
	// plan loads or unloads it: at most one touch per node and plan.
	touched []int
	// keptGood counts kept replicas on matching nodes; keptBad on others.
	keptGood, keptBad int
	loads             int
	failed            bool // could not be placed; message recorded
	// evictedFrom and evictedFor name this plan's first eviction of the
	// model, for its message if it cannot be placed again.
	evictedFrom, evictedFor string
	// changing is set when a resident of the model is Loading or Unloading
	// on a Ready node: no outdated replica is replaced meanwhile.
	changing bool
	// hadReplica is set when the model had a replica (Loading or Ready on a
	// Ready node) when the pass began.
	hadReplica bool
}

// live is how many replicas the model has after the plan, misplaced ones
// included: what replicas.min protects against eviction.
func (m *modelState) live() int { return m.keptGood + m.keptBad + m.loads }

// demandEvicts reports whether requests wait for m and it had no replica
// (Loading or Ready) when the pass began and got none yet: then it may
// evict idle replicas of equal priority, as a user of a single GPU would
// expect of any server that loads models on demand. A model that lost its
// replica in this pass does not cascade into evicting others.
func (m *modelState) demandEvicts() bool {
	return m.in.Waiting && !m.hadReplica && m.loads == 0
}

func (m *modelState) touches(node int) bool { return slices.Contains(m.touched, node) }

func newPlanner(in Input) *planner {
	p := &planner{
		now:     in.Now,
		byKey:   make(map[string]*modelState, len(in.Models)),
		unsched: map[string]string{},
	}
	p.models = make([]*modelState, 0, len(in.Models))
	ms := make([]modelState, len(in.Models))
	for i := range in.Models {
		m := &in.Models[i]
		if _, dup := p.byKey[m.Key]; dup {
			continue
		}
		st := &ms[i]
		st.in = m
		st.need = vram.Need{Split: max(0, m.BytesNeeded-max(0, m.EachBytes)), Each: min(max(0, m.EachBytes), max(0, m.BytesNeeded))}
		st.ka = max(m.KeepAlive, MinKeepAlive)
		st.maxR = max(m.MaxReplicas, m.MinReplicas, 1)
		p.byKey[m.Key] = st
		p.models = append(p.models, st)
	}
	slices.SortFunc(p.models, func(a, b *modelState) int { return cmp.Compare(a.in.Key, b.in.Key) })

	order := make([]int, 0, len(in.Nodes))
	seen := make(map[string]bool, len(in.Nodes))
	nres := 0
	for i := range in.Nodes {
		if seen[in.Nodes[i].Name] {
			continue
		}
		seen[in.Nodes[i].Name] = true
		order = append(order, i)
		nres += len(in.Nodes[i].Residents)
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(in.Nodes[a].Name, in.Nodes[b].Name) })

	p.res = make([]resState, 0, nres)
	p.nodes = make([]*nodeState, len(order))
	ns := make([]nodeState, len(order))
	for ni, i := range order {
		p.nodes[ni] = p.buildNode(&ns[ni], ni, &in.Nodes[i])
	}
	return p
}

func (p *planner) buildNode(n *nodeState, idx int, in *Node) *nodeState {
	*n = nodeState{
		idx:      idx,
		name:     in.Name,
		labels:   in.Labels,
		ready:    in.Ready,
		sched:    in.Ready && !in.Unschedulable,
		busy:     in.Busy,
		reserved: max(0, in.ReservedBytes),
	}
	total := make([]int64, 0, len(in.Devices))
	for _, d := range in.Devices {
		if slices.Contains(n.devIndex, d.Index) {
			continue
		}
		n.devIndex = append(n.devIndex, d.Index)
		n.free = append(n.free, max(0, d.FreeBytes))
		total = append(total, d.TotalBytes)
	}
	for i := range in.Residents {
		r := &in.Residents[i]
		rs := resState{node: idx, model: p.byKey[r.Model], r: r, lastActive: later(r.LastUsed, r.LoadedAt)}
		even := len(r.DeviceBytes) != len(r.Devices)
		for j, d := range r.Devices {
			pos := slices.Index(n.devIndex, d)
			if pos < 0 || slices.Contains(rs.pos, pos) {
				continue
			}
			b := int64(0)
			if even {
				b = max(0, r.Bytes) / int64(len(r.Devices))
			} else {
				b = max(0, r.DeviceBytes[j])
			}
			rs.pos = append(rs.pos, pos)
			rs.share = append(rs.share, b)
			total[pos] -= b
		}
		p.res = append(p.res, rs)
		n.res = append(n.res, len(p.res)-1)
	}
	// Bound free memory by total minus what the residents hold: a model
	// still downloading holds nothing on the GPU yet, but will.
	pos := 0
	for _, d := range in.Devices {
		if pos < len(n.devIndex) && n.devIndex[pos] == d.Index {
			if d.TotalBytes > 0 {
				n.free[pos] = min(n.free[pos], max(0, total[pos]))
			}
			pos++
		}
	}
	slices.SortStableFunc(n.res, func(a, b int) int { return cmp.Compare(p.res[a].r.Model, p.res[b].r.Model) })
	return n
}

// node returns the node named name, nil if none.
func (p *planner) node(name string) *nodeState {
	i, ok := slices.BinarySearchFunc(p.nodes, name, func(n *nodeState, name string) int { return cmp.Compare(n.name, name) })
	if !ok {
		return nil
	}
	return p.nodes[i]
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// classifyResidents sorts residents on Ready nodes into replicas, failed
// ones to clear, and orphans. Residents of nodes that are not Ready count
// for nothing and get no action.
func (p *planner) classifyResidents() {
	for _, n := range p.nodes {
		if !n.ready {
			continue
		}
		for _, ri := range n.res {
			rs := &p.res[ri]
			m := rs.model
			if m == nil {
				if rs.r.State != StateUnloading {
					p.unload(ri, ReasonOrphaned, "")
				}
				continue
			}
			m.touched = append(m.touched, n.idx)
			m.changing = m.changing || rs.r.State == StateLoading || rs.r.State == StateUnloading
			switch rs.r.State {
			case StateLoading, StateReady:
				rs.counted = true
				m.hadReplica = true
				rs.matching = matches(m.in, n)
				m.replicas = append(m.replicas, ri)
			case StateFailed:
				if m.in.Deleting {
					p.unload(ri, ReasonDeleted, "")
				} else {
					p.unload(ri, ReasonFailed, "")
				}
			default:
				// Unloading (or a state this planner does not know): the
				// memory is still held; leave it alone.
			}
		}
	}
}

// matches reports whether m may be placed on n by its nodeSelector and
// nodeNames (readiness and cordon aside).
func matches(m *Model, n *nodeState) bool {
	return NodeAdmits(m.NodeSelector, m.NodeNames, n.name, n.labels)
}

// NodeAdmits reports whether a Model's placement rules admit a node by its
// name and labels: every nodeSelector key present on the node with an equal
// value (a missing label never matches, even a selector value of ""), and
// the node among nodeNames when any are given. It is the one definition of
// node matching: the planner, the manager's choice of a node to estimate
// on and the gateway's "could load here" all use it.
func NodeAdmits(selector map[string]string, names []string, node string, labels map[string]string) bool {
	for k, v := range selector {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return len(names) == 0 || slices.Contains(names, node)
}

// unload records an unload of resident ri and frees its memory for the rest
// of the plan.
func (p *planner) unload(ri int, reason UnloadReason, forModel string) {
	rs := &p.res[ri]
	rs.gone, rs.reason = true, reason
	n := p.nodes[rs.node]
	n.version++
	for j, pos := range rs.pos {
		n.free[pos] += rs.share[j]
	}
	p.unloads = append(p.unloads, Unload{Model: rs.r.Model, Node: n.name, Reason: reason, ForModel: forModel})
}

// decideModel computes a model's target and which of its replicas stay.
func (p *planner) decideModel(m *modelState) {
	if m.in.Deleting {
		for _, ri := range m.replicas {
			p.unload(ri, ReasonDeleted, "")
		}
		return
	}

	p.replaceOutdated(m)

	lastActive := m.in.LastDemand
	busy, loading, inFlight := false, false, 0
	for _, ri := range m.replicas {
		rs := &p.res[ri]
		lastActive = later(lastActive, rs.lastActive)
		inFlight += max(0, rs.r.InFlight)
		busy = busy || rs.r.InFlight > 0
		loading = loading || rs.r.State == StateLoading
	}
	m.inDemand = busy || loading || (!lastActive.IsZero() && p.now.Sub(lastActive) < m.ka)

	t := max(0, m.in.MinReplicas)
	if m.in.Pinned {
		t = max(t, 1)
	}
	if m.inDemand {
		t = max(t, 1)
		if m.in.TargetInFlight > 0 {
			t = max(t, (inFlight+m.in.TargetInFlight-1)/m.in.TargetInFlight)
		}
	}
	m.target = min(t, m.maxR)
	p.widenMove(m)

	var good, bad []int
	for _, ri := range m.replicas {
		if p.res[ri].matching {
			good = append(good, ri)
		} else {
			bad = append(bad, ri)
		}
	}
	slices.SortFunc(good, p.keepOrder)
	goodReady := 0
	for i, ri := range good {
		rs := &p.res[ri]
		switch {
		case i < m.target:
		case i >= m.maxR:
			p.unload(ri, ReasonSurplus, "")
			continue
		case p.idle(m, rs) && !rs.kept:
			p.unload(ri, ReasonIdle, "")
			continue
		}
		m.keptGood++
		if rs.r.State == StateReady {
			goodReady++
		}
	}
	// Misplaced replicas (the node no longer matches) keep serving until
	// enough Ready replicas run on matching nodes, and until their requests
	// are done: make before break.
	for _, ri := range bad {
		rs := &p.res[ri]
		switch {
		case goodReady >= m.target && p.idle(m, rs):
			p.unload(ri, ReasonIdle, "")
		case goodReady >= m.target && rs.r.InFlight <= 0:
			p.unload(ri, ReasonMisplaced, "")
		default:
			m.keptBad++
		}
	}
}

// replaceOutdated unloads one Ready replica loaded with older settings
// (ReasonOutdated), the one on the first node by name, unless a replica of
// the model is loading or unloading: replacing one at a time keeps a model
// with several replicas serving. The unloaded replica no longer counts, so
// the model's target places a fresh one in the same plan (on another node:
// a plan touches a model once per node; on the same node in the next pass).
func (p *planner) replaceOutdated(m *modelState) {
	if m.changing {
		return
	}
	best := -1
	for j, ri := range m.replicas {
		rs := &p.res[ri]
		if rs.r.Outdated && rs.r.State == StateReady &&
			(best < 0 || p.nodes[rs.node].name < p.nodes[p.res[m.replicas[best]].node].name) {
			best = j
		}
	}
	if best < 0 {
		return
	}
	p.unload(m.replicas[best], ReasonOutdated, "")
	m.replicas = slices.Delete(m.replicas, best, best+1)
}

// keepOrder sorts a model's replicas most worth keeping first: serving
// requests, Ready over Loading, on an uncordoned node, most recently used,
// then by node name.
func (p *planner) keepOrder(a, b int) int {
	ra, rb := &p.res[a], &p.res[b]
	if c := cmp.Compare(rb.r.InFlight, ra.r.InFlight); c != 0 {
		return c
	}
	if c := cmp.Compare(stateRank(ra.r.State), stateRank(rb.r.State)); c != 0 {
		return c
	}
	if c := cmp.Compare(boolRank(!p.nodes[ra.node].sched), boolRank(!p.nodes[rb.node].sched)); c != 0 {
		return c
	}
	if c := rb.lastActive.Compare(ra.lastActive); c != 0 {
		return c
	}
	return cmp.Compare(p.nodes[ra.node].name, p.nodes[rb.node].name)
}

func stateRank(s State) int {
	if s == StateReady {
		return 0
	}
	return 1
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// idle reports whether a replica is idle past its model's keep-alive: Ready,
// no requests in flight, and not used (or loaded) within the keep-alive.
// A loading replica is never idle: its load was started for a reason.
func (p *planner) idle(m *modelState, rs *resState) bool {
	return rs.r.State == StateReady && rs.r.InFlight <= 0 && p.now.Sub(rs.lastActive) >= m.ka
}

// idleSeconds is how long a replica has gone unused, at least one second.
func (p *planner) idleSeconds(rs *resState) float64 {
	return max(p.now.Sub(rs.lastActive).Seconds(), 1)
}

// finish assembles and sorts the plan.
func (p *planner) finish() Plan {
	plan := Plan{
		Load:          p.loads,
		Unload:        p.unloads,
		Unschedulable: p.unsched,
		Desired:       make(map[string]int, len(p.models)),
	}
	for i := range p.res {
		rs := &p.res[i]
		if rs.counted && !rs.gone {
			plan.Keep = append(plan.Keep, Keep{Model: rs.r.Model, Node: p.nodes[rs.node].name})
		}
	}
	for _, m := range p.models {
		if m.in.Deleting {
			plan.Desired[m.in.Key] = 0
			continue
		}
		plan.Desired[m.in.Key] = max(m.target, m.keptGood+m.loads)
	}
	slices.SortFunc(plan.Load, func(a, b Load) int {
		return cmp.Or(cmp.Compare(a.Model, b.Model), cmp.Compare(a.Node, b.Node))
	})
	slices.SortFunc(plan.Unload, func(a, b Unload) int {
		return cmp.Or(cmp.Compare(a.Model, b.Model), cmp.Compare(a.Node, b.Node))
	})
	slices.SortFunc(plan.Keep, func(a, b Keep) int {
		return cmp.Or(cmp.Compare(a.Model, b.Model), cmp.Compare(a.Node, b.Node))
	})
	return plan
}
