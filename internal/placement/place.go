package placement

import (
	"cmp"
	"math"
	"slices"

	"github.com/helexa-ai/cortex/internal/vram"
)

// request is one replica a model wants and does not have.
type request struct {
	m       *modelState
	ordinal int // the replica's number among the model's, from 0
}

// requestOrder places higher priority first; at equal priority every
// model's first replica before anyone's second; then pinned models, older
// demand (no demand signal counts as oldest: a replicas.min floor), then
// key.
func requestOrder(a, b request) int {
	if c := cmp.Compare(b.m.in.Priority, a.m.in.Priority); c != 0 {
		return c
	}
	if c := cmp.Compare(a.ordinal, b.ordinal); c != 0 {
		return c
	}
	if c := cmp.Compare(boolRank(!a.m.in.Pinned), boolRank(!b.m.in.Pinned)); c != 0 {
		return c
	}
	if c := a.m.in.LastDemand.Compare(b.m.in.LastDemand); c != 0 {
		return c
	}
	return cmp.Compare(a.m.in.Key, b.m.in.Key)
}

// place works through the wanted replicas in order, loading each on the best
// node and evicting where it must.
func (p *planner) place() {
	var q []request
	for _, m := range p.models {
		if m.in.Deleting {
			continue
		}
		for j := m.keptGood; j < m.target; j++ {
			q = append(q, request{m: m, ordinal: j})
		}
	}
	slices.SortFunc(q, requestOrder)
	for i := 0; i < len(q); i++ {
		m := q[i].m
		if m.failed || m.keptGood+m.loads >= m.target {
			continue
		}
		if m.in.BytesNeeded <= 0 {
			p.fail(m, "memory need unknown (no VRAM estimate yet)")
			continue
		}
		if p.hint != nil && p.hint.forModel == m.in.Key {
			p.breakMoves()
		}
		c, ok := p.choose(m)
		if !ok {
			p.fail(m, p.explain(m))
			continue
		}
		for _, vi := range c.victims {
			rs := &p.res[vi]
			v := rs.model
			before := v.live()
			p.unload(vi, ReasonEvicted, m.in.Key)
			v.touched = append(v.touched, rs.node)
			if v.evictedFrom == "" {
				v.evictedFrom, v.evictedFor = p.nodes[rs.node].name, m.in.Key
			}
			if rs.matching {
				v.keptGood--
			} else {
				v.keptBad--
			}
			p.liveChanged(v, before)
			if !v.failed && v.keptGood+v.loads < v.target {
				// The victim still wants the replica: try it elsewhere, in
				// its turn (it is of lower priority, so after this one).
				r := request{m: v, ordinal: v.keptGood + v.loads}
				at, _ := slices.BinarySearchFunc(q[i+1:], r, requestOrder)
				q = slices.Insert(q, i+1+at, r)
			}
		}
		p.load(m, c)
	}
}

func (p *planner) fail(m *modelState, msg string) {
	m.failed = true
	p.unsched[m.in.Key] = msg
}

// choice is where a replica goes.
type choice struct {
	node    int
	pos     []int   // device positions
	avail   []int64 // memory available on pos once the victims are gone
	victims []int   // residents to evict, indices into planner.res
}

func (p *planner) load(m *modelState, c choice) {
	n := p.nodes[c.node]
	// The neuron divides by the same rule over its free memory; the plan
	// accounts what it expects the neuron to reserve on each device.
	shares, _ := vram.Shares(m.need, c.avail)
	type dev struct {
		index int
		bytes int64
	}
	devs := make([]dev, len(c.pos))
	for j, pos := range c.pos {
		n.free[pos] -= shares[j]
		devs[j] = dev{n.devIndex[pos], shares[j]}
	}
	slices.SortFunc(devs, func(a, b dev) int { return cmp.Compare(a.index, b.index) })
	l := Load{Model: m.in.Key, Node: n.name, Bytes: m.need.Total(len(devs)),
		Devices: make([]int, len(devs)), DeviceBytes: make([]int64, len(devs))}
	for j, d := range devs {
		l.Devices[j], l.DeviceBytes[j] = d.index, d.bytes
	}
	p.loads = append(p.loads, l)
	before := m.live()
	m.loads++
	p.liveChanged(m, before)
	m.touched = append(m.touched, c.node)
	n.version++
}

