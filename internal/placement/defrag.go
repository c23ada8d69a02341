package placement

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Defragmentation opens a hole for a model that needs room now when the
// fleet has the memory but scattered: enough free in all, yet not on any
// one device or node, and nothing the model may evict frees enough. It
// moves idle replicas of other models off one node, make before break: a
// copy is loaded elsewhere first, the original is unloaded (ReasonMoved)
// only once the copy is Ready, and only then does the model load in the
// hole.
//
// The planner keeps no state between passes, so a move in progress is
// recognised again in every pass: Compute plans once, and when a model
// that needs room (needsRoom) could not be placed it looks for a move
// (findDefrag) and plans again with that move as a hint. The hint makes
// the moved model keep one replica beyond replicas.max while its copy
// loads, and unload the original once the copy is Ready. Each pass
// recomputes the same move while it is under way, because a replica whose
// copy is already loading or Ready is the cheapest to move.
//
// Churn is bounded: a move is planned only for a model that has requests
// waiting for its first replica or is below replicas.min (or is pinned and
// has none); at most one hole is opened per pass; a copy goes only where
// it fits now, evicting nothing; a replica is moved only while it serves
// nothing and at least FreshGrace after it was loaded (so a replica moves
// at most once in that time, and one just placed is not moved again); and
// the original leaves only once a copy is Ready. If the waiting requests
// go away before the copy is Ready, the copy is a surplus replica and goes
// like any other.

// defragPlan is a hole to open: the moves that open it on node for the
// model forModel.
type defragPlan struct {
	forModel string
	node     string
	moves    []move
}

// move is one replica leaving the hole's node.
type move struct {
	model string // the moved model's key
	// to is the node its copy is loaded on by this plan; empty when a copy
	// already runs (or loads) elsewhere.
	to string
	// copyAt names where the copy runs or loads already, for messages.
	copyAt string
	// ready is set when the copies were Ready when the move was found: the
	// original may leave in this plan.
	ready bool
}

// moveOf returns the move of model key in the hint, nil if none.
func (d *defragPlan) moveOf(key string) *move {
	if d == nil {
		return nil
	}
	for i := range d.moves {
		if d.moves[i].model == key {
			return &d.moves[i]
		}
	}
	return nil
}

// needsRoom reports whether m may have a hole opened for it: it could not
// be placed, and requests wait for its first replica, or it is below
// replicas.min, or it is pinned and has no replica.
func (m *modelState) needsRoom() bool {
	if !m.failed || m.in.Deleting || m.in.BytesNeeded <= 0 {
		return false
	}
	floor := m.in.MinReplicas
	if m.in.Pinned {
		floor = max(floor, 1)
	}
	return m.demandEvicts() || m.keptGood+m.loads < floor
}

// findDefrag looks, after a plan, for one hole to open: for the first model
// (in placement order) that needs room and could not be placed, the node
// where the fewest new copies, then the fewest moves, then the fewest bytes
// moved make it fit. It returns nil when there is none. It reserves the
// copies' memory on p, which is discarded afterwards.
func (p *planner) findDefrag() *defragPlan {
	var needy []request
	for _, m := range p.models {
		if m.needsRoom() {
			needy = append(needy, request{m: m, ordinal: m.keptGood + m.loads})
		}
	}
	slices.SortFunc(needy, requestOrder)
	for _, r := range needy {
		if d := p.defragFor(r.m); d != nil {
			return d
		}
	}
	return nil
}

// hole is a candidate node for defragmentation with the moves it takes.
type hole struct {
	node    int
	movers  []int // residents to move, indices into planner.res
	copies  int   // how many of them need a new copy
	bytes   int64 // bytes of the new copies
	copyAts []copyPlace
}

func (h *hole) better(o *hole) bool {
	if h.copies != o.copies {
		return h.copies < o.copies
	}
	if len(h.movers) != len(o.movers) {
		return len(h.movers) < len(o.movers)
	}
	return h.bytes < o.bytes // nodes are scanned by name: a tie keeps the earlier
}

