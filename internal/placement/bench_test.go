package placement

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// randomFleet builds a reproducible, realistic fleet: nodes of 24–80 GiB
// GPUs, some not Ready, cordoned or with a reserve; models from 2 to 140
// GiB with a mix of priorities, pinning, min/max, selectors, exact device
// counts and deletions; nodes filled to 95–100% with residents in every
// state, most within keep-alive, some serving requests, some orphaned; and
// a burst of demand for the highest-priority models, none of them loaded,
// which makes room by evicting.
func randomFleet(seed uint64, nModels, nNodes, gpusPerNode int) Input {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	in := Input{Now: now}
	sizes := []float64{2, 4, 8, 14, 24, 40, 40, 70, 70, 140}
	prios := []int32{-10, 0, 0, 0, 0, 10, 10, 100}
	kinds := []string{"h100", "a100", "l40s"}
	gpuSize := map[string]float64{"h100": 80, "a100": 40, "l40s": 48}

	for i := range nModels {
		m := mkModel(fmt.Sprintf("ns%d/m%04d", i%7, i), needs(sizes[r.IntN(len(sizes))]),
			prio(prios[r.IntN(len(prios))]), keepAlive(time.Duration(5+r.IntN(25))*time.Minute))
		switch x := r.IntN(100); {
		case x < 25:
			m.LastDemand = now.Add(-time.Duration(r.IntN(300)) * time.Second)
			// requests held at the gateway for some of those
			m.Waiting = x < 10
		case x < 60:
			m.LastDemand = now.Add(-time.Duration(r.IntN(7200)) * time.Second)
		}
		if m.Priority == 100 {
			// a burst of demand for important models that are not loaded
			m.LastDemand = now.Add(-time.Duration(r.IntN(60)) * time.Second)
		}
		if r.IntN(100) < 5 {
			m.Pinned = true
		}
		if r.IntN(100) < 10 {
			m.MinReplicas = 1 + r.IntN(2)
		}
		m.MaxReplicas = max(m.MinReplicas, 1+r.IntN(4))
		if r.IntN(100) < 20 {
			m.TargetInFlight = 4
		}
		if r.IntN(100) < 15 {
			m.NodeSelector = map[string]string{"gpu": kinds[r.IntN(len(kinds))]}
		}
		if r.IntN(100) < 3 {
			m.NodeNames = []string{fmt.Sprintf("node-%04d", r.IntN(nNodes)), fmt.Sprintf("node-%04d", r.IntN(nNodes))}
		}
		if r.IntN(100) < 10 {
			m.Devices = 1 + r.IntN(2)
		}
		if r.IntN(100) < 50 {
			m.EachBytes = m.BytesNeeded / 10 // compute buffers, on every device
		}
		if r.IntN(100) < 2 {
			m.Deleting = true
		}
		if r.IntN(100) < 3 {
			m.AvoidNodes = []string{fmt.Sprintf("node-%04d", r.IntN(nNodes))}
		}
		in.Models = append(in.Models, m)
	}

	replicas := map[string]int{}
	for i := range nNodes {
		kind := kinds[r.IntN(len(kinds))]
		g := make([]float64, gpusPerNode)
		for j := range g {
			g[j] = gpuSize[kind]
		}
		n := mkNode(fmt.Sprintf("node-%04d", i), withGPUs(g...), labels("gpu", kind, "zone", fmt.Sprint(i%3)))
		if r.IntN(100) < 5 {
			n.Ready = false
		}
		if r.IntN(100) < 3 {
			n.Unschedulable = true
		}
		if r.IntN(100) < 20 {
			n.ReservedBytes = gb(1)
		}
		fill := 0.95 + r.Float64()*0.05
		held := map[string]bool{}
		for range 12 * gpusPerNode {
			var key string
			var b int64
			var ka time.Duration
			if r.IntN(1000) < 5 {
				key, b = fmt.Sprintf("gone/x%d", r.IntN(100)), gb(sizes[r.IntN(4)])
			} else {
				m := &in.Models[r.IntN(len(in.Models))]
				key, b, ka = m.Key, m.BytesNeeded, m.KeepAlive
				if m.Priority == 100 || replicas[key] >= m.MaxReplicas && r.IntN(100) >= 1 {
					continue // the manager rarely leaves a surplus
				}
				if r.IntN(100) >= 2 && !fleetMatches(m, &n) {
					continue // nor a misplaced replica
				}
			}
			if held[key] {
				continue
			}
			// the device(s) with the most free memory
			k := 1
			if b > gb(gpuSize[kind]) {
				k = int((b + gb(gpuSize[kind]) - 1) / gb(gpuSize[kind]))
			}
			if k > len(n.Devices) {
				continue
			}
			order := make([]int, len(n.Devices))
			for j := range order {
				order[j] = j
			}
			for a := range order {
				for c := a + 1; c < len(order); c++ {
					if n.Devices[order[c]].FreeBytes > n.Devices[order[a]].FreeBytes {
						order[a], order[c] = order[c], order[a]
					}
				}
			}
			ok := true
			for _, j := range order[:k] {
				if float64(n.Devices[j].FreeBytes-b/int64(k)) < (1-fill)*float64(n.Devices[j].TotalBytes) {
					ok = false
				}
			}
			if !ok {
				continue
			}
			res := Resident{Model: key, Bytes: b, State: StateReady,
				LoadedAt: now.Add(-time.Duration(1+r.IntN(48*3600)) * time.Second)}
			// A steady fleet: the manager unloaded what idled out before, so
			// most residents are within their keep-alive, a few just past it.
			ka = max(ka, 15*time.Minute)
			res.LastUsed = later(res.LoadedAt, now.Add(-time.Duration(r.Int64N(int64(ka)*21/20))))
			for _, j := range order[:k] {
				res.Devices = append(res.Devices, n.Devices[j].Index)
				n.Devices[j].FreeBytes -= b / int64(k)
			}
			switch x := r.IntN(100); {
			case x < 3:
				res.State = StateLoading
				res.LoadedAt = time.Time{}
			case x < 5:
				res.State = StateFailed
			case x < 6:
				res.State = StateUnloading
			case x < 25:
				res.InFlight = r.IntN(12)
				res.LastUsed = now
			case x < 28:
				res.Outdated = true // a spec change not yet rolled out
			}
			held[key] = true
			replicas[key]++
			n.Residents = append(n.Residents, res)
		}
		in.Nodes = append(in.Nodes, n)
	}
	// The manager's LastDemand is the newest of demand and replica use.
	byKey := map[string]*Model{}
	for i := range in.Models {
		byKey[in.Models[i].Key] = &in.Models[i]
	}
	for _, n := range in.Nodes {
		for _, res := range n.Residents {
			if m := byKey[res.Model]; m != nil {
				m.LastDemand = later(m.LastDemand, res.LastUsed)
			}
		}
	}
	return in
}