// liveChanged notes that m's replica count changed from before: if that
// changes whether its resident replicas may be evicted (replicas.min),
// every cached eviction is stale.
func (p *planner) liveChanged(m *modelState, before int) {
	if m.keptGood+m.keptBad > 0 && (before-1 >= m.in.MinReplicas) != (m.live()-1 >= m.in.MinReplicas) {
		p.epoch++
	}
}

// candidate reports whether a new replica of m may go on n at all, memory
// aside.
func (p *planner) candidate(m *modelState, n *nodeState) bool {
	return n.sched && len(n.devIndex) >= m.in.Devices && !m.touches(n.idx) && matches(m.in, n)
}

// choose picks the node for a new replica of m: a node that fits it now
// (most memory left after it, then name) over one that fits after evicting
// (least important and cheapest victims, fewest, most memory left, name).
// Nodes in m's AvoidNodes come after every other node that fits, even
// after evictions.
func (p *planner) choose(m *modelState) (choice, bool) {
	b := m.in.BytesNeeded
	best, bestBusy, bestAvoid := -1, -1, -1
	var bestFree, bestBusyFree, bestAvoidFree int64
	evict := p.scratch.evictNodes[:0]
	for _, n := range p.nodes {
		if !p.candidate(m, n) {
			continue
		}
		avoid := slices.Contains(m.in.AvoidNodes, n.name)
		if !p.fitsNow(m, n) {
			evict = append(evict, n.idx)
			continue
		}
		free := n.totalAvail() - b
		switch {
		case avoid:
			if bestAvoid < 0 || free > bestAvoidFree {
				bestAvoid, bestAvoidFree = n.idx, free
			}
		case n.busy:
			if bestBusy < 0 || free > bestBusyFree {
				bestBusy, bestBusyFree = n.idx, free
			}
		case best < 0 || free > bestFree:
			best, bestFree = n.idx, free
		}
	}
	p.scratch.evictNodes = evict
	if best >= 0 {
		return p.fitNow(m, p.nodes[best]), true
	}
	if bestBusy >= 0 {
		return p.fitNow(m, p.nodes[bestBusy]), true
	}
	if c, ok := p.bestEviction(m, evict, false); ok {
		return c, true
	}
	if bestAvoid >= 0 {
		return p.fitNow(m, p.nodes[bestAvoid]), true
	}
	return p.bestEviction(m, evict, true)
}

// fitsNow reports whether m fits on n without evicting anything.
func (p *planner) fitsNow(m *modelState, n *nodeState) bool {
	b := m.in.BytesNeeded
	k := m.in.Devices
	if k == 1 || k == 0 {
		for i := range n.free {
			if n.avail(i) >= b {
				return true
			}
		}
		if k == 1 {
			return false
		}
	}
	order := p.byAvail(n, nil)
	if k == 0 {
		return p.fewestFit(m, order, p.scratch.vals) > 0
	}
	return p.fitsOn(m, order[:k], p.scratch.vals)
}

// fitsOn reports whether m fits on the devices at positions set, whose
// available memory is in vals (by position): every device gets a share,
// and each share (its part of the split plus the per-device buffers)
// fits, by the neuron's rule.
func (p *planner) fitsOn(m *modelState, set []int, vals []int64) bool {
	free := resize(&p.scratch.fits, len(set))
	for j, pos := range set {
		if vals[pos] <= 0 {
			return false
		}
		free[j] = vals[pos]
	}
	return vram.Fits(m.need, free)
}

// fewestFit is the fewest devices, taken from order (most available
// first), that m fits on; 0 if none. More devices need more memory in all
// (the per-device buffers), so it tries each count.
func (p *planner) fewestFit(m *modelState, order []int, vals []int64) int {
	for k := 1; k <= len(order); k++ {
		if p.fitsOn(m, order[:k], vals) {
			return k
		}
	}
	return 0
}