func (p *planner) defragFor(m *modelState) *defragPlan {
	var best *hole
	for _, n := range p.nodes {
		if !p.candidate(m, n) || slices.Contains(m.in.AvoidNodes, n.name) {
			continue
		}
		vs, copyAt := p.movers(m, n)
		if len(vs) == 0 {
			continue
		}
		e, ok := p.evictOn(m, n, vs)
		if !ok {
			continue
		}
		h := hole{node: n.idx, movers: slices.Clone(e.victims)}
		for _, ri := range h.movers {
			at := copyAt[ri]
			h.copyAts = append(h.copyAts, at)
			if at.node == "" {
				h.copies++
				h.bytes += p.res[ri].model.in.BytesNeeded
			}
		}
		if best == nil || h.better(best) {
			best = &h
		}
	}
	if best == nil {
		return nil
	}
	d := &defragPlan{forModel: m.in.Key, node: p.nodes[best.node].name}
	// Place the new copies one after another, so two never count the same
	// free memory.
	for j, ri := range best.movers {
		x := p.res[ri].model
		mv := move{model: x.in.Key, copyAt: best.copyAts[j].node, ready: best.copyAts[j].ready}
		if mv.copyAt == "" {
			to := p.copyNode(x, best.node)
			if to < 0 {
				return nil
			}
			p.load(x, p.fitNow(x, p.nodes[to]))
			mv.to = p.nodes[to].name
		}
		d.moves = append(d.moves, mv)
	}
	slices.SortFunc(d.moves, func(a, b move) int { return cmp.Compare(a.model, b.model) })
	return d
}

// movers returns the residents of n that may move to open a hole for m, as
// victims ordered cheapest first, and for each (by resident index) where a
// copy already runs or loads (no node when one must be loaded). A
// replica may move when it is Ready and not of a model being deleted, and
// either its model already has, elsewhere, as many replicas as it wants
// (a move under way), or it serves nothing, is not fresh, and its model
// fits now on another node. A replica of higher priority than m moves
// only when nothing of lower or equal priority does.
func (p *planner) movers(m *modelState, n *nodeState) ([]victim, map[int]copyPlace) {
	var vs []victim
	copyAt := map[int]copyPlace{}
	for _, ri := range n.res {
		rs := &p.res[ri]
		x := rs.model
		if x == nil || x == m || !rs.counted || rs.gone || rs.r.State != StateReady || x.in.Deleting || x.in.BytesNeeded <= 0 {
			continue
		}
		at, have := p.copyElsewhere(x, n.idx)
		cost := 0.0
		if !have {
			if rs.r.InFlight > 0 || p.now.Sub(rs.r.LoadedAt) < FreshGrace || p.copyNode(x, n.idx) < 0 {
				continue
			}
			cost = float64(x.in.BytesNeeded)
		} else if at.ready {
			cost = 0
		} else {
			cost = 0.5 // a copy is loading: nearly done
		}
		prio := int32(0)
		if x.in.Priority > m.in.Priority {
			prio = 1
		}
		vs = append(vs, victim{ri: ri, prio: prio, cost: cost, density: cost})
		copyAt[ri] = at
	}
	slices.SortFunc(vs, func(a, b victim) int {
		return cmp.Or(cmp.Compare(a.prio, b.prio), cmp.Compare(a.cost, b.cost),
			cmp.Compare(p.res[a.ri].r.Model, p.res[b.ri].r.Model))
	})
	return vs, copyAt
}

type copyPlace struct {
	node  string
	ready bool
}

// copyElsewhere reports whether x already has, on nodes other than skip,
// as many replicas (Ready or Loading) as it wants, and where the first of
// them is; ready when they are all Ready. A copy still loading beyond
// replicas.max counts although the plan unloads it as surplus: with the
// move as a hint, it stays.
func (p *planner) copyElsewhere(x *modelState, skip int) (copyPlace, bool) {
	var c copyPlace
	want := max(x.target, 1)
	ready, all := 0, 0
	for _, ri := range x.replicas {
		rs := &p.res[ri]
		if rs.node == skip || !rs.matching || rs.gone && rs.reason != ReasonSurplus {
			continue
		}
		all++
		if rs.r.State == StateReady {
			ready++
		}
		if c.node == "" {
			c.node = p.nodes[rs.node].name
		}
	}
	c.ready = ready >= want
	return c, all >= want
}