func fleetMatches(m *Model, n *Node) bool {
	for k, v := range m.NodeSelector {
		if n.Labels[k] != v {
			return false
		}
	}
	return len(m.NodeNames) == 0 || slices.Contains(m.NodeNames, n.Name)
}

func benchmarkPlan(b *testing.B, models, nodes, gpus int) {
	in := randomFleet(42, models, nodes, gpus)
	p := Compute(in)
	var residents, evicted int
	for _, n := range in.Nodes {
		residents += len(n.Residents)
	}
	for _, u := range p.Unload {
		if u.Reason == ReasonEvicted {
			evicted++
		}
	}
	for b.Loop() {
		Compute(in)
	}
	b.ReportMetric(float64(residents), "residents")
	b.ReportMetric(float64(len(p.Load)), "loads")
	b.ReportMetric(float64(len(p.Unload)), "unloads")
	b.ReportMetric(float64(evicted), "evictions")
	b.ReportMetric(float64(len(p.Unschedulable)), "unschedulable")
}

// BenchmarkPlan is the manager's pass at fleet scale: 1,000 Models on 200
// nodes of 8 GPUs.
func BenchmarkPlan(b *testing.B) { benchmarkPlan(b, 1000, 200, 8) }

// BenchmarkPlanSmall is a typical small fleet: 50 Models on 10 nodes of 4
// GPUs.
func BenchmarkPlanSmall(b *testing.B) { benchmarkPlan(b, 50, 10, 4) }

// pressuredFleet is the eviction path at fleet scale, a worst case: every
// GPU is full with two 40 GiB replicas of lower-priority models in use, and
// 200 higher-priority models of 200 different sizes (30 to 70 GiB) want a
// replica each, so every placement must evict and no two ask alike.
func pressuredFleet(nNodes, gpusPerNode int) Input {
	r := rand.New(rand.NewPCG(7, 7))
	in := Input{Now: now}
	const low = 800
	for i := range low {
		in.Models = append(in.Models, mkModel(fmt.Sprintf("low/m%04d", i), needs(40), maxR(4), wanted()))
	}
	for i := range 200 {
		in.Models = append(in.Models, mkModel(fmt.Sprintf("high/m%04d", i), needs(30+float64(i)*0.2), prio(10), wanted()))
	}
	next := 0
	for i := range nNodes {
		g := make([]float64, gpusPerNode)
		for j := range g {
			g[j] = 80
		}
		n := mkNode(fmt.Sprintf("node-%04d", i), withGPUs(g...))
		for d := range gpusPerNode {
			for range 2 {
				n.Residents = append(n.Residents, Resident{Model: in.Models[next%low].Key, Devices: []int{d}, Bytes: gb(40),
					State: StateReady, LoadedAt: now.Add(-time.Hour), LastUsed: now.Add(-time.Duration(r.IntN(600)) * time.Second)})
				n.Devices[d].FreeBytes -= gb(40)
				next++
			}
		}
		in.Nodes = append(in.Nodes, n)
	}
	return in
}

// BenchmarkPlanPressure: 1,000 Models on 200 nodes of 8 GPUs, every
// placement evicting.
func BenchmarkPlanPressure(b *testing.B) {
	in := pressuredFleet(200, 8)
	p := Compute(in)
	for b.Loop() {
		Compute(in)
	}
	b.ReportMetric(float64(len(p.Load)), "loads")
	b.ReportMetric(float64(len(p.Unload)), "unloads")
	b.ReportMetric(float64(len(p.Unschedulable)), "unschedulable")
}

func TestPressuredFleet(t *testing.T) {
	in := pressuredFleet(20, 4)
	p := Compute(in)
	if len(p.Load) == 0 || len(p.Unload) == 0 {
		t.Fatalf("expected evictions: %d loads, %d unloads", len(p.Load), len(p.Unload))
	}
	checkInvariants(t, in, p)
}
