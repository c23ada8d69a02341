// Package placement is the manager's pure placement planner: given one
// snapshot of the fleet (nodes, their devices and resident models, the
// Models and the time), Compute says which replicas to load where, which to
// unload and why, which stay, and why a model cannot be placed. It does no
// I/O, reads no clock and imports no Kubernetes package; the manager maps
// the CRDs to Input and executes the Plan (a node's unloads before its
// loads).
//
// # Replicas
//
// A replica is a resident in state Loading or Ready on a Ready node.
// Residents of nodes that are not Ready do not count (they leave the ready
// set at once and are re-placed elsewhere) and get no unload: the node is
// unreachable. A Failed resident on a Ready node is unloaded (ReasonFailed)
// so a retry can happen; the node is not used for that model in the same
// plan, so a failing node is not retried at once (Model.AvoidNodes carries
// longer back-off). An Unloading resident holds its memory until it is
// gone. A resident of a model that is not in Input.Models is unloaded
// (ReasonOrphaned). A Ready replica loaded with a source or engine
// settings its Model no longer has (Resident.Outdated) is unloaded
// (ReasonOutdated), one per model and plan, and only while no replica of
// the model is loading or unloading, so a model with several replicas
// keeps serving; the replacement is placed like any missing replica (on
// another node in the same plan, or on the same node in the next). A node
// holds at most one replica of a model (spread), and the plan touches a
// model at most once per node.
//
// # Desired replicas
//
// A deleting model wants 0: every replica on a Ready node is unloaded
// (ReasonDeleted), Loading ones too. Otherwise the target is
// replicas.min, at least 1 if pinned, at least 1 while the model is in
// demand, and, with TargetInFlight set, at least ceil(sum of in-flight
// requests / TargetInFlight) while in demand; capped at MaxReplicas.
//
// A model is in demand while a replica has requests in flight, while a
// replica is loading (its load was started for a reason), or within its
// keep-alive of the latest of LastDemand and its replicas' LastUsed and
// LoadedAt. Keep-alive is raised to MinKeepAlive. Keep-alive says when an
// idle replica is unloaded even if nobody needs the room; it does not
// protect an idle replica from a waiting request of equal priority (see
// Eviction).
//
// # Unloading what is not wanted
//
// Replicas are ranked most worth keeping first: requests in flight, Ready
// over Loading, on an uncordoned node, most recently used (or loaded), node
// name. The first target replicas stay. Beyond MaxReplicas a replica is
// unloaded (ReasonSurplus) whatever its use. Between the target and
// MaxReplicas a replica is unloaded only once it is itself idle past the
// keep-alive (ReasonIdle: Ready, nothing in flight, not used or loaded
// within the keep-alive); a replica added for load therefore stays while it
// is used, which keeps scale-down from flapping. So nothing is ever idled
// out below replicas.min or a pinned model's first replica, and a loading
// replica is never idled out.
//
// A replica on a node that no longer matches the model's nodeSelector or
// nodeNames keeps serving until as many Ready replicas as the target run on
// matching nodes (make before break) and its requests are done, then is
// unloaded (ReasonMisplaced, or ReasonIdle if idle). A cordoned node is not a mismatch: what it holds
// stays until it idles out or is deleted.
//
// # Placing
//
// Wanted replicas are placed one at a time: higher priority first; at equal
// priority every model's first missing replica before anyone's second; then
// pinned first, older demand first (a model with no demand signal, wanted
// for replicas.min, counts as oldest), then key.
//
// A node is a candidate when it is Ready, not cordoned, matches the
// nodeSelector (every key present with an equal value) and nodeNames, holds
// no replica of the model and has at least Devices GPUs. Each device offers
// its free memory minus the node's ReservedBytes, never below zero; free
// memory is also bounded by TotalBytes minus what residents hold, because a
// model that is still downloading holds nothing on the GPU yet. Memory that
// this plan's unloads free and its loads take is tracked per device, so two
// loads in one plan never overcommit a device.
//
// A model fits on a node on one device, or split over k devices of that
// node: k = Devices when set, else the smallest k that fits. One device is
// the tightest that holds it (keeping large holes for large models); k
// devices are the k with the most memory. A replica on k devices needs
// BytesNeeded + (k-1)×EachBytes: its weights and KV cache divide among the
// devices in proportion to what each offers, and its compute buffers
// (EachBytes) are needed on every one — the rule the neuron reserves by
// (internal/vram), so a plan that fits here is one the neuron accepts.
// Load.DeviceBytes is what the plan expects the neuron to reserve on each
// device, and Resident.DeviceBytes what a neuron reports it holds.
//
// Nodes are ranked: fits now (most memory left on the node after the load,
// then name; a Busy node — one with a call unanswered — after the others
// that fit now), then fits after evicting (see below), then nodes in
// AvoidNodes in the same order. Ties go to the lower node name.
//
// # Eviction
//
// Replicas idle past keep-alive were already unloaded, so their memory is
// free before any eviction is considered. Beyond that a model may evict, on
// the node it is placed on, a replica that is Ready, has nothing in flight,
// is not of a pinned model, is not loaded by this plan, whose model keeps
// replicas.min without it, and that belongs to a model of
//
//   - strictly lower priority, or
//   - equal priority, when the model being placed is Waiting (requests are
//     held for it at the gateway: its demand signal is fresh and nothing
//     answered it since, the rule of the Waiting function, which the
//     manager applies) and had no replica when the pass began:
//     demand beats idleness, as on any server that loads models on demand.
//     Such a victim must have served since it was loaded, or have been
//     loaded at least FreshGrace ago: a replica just loaded for a waiting
//     request is not taken before it served it, so two models with waiting
//     requests on one GPU take turns, each serving, instead of evicting
//     each other unserved. A model that loses its replica in a pass does
//     not evict others in the same pass (no cascade).
//
// Replicas of higher priority are never evicted, and a replica serving
// requests is never evicted (that would fail them).
//
// Victims are taken lowest priority first, then by the fewest requests
// expected per byte freed, then least recently used. A replica's expected
// requests are its model's RequestRate, the rate the manager measures from
// what the neurons report served (RateEstimator); a model whose rate is
// unknown counts one request over the time the replica has gone unused.
// So of two models asked for equally often the larger goes first (its
// memory keeps more of the others warm), and a large model asked for 200
// times an hour is kept over a small one asked for twice, however recently
// the small one was used. A set of victims costs the sum of their rates
// (the cold starts per second it is expected to cause). Victims are added
// until the devices hold the new replica, then any victim the others do
// without is dropped, so nothing is evicted in vain. Among nodes that fit
// after evicting, the one whose victims have the lowest top priority wins,
// then the lowest total cost, the fewest victims, the most memory left.
//
// A victim whose model now has fewer replicas than its target is placed
// again elsewhere in the same plan, in its turn (after the model that
// evicted it, since it is of lower priority).
//
// # Defragmentation
//
// When a model that has requests waiting for its first replica, or is
// below replicas.min, or is pinned with no replica, cannot be placed even
// by evicting, because free memory is scattered over nodes, one hole is
// opened per pass by moving idle replicas off one node, make before break:
// a copy loads on another node where it fits now (Load.ForModel names the
// model the room is for), and once it is Ready the original is unloaded
// (ReasonMoved) and the model loads in the hole in the same plan. Replicas
// of any priority, pinned and replicas.min ones included, may move (they
// never stop serving); lower priority first, then moves already under way,
// then the smallest. Compute finds the move after a first plan and plans
// again with it as a hint; see defrag.go for the rules that bound it.
//
// # Request rate
//
// RateEstimator measures a Model's request rate from counts of requests
// seen over time, each weighed by e^(-age/RateWindow), over the time
// observed weighed the same way, so a Model first seen minutes ago is not
// diluted by a window of history it does not have. The manager keeps one
// per Model from when it first sees it and counts what each poll shows the
// neurons served since the last; the fleet simulator does the same.
//
// # Learned keep-alive
//
// LearnKeepAlive chooses a keep-alive from a Model's idle gaps (an
// IdleHistogram): the step of KeepAliveSteps with the lowest expected cost
// per gap, counting a gap longer than the keep-alive as one cold start and
// the replica's bytes held idle at a given worth of a cold start. The
// planner does not call it: the caller sets Model.KeepAlive. The manager
// does so for every Model without spec.keepAlive (at --cold-start-worth,
// 4 GiB·h by default; 15m until MinIdleObservations gaps are seen), and
// the fleet simulator (internal/fleetsim) the same way, against fixed
// keep-alives (docs/fleet.md). IdleTracker turns what the caller sees into
// gaps: the newest last use of a Model's replicas (the manager: at every
// poll of a neuron, so uses between passes are not merged) and its newest
// demand signal (a request that found no replica). A gap ended by demand
// is a cold start whatever the keep-alive, and the first use after it
// does not count again. The histograms live in memory: a restarted
// manager keeps the keep-alive its predecessor learned (the Model's
// status) until it has seen MinIdleObservations gaps of its own.
//
// # Cost
//
// Nodes, models and residents are indexed once; each wanted replica scans
// the nodes once for a fit. Only when no node fits without evicting does it
// search victims, node by node, skipping nodes whose cheapest conceivable
// eviction cannot beat the best found, and remembering each node's answer
// until a load or unload changes that node. A pass over 1,000 Models and
// 200 nodes of 8 GPUs takes a few milliseconds.
//
// # Unschedulable
//
// A model that cannot get a wanted replica is reported with the first
// filter that left no node, for example "no Ready node matches nodeSelector
// gpu=h100", "all 3 matching nodes are cordoned", "all 2 schedulable nodes
// already hold a replica (spread)", "needs 4 GPUs on one node; matching
// nodes have at most 2 GPUs", "needs 14.2 GiB on one GPU; largest free is
// 9.8 GiB on node-a", "needs 30.0 GiB across 2 GPUs; best is 24.0 GiB on
// node-b (2 GPUs)" or "needs 100.0 GiB on one node; best is 64.0 GiB on
// node-b (8 GPUs)". Memory figures are usable memory (after the reserve),
// counting what the model could evict, which is then named: "(including
// 2.2 GiB evictable)"; "needs 80.0 GiB on one node; no candidate node has
// free memory" when none has any. Sizes below 1 GiB are in MiB, and two
// different amounts are shown with as many decimals as it takes to tell
// them apart ("needs 128.004 MiB; best is 128.000 MiB"). A memory message
// then says what the best node's other replicas are waiting for: "waiting
// for ns/a to finish 2 requests, ns/b to serve the request it was loaded
// for, ns/c to idle out (in 14m)"; or, for a model with no request
// waiting, "the next request for it may evict 1 idle replica of equal
// priority"; or who holds the rest for good: "held by ns/p (pinned), ns/m
// (replicas.min)". A model with BytesNeeded 0 is not placed: "memory need
// unknown (no VRAM estimate yet)". A model this plan evicted and could not
// place again says so first: "evicted from n1 for ns/high; …".
package placement