// copyNode is the node a copy of x would be loaded on, away from skip:
// one that may take x and fits it now without evicting anything, not busy,
// the most memory left after it, then name; -1 if none.
func (p *planner) copyNode(x *modelState, skip int) int {
	best := -1
	var bestFree int64
	for _, n := range p.nodes {
		if n.idx == skip || n.busy || !p.candidate(x, n) || slices.Contains(x.in.AvoidNodes, n.name) || !p.fitsNow(x, n) {
			continue
		}
		if free := n.totalAvail() - x.in.BytesNeeded; best < 0 || free > bestFree {
			best, bestFree = n.idx, free
		}
	}
	return best
}

// widenMove is decideModel's part of a hinted plan for a moved model m,
// once its target is known: while m still has its replica on the hole's
// node, it may keep one replica beyond replicas.max, so its copy is not
// surplus.
func (p *planner) widenMove(m *modelState) {
	if p.hint.moveOf(m.in.Key) != nil && p.replicaOn(m, p.hint.node) >= 0 {
		m.maxR++
	}
}

// replicaOn returns the index in m.replicas of its replica on the node
// named node, -1 if none.
func (p *planner) replicaOn(m *modelState, node string) int {
	for j, ri := range m.replicas {
		if p.nodes[p.res[ri].node].name == node {
			return j
		}
	}
	return -1
}

// breakMoves runs when the model the hole is for comes up for placement:
// each moved replica whose copy was Ready when the move was found, and
// still is, leaves the hole's node (ReasonMoved) if it serves nothing; its
// copies are kept for the rest of the plan.
func (p *planner) breakMoves() {
	for _, mv := range p.hint.moves {
		x := p.byKey[mv.model]
		if x == nil || !mv.ready {
			continue
		}
		at := p.replicaOn(x, p.hint.node)
		if at < 0 {
			continue
		}
		ri := x.replicas[at]
		rs := &p.res[ri]
		c, have := p.copyElsewhere(x, rs.node)
		if rs.gone || !have || !c.ready || rs.r.State != StateReady || rs.r.InFlight > 0 {
			continue
		}
		before := x.live()
		p.unload(ri, ReasonMoved, p.hint.forModel)
		if rs.matching {
			x.keptGood--
		} else {
			x.keptBad--
		}
		p.liveChanged(x, before)
		for _, o := range x.replicas {
			if or := &p.res[o]; !or.gone && or.node != rs.node {
				or.kept = true
			}
		}
		p.epoch++
	}
}

// placeMoves loads the copies the hint asks for, after every wanted
// replica is placed: a copy only takes memory nothing else wanted.
func (p *planner) placeMoves() {
	if p.hint == nil {
		return
	}
	for _, mv := range p.hint.moves {
		x := p.byKey[mv.model]
		if mv.to == "" || x == nil || x.loads > 0 || !p.keeps(x, p.hint.node) {
			continue
		}
		n := p.node(mv.to)
		if n == nil || !p.candidate(x, n) || !p.fitsNow(x, n) {
			continue
		}
		p.load(x, p.fitNow(x, n))
		p.loads[len(p.loads)-1].ForModel = p.hint.forModel
	}
}

// keeps reports whether x keeps (does not unload) its replica on the node
// named node.
func (p *planner) keeps(x *modelState, node string) bool {
	j := p.replicaOn(x, node)
	return j >= 0 && !p.res[x.replicas[j]].gone
}

// text says, for the model a hole is being opened for, what it waits
// for.
func (d *defragPlan) text() string {
	var parts []string
	for _, mv := range d.moves {
		switch {
		case mv.to != "":
			parts = append(parts, fmt.Sprintf("%s to %s", mv.model, mv.to))
		case mv.copyAt != "":
			parts = append(parts, fmt.Sprintf("%s to %s", mv.model, mv.copyAt))
		default:
			parts = append(parts, mv.model)
		}
	}
	return fmt.Sprintf("free memory is scattered: moving %s to make room on %s (make before break)",
		strings.Join(parts, ", "), d.node)
}
