package placement

import (
	"math"
	"time"
)

// MinKeepAlive is the shortest keep-alive the planner applies. A shorter
// Model.KeepAlive (0 included) is raised to it: demand signals are written
// at most every few seconds and a pass runs every few seconds, so a shorter
// window would let a model idle out between a cold request and its load,
// or between two requests of one conversation.
const MinKeepAlive = 30 * time.Second

// ScaleOutFraction is the share of a replica's parallel sequences a Model
// aims to keep in use (ScaleOutAt): it wants ceil(in flight ÷
// ceil(ScaleOutFraction × parallel)) replicas, so with 4 sequences a
// second replica once 4 requests are in flight, every sequence busy, and
// not only once a fifth queues. A new replica takes a poll and a load to
// become routable, and meanwhile requests beyond the parallel sequences
// queue: in the fleet simulator, this kept 99 % of requests within their
// time-to-first-token goal at every fleet size tried, where waiting for a
// request to queue dipped to 99.00 % at some (docs/fleet.md).
const ScaleOutFraction = 0.75

// ScaleOutAt is a Model's TargetInFlight for an engine with parallel
// sequences per replica: ScaleOutFraction of them, at least one.
func ScaleOutAt(parallel int) int {
	return max(1, int(math.Ceil(ScaleOutFraction*float64(parallel))))
}

// State is the state of a resident model on a node, as the neuron reports it.
type State string

// The states of a resident.
const (
	// StateLoading: the load is in progress (download, verify, upload).
	StateLoading State = "Loading"
	// StateReady: the model serves requests.
	StateReady State = "Ready"
	// StateUnloading: the neuron is releasing the model.
	StateUnloading State = "Unloading"
	// StateFailed: the load failed or the model's worker died.
	StateFailed State = "Failed"
)

// UnloadReason says why the plan unloads a replica; it is the label of the
// manager's evictions-by-reason metric.
type UnloadReason string

// The reasons for an unload.
const (
	// ReasonIdle: the replica was idle past its model's keep-alive and is
	// not needed for replicas.min or pinning.
	ReasonIdle UnloadReason = "Idle"
	// ReasonSurplus: the model has more replicas than replicas.max.
	ReasonSurplus UnloadReason = "Surplus"
	// ReasonEvicted: another model needs the memory (see Unload.ForModel):
	// one of higher priority, or one of equal priority with requests
	// waiting for its first replica.
	ReasonEvicted UnloadReason = "Evicted"
	// ReasonDeleted: the Model is being deleted.
	ReasonDeleted UnloadReason = "Deleted"
	// ReasonFailed: the replica failed; clearing it lets a retry happen.
	ReasonFailed UnloadReason = "Failed"
	// ReasonOrphaned: the node holds a model no Model object describes.
	ReasonOrphaned UnloadReason = "Orphaned"
	// ReasonMisplaced: the node no longer matches the model's nodeSelector or
	// nodeNames, and enough Ready replicas run on matching nodes.
	ReasonMisplaced UnloadReason = "Misplaced"
	// ReasonOutdated: the replica was loaded with an older source or engine
	// settings (Resident.Outdated); it is replaced, one at a time.
	ReasonOutdated UnloadReason = "Outdated"
	// ReasonMoved: a copy of the replica is Ready on another node, and this
	// one leaves to open room for a model that fits nowhere else although
	// the fleet has the memory, scattered (see Unload.ForModel).
	ReasonMoved UnloadReason = "Moved"
)

// Reasons lists every UnloadReason, for metrics that must show each one.
var Reasons = []UnloadReason{ReasonIdle, ReasonSurplus, ReasonEvicted, ReasonDeleted, ReasonFailed,
	ReasonOrphaned, ReasonMisplaced, ReasonOutdated, ReasonMoved}