// byAvail returns n's device positions, most available memory first (index
// breaking ties), with avail values in p.scratch.vals by position. extra,
// when not nil, adds memory per position (what evictions would free).
func (p *planner) byAvail(n *nodeState, extra []int64) []int {
	order := p.scratch.order[:0]
	vals := p.scratch.vals[:0]
	for i := range n.free {
		v := n.free[i]
		if extra != nil {
			v += extra[i]
		}
		vals = append(vals, max(0, v-n.reserved))
		order = append(order, i)
	}
	slices.SortFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(vals[b], vals[a]), cmp.Compare(n.devIndex[a], n.devIndex[b]))
	})
	p.scratch.order, p.scratch.vals = order, vals
	return order
}

// fitNow picks the devices for m on n, which fits it now: one device where
// one is asked for or suffices (the tightest that fits, to keep larger
// holes for larger models), else the fewest (or the asked number of)
// devices with the most memory.
func (p *planner) fitNow(m *modelState, n *nodeState) choice {
	b := m.in.BytesNeeded
	k := m.in.Devices
	order := p.byAvail(n, nil)
	vals := p.scratch.vals
	if k <= 1 {
		tight := -1
		for _, pos := range order {
			if vals[pos] >= b && (tight < 0 || vals[pos] < vals[tight] ||
				vals[pos] == vals[tight] && n.devIndex[pos] < n.devIndex[tight]) {
				tight = pos
			}
		}
		if tight >= 0 {
			return choice{node: n.idx, pos: []int{tight}, avail: []int64{vals[tight]}}
		}
	}
	if k == 0 {
		k = max(p.fewestFit(m, order, vals), 1)
	}
	c := choice{node: n.idx, pos: slices.Clone(order[:k]), avail: make([]int64, k)}
	for j, pos := range c.pos {
		c.avail[j] = vals[pos]
	}
	return c
}

// eviction is a candidate set of victims on one node, with its cost.
type eviction struct {
	choice
	maxPriority int32
	cost        float64
	freeAfter   int64
}

// better orders evictions: the least important victims first (lowest
// highest-priority among them), then the cheapest to reload, the fewest,
// the most memory left, the node name (nodes are scanned by name, so a
// tie keeps the earlier).
func (e *eviction) better(o *eviction) bool {
	if e.maxPriority != o.maxPriority {
		return e.maxPriority < o.maxPriority
	}
	if e.cost != o.cost {
		return e.cost < o.cost
	}
	if len(e.victims) != len(o.victims) {
		return len(e.victims) < len(o.victims)
	}
	return e.freeAfter > o.freeAfter
}

// bestEviction finds the best node among nodes (indices) to place m on by
// evicting, considering only nodes in m's AvoidNodes when avoided is true,
// and only the others when false.
func (p *planner) bestEviction(m *modelState, nodes []int, avoided bool) (choice, bool) {
	var best *eviction
	for _, ni := range nodes {
		n := p.nodes[ni]
		if slices.Contains(m.in.AvoidNodes, n.name) != avoided {
			continue
		}
		if e := p.cachedEvictOn(m, n, best); e != nil && (best == nil || e.better(best)) {
			best = e
		}
	}
	if best == nil {
		return choice{}, false
	}
	return best.choice, true
}

// evictionKey is what an eviction on a node depends on besides the node's
// own state (its version) and which models may lose a replica (the
// planner's epoch).
type evictionKey struct {
	prio    int32
	equal   bool // equal priority may be evicted (demandEvicts)
	need    vram.Need
	devices int
	version uint64
	epoch   uint64
}

// maxCachedEvictions bounds the evictions remembered per node (the newest).
const maxCachedEvictions = 4

type cachedEviction struct {
	key evictionKey
	e   *eviction // nil: no eviction fits
}