// Input is one snapshot of the fleet. The planner reads it and never
// modifies it.
type Input struct {
	// Nodes are all NeuronNodes, Ready or not. Names must be unique; a
	// repeated name is ignored after its first occurrence.
	Nodes []Node
	// Models are all Models, including those being deleted. Keys must be
	// unique; a repeated key is ignored after its first occurrence. A resident
	// whose model is not listed here is unloaded (ReasonOrphaned), so this
	// must be the complete set.
	Models []Model
	// Now is the time the snapshot describes; every age is measured from it.
	Now time.Time
}

// Node is one GPU host (a NeuronNode).
type Node struct {
	// Name is the NeuronNode's name.
	Name string
	// Labels are the NeuronNode's labels, matched by Model.NodeSelector.
	Labels map[string]string
	// Ready is the NeuronNode's Ready condition (fresh heartbeat, API
	// answers). The planner never sends anything to a node that is not
	// Ready, and its residents do not count as replicas.
	Ready bool
	// Unschedulable is the node's cordon: nothing new is placed on it; what
	// it holds stays until it idles out, is surplus or is deleted.
	Unschedulable bool
	// Busy is set while a call the manager sent the node is unanswered.
	// Among the nodes that fit a replica now, a busy one goes last: a
	// neuron that hangs looks empty, and every pass planning meanwhile
	// would otherwise send it a load and wait out its timeouts. It is no
	// reason to evict anything elsewhere.
	Busy bool
	// ReservedBytes is kept free on every device of the node.
	ReservedBytes int64
	// Devices are the node's GPUs (or its one CPU pseudo-device).
	Devices []Device
	// Residents are the models the neuron holds, in any state.
	Residents []Resident
}

// Device is one GPU of a node.
type Device struct {
	// Index is the device's index on the node (CUDA ordinal).
	Index int
	// TotalBytes is the device's memory. When set, the planner also bounds
	// free memory by TotalBytes minus what the node's residents hold on the
	// device, so a model that is still downloading (and holds nothing on the
	// GPU yet) is not counted as free twice. 0 disables that bound.
	TotalBytes int64
	// FreeBytes is the memory the neuron reports free: it already excludes
	// what resident models and other processes hold.
	FreeBytes int64
}

// Resident is a model a node holds.
type Resident struct {
	// Model is the Model key, "<namespace>/<name>".
	Model string
	// Devices are the device indices the model uses.
	Devices []int
	// DeviceBytes, when it has one entry per Devices entry, is what the model
	// holds on each device. Empty means Bytes is split evenly over Devices.
	DeviceBytes []int64
	// Bytes is the memory the model holds (or will hold, while loading)
	// across all its devices.
	Bytes int64
	// State is the resident's state.
	State State
	// InFlight is the number of requests being served or queued. A replica
	// with requests in flight is never evicted or idled out.
	InFlight int
	// LastUsed is when the replica last served a request; zero if never.
	LastUsed time.Time
	// LoadedAt is when the replica became Ready; zero while loading. A
	// replica's keep-alive runs from the later of LastUsed and LoadedAt, so a
	// fresh replica gets a full keep-alive even if nobody used it yet.
	LoadedAt time.Time
	// Outdated is set when the replica was loaded with a source or engine
	// settings that no longer match its Model's spec.
	Outdated bool
}