// cachedEvictOn is evictOn, remembered per node: many models of one
// priority and size often ask the same full nodes, and one placement
// changes one node. It returns nil without looking further when no
// eviction on n can beat best.
func (p *planner) cachedEvictOn(m *modelState, n *nodeState, best *eviction) *eviction {
	key := evictionKey{m.in.Priority, m.demandEvicts(), m.need, m.in.Devices, n.version, p.epoch}
	live := n.evictions[:0]
	for _, c := range n.evictions {
		if c.key == key {
			return c.e
		}
		if c.key.version == n.version && c.key.epoch == p.epoch {
			live = append(live, c)
		}
	}
	if len(live) >= maxCachedEvictions {
		live = append(live[:0], live[1:]...)
	}
	vs := p.victims(m, n)
	if len(vs) == 0 {
		n.evictions = append(live, cachedEviction{key: key})
		return nil
	}
	if best != nil && cannotBeat(vs, p.lacking(m, n), best) {
		n.evictions = live
		return nil
	}
	var e *eviction
	if found, ok := p.evictOn(m, n, vs); ok {
		c := found.clone()
		e = &c
	}
	n.evictions = append(live, cachedEviction{key: key, e: e})
	return e
}

// cannotBeat reports whether no set of victims among vs (best first) that
// frees lacking bytes can be better than best. Any such set has a top
// priority at least that of the first victim; it costs at least the
// cheapest victim, and at least lacking bytes at the lowest cost per byte
// among the victims.
func cannotBeat(vs []victim, lacking int64, best *eviction) bool {
	if len(vs) == 0 {
		return true
	}
	if vs[0].prio != best.maxPriority {
		return vs[0].prio > best.maxPriority
	}
	cheapest, density := math.Inf(1), math.Inf(1)
	for _, v := range vs {
		cheapest, density = min(cheapest, v.cost), min(density, v.density)
	}
	return cheapest > best.cost || float64(lacking)*density > best.cost
}

// lacking is what m lacks on n before any eviction, at best.
func (p *planner) lacking(m *modelState, n *nodeState) int64 {
	lacking := m.in.BytesNeeded
	if k := m.in.Devices; k > 0 {
		lacking = m.need.Total(k)
		order := p.byAvail(n, nil)
		for _, pos := range order[:k] {
			lacking -= p.scratch.vals[pos]
		}
	} else {
		lacking -= n.totalAvail()
	}
	return lacking
}

// victim is a resident m may evict, with what evicting it costs.
type victim struct {
	ri   int
	prio int32
	// cost is the requests per second expected to find the victim's
	// model cold once it is gone (reloadCost); density is that per byte
	// freed, the order victims are taken in.
	cost    float64
	density float64
}

// victims returns the residents of n that m may evict, best victims first:
// lowest priority, then the fewest requests expected per byte freed.
func (p *planner) victims(m *modelState, n *nodeState) []victim {
	if !n.victimsSorted {
		// Priority and reload cost do not change within a plan: sort once.
		for _, ri := range n.res {
			rs := &p.res[ri]
			if rs.model != nil && rs.counted && rs.r.State == StateReady && rs.r.InFlight <= 0 && !rs.model.in.Pinned {
				cost := p.reloadCost(rs)
				n.victimOrder = append(n.victimOrder, victim{ri: ri, prio: rs.model.in.Priority,
					cost: cost, density: cost / float64(max(1, rs.r.Bytes))})
			}
		}
		slices.SortFunc(n.victimOrder, func(a, b victim) int {
			ra, rb := &p.res[a.ri], &p.res[b.ri]
			return cmp.Or(cmp.Compare(a.prio, b.prio), cmp.Compare(a.density, b.density),
				ra.lastActive.Compare(rb.lastActive), cmp.Compare(ra.r.Model, rb.r.Model))
		})
		n.victimsSorted = true
	}
	vs := p.scratch.victims[:0]
	equal := m.demandEvicts()
	for _, v := range n.victimOrder {
		if v.prio > m.in.Priority || v.prio == m.in.Priority && !equal {
			break
		}
		if p.evictable(v.ri, m) {
			vs = append(vs, v)
		}
	}
	p.scratch.victims = vs
	return vs
}