// Model is one Model, reduced to what placement needs.
type Model struct {
	// Key is the Model key, "<namespace>/<name>".
	Key string
	// Priority orders models when memory is short: a model may evict idle
	// replicas of strictly lower priority, and, while requests wait for its
	// first replica (Waiting), idle replicas of equal priority; never of
	// higher priority.
	Priority int32
	// Pinned keeps at least one replica loaded at all times, and no replica
	// of a pinned model is ever evicted.
	Pinned bool
	// MinReplicas are kept loaded even without demand; never unloaded for
	// idleness and never evicted below.
	MinReplicas int
	// MaxReplicas is the most replicas placed; values below 1 or below
	// MinReplicas are raised to the larger of the two.
	MaxReplicas int
	// KeepAlive is how long a model (and each replica) stays loaded after
	// its last use or demand signal. Raised to MinKeepAlive.
	KeepAlive time.Duration
	// LastDemand is the newest of the gateway's demand signal and the
	// replicas' last use; zero if never.
	LastDemand time.Time
	// Waiting is set while requests for the model are held at the gateway
	// (its demand signal is fresh). The first replica of a waiting model may
	// evict idle replicas of equal priority, not only of lower priority.
	Waiting bool
	// RequestRate is the requests per second the model has received
	// recently (a RateEstimator's Rate); 0 when unknown. It orders
	// victims: of equal priority, the replicas expected to serve the
	// fewest requests per byte are evicted first.
	RequestRate float64
	// TargetInFlight is the in-flight requests one replica should carry
	// before another is added (the manager sets ScaleOutAt of the engine's
	// parallel sequences). While
	// the model is in demand it wants ceil(sum of InFlight over its replicas
	// / TargetInFlight) replicas, up to MaxReplicas. 0 turns scaling by load
	// off.
	TargetInFlight int
	// BytesNeeded is the memory one replica needs on one device (weights,
	// KV cache, compute buffers). A model with 0 is not placed (its memory
	// need is unknown).
	BytesNeeded int64
	// EachBytes is the part of BytesNeeded needed on every device a
	// replica spans (compute and output buffers); the rest divides among
	// them. A replica on k devices needs BytesNeeded + (k-1)×EachBytes,
	// divided by the neuron's rule (vram.Shares).
	EachBytes int64
	// Devices is the exact number of GPUs a replica spans; 0 means as few
	// GPUs of one node as it fits on.
	Devices int
	// NodeSelector must match a node's labels (every key present with an
	// equal value) for a replica to be placed there.
	NodeSelector map[string]string
	// NodeNames, when not empty, limits placement to these nodes.
	NodeNames []string
	// AvoidNodes are nodes where a load of this model failed recently (the
	// manager's back-off memory). They are used only when no other node
	// fits, even after evictions.
	AvoidNodes []string
	// Deleting is set when the Model is being deleted: every replica on a
	// Ready node is unloaded and nothing is placed.
	Deleting bool
}

// Plan is what the manager should do. Every list is sorted by model key,
// then node name. The manager must finish a node's Unloads before it starts
// Loads on that node: a Load may rely on memory an Unload frees.
type Plan struct {
	// Load lists replicas to load.
	Load []Load
	// Unload lists replicas to unload. Nothing is ever sent to a node that
	// is not Ready.
	Unload []Unload
	// Keep lists replicas on Ready nodes that stay (Loading or Ready).
	Keep []Keep
	// Unschedulable maps the key of each model that wants a replica it could
	// not get to a human reason (the manager's Scheduled=False message and
	// its unschedulable-models metric).
	Unschedulable map[string]string
	// Desired maps every model key to the replicas the manager wants loaded
	// now: 0 for a model being deleted, else the larger of its target and
	// the replicas the plan keeps or loads (a warm replica kept within its
	// keep-alive is wanted too).
	Desired map[string]int
}

// Load places a replica.
type Load struct {
	// Model is the Model key.
	Model string
	// Node is the node to load on.
	Node string
	// Devices are the device indices to use, ascending.
	Devices []int
	// DeviceBytes is the share of Bytes planned on each of Devices,
	// proportional to the memory each had available (usable as the tensor
	// split).
	DeviceBytes []int64
	// Bytes is the model's memory need (Model.BytesNeeded).
	Bytes int64
	// ForModel is set on the copy of a replica that moves to make room
	// for another model: that model's key.
	ForModel string
}

// Unload removes a replica.
type Unload struct {
	// Model is the Model key.
	Model string
	// Node is the node to unload from.
	Node string
	// Reason says why.
	Reason UnloadReason
	// ForModel is the key of the model whose Load needed the room, for
	// ReasonEvicted and ReasonMoved; empty otherwise.
	ForModel string
}

// Keep is a replica that stays where it is.
type Keep struct {
	// Model is the Model key.
	Model string
	// Node is the node holding it.
	Node string
}