// evictable reports whether m may evict resident ri: a Ready replica,
// not pinned, serving nothing, not loaded or evicted by this plan, whose
// model keeps replicas.min without it, and of a model of strictly lower
// priority, or of equal priority when requests wait for m's first replica
// (demandEvicts) and the replica has served since it was loaded (fresh).
// Replicas idle past keep-alive are already unloaded by the time placement
// runs, so their memory is free before any eviction is considered.
func (p *planner) evictable(ri int, m *modelState) bool {
	rs := &p.res[ri]
	v := rs.model
	if v == nil || v == m || !rs.counted || rs.gone || rs.kept ||
		rs.r.State != StateReady || rs.r.InFlight > 0 ||
		v.in.Pinned || v.live()-1 < v.in.MinReplicas {
		return false
	}
	if v.in.Priority < m.in.Priority {
		return true
	}
	return v.in.Priority == m.in.Priority && m.demandEvicts() && !p.fresh(rs)
}

// FreshGrace is how long a replica that has not served a request since it
// became Ready is protected from eviction by a model of equal priority.
// Such a replica was most likely loaded for a request that is about to
// reach it; evicting it first would let two models that both have waiting
// requests take each other's memory in turn without either being served.
// The grace is bounded so that a replica whose request went away (the
// client gave up) does not hold its memory for a whole keep-alive.
const FreshGrace = MinKeepAlive

// fresh reports whether a Ready replica has not served since it was loaded
// and was loaded within FreshGrace.
func (p *planner) fresh(rs *resState) bool {
	l := rs.r.LoadedAt
	return !l.IsZero() && rs.r.LastUsed.Before(l) && p.now.Sub(l) < FreshGrace
}

// reloadCost is what evicting a replica is expected to cost: the requests
// per second that will find its model cold once it is gone, the model's
// RequestRate; for a model whose rate is unknown (or that was not asked
// for since the manager started), one request over the time the replica
// has gone unused. Victims are taken by the lowest cost per byte freed, so
// a large model used rarely goes before a small one used as rarely: its
// memory keeps more of the others warm for the same expected cold starts.
// Recency alone does not protect a replica: in the fleet simulator,
// counting a replica used seconds ago as busy (at least one request over
// its idle time) cost a fifth more cold starts than the rate alone
// (docs/fleet.md).
func (p *planner) reloadCost(rs *resState) float64 {
	if r := rs.model.in.RequestRate; r > 0 {
		return r
	}
	return 1 / p.idleSeconds(rs)
}

// evictOn finds the cheapest way to fit m on n by evicting among vs (from
// victims). The result's slices are scratch, valid until the next call.
func (p *planner) evictOn(m *modelState, n *nodeState, vs []victim) (eviction, bool) {
	b := m.in.BytesNeeded
	extra := resize(&p.scratch.extra, len(n.free))
	clear(extra)
	for _, v := range vs {
		rs := &p.res[v.ri]
		for j, pos := range rs.pos {
			extra[pos] += rs.share[j]
		}
	}
	order := p.byAvail(n, extra)
	pot := p.scratch.vals

	lo, hi := m.in.Devices, m.in.Devices
	if lo == 0 {
		lo, hi = 1, len(order)
	}
	for k := lo; k <= hi; k++ {
		if k == 1 {
			// Each device that could hold it alone, with the victims on
			// it; the best eviction.
			perDev := resize(&p.scratch.perDev, len(n.free))
			for pos := range perDev {
				perDev[pos] = perDev[pos][:0]
			}
			for _, v := range vs {
				rs := &p.res[v.ri]
				for j, pos := range rs.pos {
					if rs.share[j] > 0 {
						perDev[pos] = append(perDev[pos], v)
					}
				}
			}
			var best eviction
			bestPos := -1
			for _, pos := range order {
				if pot[pos] < b {
					break
				}
				dv := perDev[pos]
				if bestPos >= 0 && cannotBeat(dv, b-n.avail(pos), &best) {
					continue
				}
				if e, ok := p.victimSet(m, n, nil, pos, dv); ok && (bestPos < 0 || e.better(&best)) {
					best, bestPos = e, pos
				}
			}
			if bestPos >= 0 {
				return p.victimSet(m, n, nil, bestPos, perDev[bestPos])
			}
			continue
		}
		if !p.fitsOn(m, order[:k], pot) {
			continue
		}
		if e, ok := p.victimSet(m, n, order[:k], -1, vs); ok {
			return e, true
		}
	}
	return eviction{}, false
}

// victimSet picks victims among vs (best first) until the devices at set
// (or the single device at pos one, when set is empty) hold m, then drops
// any victim the rest do without, so no victim is evicted in vain. The
// result's slices are scratch.
func (p *planner) victimSet(m *modelState, n *nodeState, set []int, one int, vs []victim) (eviction, bool) {
	if len(set) == 0 {
		set = append(p.scratch.one[:0], one)
		p.scratch.one = set
	}
	at := resize(&p.scratch.at, len(n.free))
	for i := range at {
		at[i] = -1
	}
	tmp := resize(&p.scratch.tmp, len(set))
	for j, pos := range set {
		at[pos] = j
		tmp[j] = n.free[pos]
	}
	free := resize(&p.scratch.fits, len(set))
	fits := func() bool {
		for j, f := range tmp {
			free[j] = f - n.reserved
			if free[j] <= 0 {
				return false
			}
		}
		return vram.Fits(m.need, free)
	}
	apply := func(ri int, sign int64) bool {
		rs := &p.res[ri]
		hit := false
		for j, pos := range rs.pos {
			if s := at[pos]; s >= 0 && rs.share[j] > 0 {
				tmp[s] += sign * rs.share[j]
				hit = true
			}
		}
		return hit
	}
	chosen := p.scratch.chosen[:0]
	for _, v := range vs {
		if fits() {
			break
		}
		if slices.ContainsFunc(chosen, func(c victim) bool { return p.res[c.ri].model == p.res[v.ri].model }) {
			continue // one eviction per model and node keeps replicas.min safe
		}
		if apply(v.ri, 1) {
			chosen = append(chosen, v)
		}
	}
	p.scratch.chosen = chosen
	if !fits() {
		return eviction{}, false
	}
	for j := len(chosen) - 1; j >= 0; j-- {
		apply(chosen[j].ri, -1)
		if fits() {
			chosen = slices.Delete(chosen, j, j+1)
		} else {
			apply(chosen[j].ri, 1)
		}
	}
	avail := resize(&p.scratch.avail, len(set))
	for j, f := range tmp {
		avail[j] = f - n.reserved
	}
	ris := resize(&p.scratch.ris, len(chosen))
	e := eviction{choice: choice{node: n.idx, pos: set, victims: ris, avail: avail}}
	freed := resize(&p.scratch.freed, len(n.free))
	clear(freed)
	for i, v := range chosen {
		ris[i] = v.ri
		if i == 0 || v.prio > e.maxPriority {
			e.maxPriority = v.prio
		}
		e.cost += v.cost
		rs := &p.res[v.ri]
		for j, pos := range rs.pos {
			freed[pos] += rs.share[j]
		}
	}
	for i := range n.free {
		e.freeAfter += max(0, n.free[i]+freed[i]-n.reserved)
	}
	e.freeAfter -= m.need.Total(len(set))
	return e, true
}

// clone copies an eviction out of the scratch buffers.
func (e eviction) clone() eviction {
	e.pos = slices.Clone(e.pos)
	e.avail = slices.Clone(e.avail)
	e.victims = slices.Clone(e.victims)
	return e
}

// resize returns *buf with length n, growing it if needed.
func resize[T any](buf *[]T, n int) []T {
	if cap(*buf) < n {
		*buf = make([]T, n)
	}
	*buf = (*buf)[:n]
	return *buf
}

// scratch holds buffers reused across requests.
type scratch struct {
	order      []int
	vals       []int64
	extra      []int64
	victims    []victim
	evictNodes []int
	one        []int
	at         []int
	tmp        []int64
	avail      []int64
	freed      []int64
	chosen     []victim
	ris        []int
	perDev     [][]victim
	fits       []int64
}
