package v1alpha1

import (
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Annotations and finalizers shared by the manager, the gateway and the neuron.
const (
	// DemandAnnotation is the demand signal for a Model. The gateway writes it
	// (RFC 3339 timestamp, merge patch, throttled to one write per Model per
	// few seconds) when a request arrives for a Model that has no ready
	// replica, and refreshes it while traffic continues. The manager treats a
	// Model whose demand is newer than its keep-alive as wanted: it places at
	// least one replica, and it does not unload an idle replica while demand
	// is fresh. An annotation (rather than a Lease per Model) keeps the signal
	// visible with `kubectl get model -o yaml`, needs no extra object per
	// Model, and its write wakes the Model's reconciler directly through the
	// watch the manager already has.
	DemandAnnotation = "cortex.helexa.ai/last-demand"

	// ModelFinalizer makes the manager unload a deleted Model everywhere
	// before the object goes away.
	ModelFinalizer = "cortex.helexa.ai/unload"
)

// ModelPhase summarises where a Model is in its life.
// +kubebuilder:validation:Enum=Pending;Loading;Ready;Degraded;Idle;Unschedulable;Failed;Terminating
type ModelPhase string

const (
	// ModelPhasePending: accepted, no placement decided yet.
	ModelPhasePending ModelPhase = "Pending"
	// ModelPhaseLoading: at least one replica is loading and none is ready.
	ModelPhaseLoading ModelPhase = "Loading"
	// ModelPhaseReady: as many replicas are ready as are wanted.
	ModelPhaseReady ModelPhase = "Ready"
	// ModelPhaseDegraded: some but fewer replicas ready than wanted.
	ModelPhaseDegraded ModelPhase = "Degraded"
	// ModelPhaseIdle: no replica is wanted (no demand, replicas.min is 0).
	ModelPhaseIdle ModelPhase = "Idle"
	// ModelPhaseUnschedulable: a replica is wanted and no node can hold it.
	ModelPhaseUnschedulable ModelPhase = "Unschedulable"
	// ModelPhaseFailed: every load attempt failed (bad source, corrupt file).
	ModelPhaseFailed ModelPhase = "Failed"
	// ModelPhaseTerminating: deleted, unloading everywhere.
	ModelPhaseTerminating ModelPhase = "Terminating"
)

// ReplicaState is the state of one replica of a Model on one NeuronNode.
// +kubebuilder:validation:Enum=Loading;Ready;Unloading;Failed
type ReplicaState string

const (
	ReplicaLoading   ReplicaState = "Loading"
	ReplicaReady     ReplicaState = "Ready"
	ReplicaUnloading ReplicaState = "Unloading"
	ReplicaFailed    ReplicaState = "Failed"
)

// KeepAliveSource says where the keep-alive the manager applies to a Model
// comes from.
// +kubebuilder:validation:Enum=Spec;Learned;Default
type KeepAliveSource string

const (
	// KeepAliveFromSpec: spec.keepAlive is set.
	KeepAliveFromSpec KeepAliveSource = "Spec"
	// KeepAliveLearned: spec.keepAlive is unset and the manager learned one
	// from the Model's idle gaps.
	KeepAliveLearned KeepAliveSource = "Learned"
	// KeepAliveDefault: spec.keepAlive is unset and there is too little
	// history to learn from (or learning is off): 15m.
	KeepAliveDefault KeepAliveSource = "Default"
)

// FlashAttention selects llama.cpp's flash-attention mode.
// +kubebuilder:validation:Enum=auto;enabled;disabled
type FlashAttention string

const (
	FlashAttentionAuto     FlashAttention = "auto"
	FlashAttentionEnabled  FlashAttention = "enabled"
	FlashAttentionDisabled FlashAttention = "disabled"
)

// KVCacheType is the element type of the KV cache.
// +kubebuilder:validation:Enum=f16;q8_0;q4_0
type KVCacheType string

// Condition types and reasons on a Model.
const (
	// ModelConditionReady is True when every wanted replica is ready.
	ModelConditionReady = "Ready"
	// ModelConditionScheduled is False when a wanted replica cannot be placed.
	ModelConditionScheduled = "Scheduled"

	ReasonReplicasReady   = "ReplicasReady"
	ReasonReplicasLoading = "ReplicasLoading"
	ReasonNoDemand        = "NoDemand"
	ReasonPartiallyReady  = "PartiallyReady"
	ReasonUnschedulable   = "Unschedulable"
	ReasonPlaced          = "Placed"
	ReasonLoadFailed      = "LoadFailed"
	ReasonPending         = "Pending"
	// ReasonEvicted: the Model's last replica was unloaded to make room for
	// another Model; the message names it. The next request loads it again.
	ReasonEvicted = "Evicted"
)

// ModelSource says where the GGUF file comes from.
// +kubebuilder:validation:XValidation:rule="self.uri.startsWith('hf://') || self.uri.startsWith('https://') || self.uri.startsWith('file:///')",message="source.uri must start with hf://, https:// or file:///"
// +kubebuilder:validation:XValidation:rule="!self.uri.startsWith('hf://') || self.uri.matches('^hf://[^/]+/[^/@]+(@[^/]+)?/.+[.]gguf$')",message="an hf:// source must be hf://<org>/<repo>/<path>.gguf"
type ModelSource struct {
	// uri locates the GGUF file: `hf://<org>/<repo>/<path>.gguf` (Hugging Face,
	// optionally `hf://<org>/<repo>@<revision>/<path>.gguf`), `https://…` or
	// `file:///<absolute path on the neuron host>`.
	// +required
	// +kubebuilder:validation:MinLength=8
	// +kubebuilder:validation:MaxLength=2048
	URI string `json:"uri"`

	// sha256 is the expected SHA-256 of the file, lower-case hex. When set,
	// the neuron verifies the download and refuses a mismatching file.
	// +optional
	// +kubebuilder:validation:Pattern=`^[a-f0-9]{64}$`
	SHA256 string `json:"sha256,omitempty"`

	// projector is the vision projector of a vision model: the `mmproj`
	// GGUF published beside it, loaded with the model so that requests may
	// carry images. It follows the same source rules and cache as uri.
	// Without it, image parts are refused with a 400.
	// +optional
	Projector *ProjectorSource `json:"projector,omitempty"`
}

// ProjectorSource says where a vision projector (mmproj GGUF) comes from.
// +kubebuilder:validation:XValidation:rule="self.uri.startsWith('hf://') || self.uri.startsWith('https://') || self.uri.startsWith('file:///')",message="projector.uri must start with hf://, https:// or file:///"
// +kubebuilder:validation:XValidation:rule="!self.uri.startsWith('hf://') || self.uri.matches('^hf://[^/]+/[^/@]+(@[^/]+)?/.+[.]gguf$')",message="an hf:// projector must be hf://<org>/<repo>/<path>.gguf"
type ProjectorSource struct {
	// uri locates the projector GGUF, as source.uri does.
	// +required
	// +kubebuilder:validation:MinLength=8
	// +kubebuilder:validation:MaxLength=2048
	URI string `json:"uri"`

	// sha256 is the expected SHA-256 of the file, lower-case hex.
	// +optional
	// +kubebuilder:validation:Pattern=`^[a-f0-9]{64}$`
	SHA256 string `json:"sha256,omitempty"`
}

// ReplicaRange bounds how many copies of a Model are kept loaded.
// +kubebuilder:validation:XValidation:rule="self.min <= self.max",message="replicas.min must be less than or equal to replicas.max"
type ReplicaRange struct {
	// min is the number of replicas kept loaded even without demand. 0 lets
	// the Model scale to zero after its keep-alive.
	// +optional
	// +kubebuilder:default=0
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=64
	Min int32 `json:"min"`

	// max is the most replicas the manager places while the Model is in
	// demand.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=64
	Max int32 `json:"max"`
}

// Placement restricts where replicas may run.
type Placement struct {
	// nodeSelector must match the labels of a NeuronNode for a replica to be
	// placed there.
	// +optional
	// +kubebuilder:validation:MaxProperties=16
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// nodeNames, when set, limits placement to these NeuronNodes.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	NodeNames []string `json:"nodeNames,omitempty"`

	// devices is the number of GPUs one replica spans (layers are split
	// across them). Unset means as few GPUs of one node as the model fits on.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=16
	Devices *int32 `json:"devices,omitempty"`
}

// EngineSpec tunes llama.cpp for this Model.
type EngineSpec struct {
	// contextLength is the context window per sequence in tokens. Unset uses
	// the model's training context, capped at 8192.
	// +optional
	// +kubebuilder:validation:Minimum=128
	// +kubebuilder:validation:Maximum=1048576
	ContextLength *int32 `json:"contextLength,omitempty"`

	// parallel is the number of requests decoded together (sequences sharing
	// one llama.cpp context). The KV cache is sized for parallel ×
	// contextLength tokens.
	// +optional
	// +kubebuilder:default=4
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=256
	Parallel int32 `json:"parallel,omitempty"`

	// gpuLayers is the number of layers offloaded to GPUs. Unset offloads
	// every layer; 0 runs on the CPU.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	GPULayers *int32 `json:"gpuLayers,omitempty"`

	// flashAttention selects llama.cpp's flash attention.
	// +optional
	// +kubebuilder:default=auto
	FlashAttention FlashAttention `json:"flashAttention,omitempty"`

	// kvCacheType is the KV cache element type; quantised caches halve or
	// quarter its memory.
	// +optional
	// +kubebuilder:default=f16
	KVCacheType KVCacheType `json:"kvCacheType,omitempty"`

	// chatTemplate overrides the GGUF's tokenizer.chat_template (Jinja). The
	// special value `chatml` selects the built-in ChatML template.
	// +optional
	// +kubebuilder:validation:MaxLength=65536
	ChatTemplate string `json:"chatTemplate,omitempty"`
}

// ModelResources overrides the memory estimate.
type ModelResources struct {
	// vram is the device memory one replica needs in total (weights, KV cache
	// and compute buffers). Unset means estimated from the GGUF header.
	// +optional
	VRAM *resource.Quantity `json:"vram,omitempty"`
}

// ModelSpec is what the user wants served.
type ModelSpec struct {
	// source says where the GGUF file comes from.
	// +required
	Source ModelSource `json:"source"`

	// servedNames are the names clients put in the `model` field. The first
	// is the canonical name; the rest are aliases. Unset serves the Model
	// under its metadata.name.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$`
	ServedNames []string `json:"servedNames,omitempty"`

	// replicas bounds how many copies are loaded.
	// +optional
	// +kubebuilder:default={min: 0, max: 1}
	Replicas ReplicaRange `json:"replicas,omitempty"`

	// priority orders Models when memory is short: a higher-priority Model may
	// evict lower-priority idle ones, never the reverse; a Model with a
	// request waiting and no replica may also evict idle ones of equal
	// priority.
	// +optional
	// +kubebuilder:default=0
	// +kubebuilder:validation:Minimum=-1000
	// +kubebuilder:validation:Maximum=1000
	Priority int32 `json:"priority,omitempty"`

	// pinned keeps at least one replica loaded at all times: no replica of a
	// pinned Model is ever evicted, and its last replica never idles out
	// (extra replicas added for load still do).
	// +optional
	Pinned bool `json:"pinned,omitempty"`

	// keepAlive is how long a replica stays loaded after its last request
	// (or demand signal) before it is unloaded, unless pinned or needed for
	// replicas.min. Unset, the manager learns one from the Model's own idle
	// gaps and size (15m until it has seen enough of them); status.keepAlive
	// shows the one in effect.
	// +optional
	KeepAlive *metav1.Duration `json:"keepAlive,omitempty"`

	// placement restricts where replicas may run.
	// +optional
	Placement Placement `json:"placement,omitempty"`

	// engine tunes llama.cpp.
	// +optional
	Engine EngineSpec `json:"engine,omitempty"`

	// resources overrides the memory estimate.
	// +optional
	Resources ModelResources `json:"resources,omitempty"`
}

// Replica is one copy of a Model on one NeuronNode, as last observed.
type Replica struct {
	// node is the NeuronNode holding the replica.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Node string `json:"node"`

	// endpoint is the neuron's base URL, copied from the NeuronNode.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Endpoint string `json:"endpoint,omitempty"`

	// state is the replica's state as the neuron reports it.
	// +required
	State ReplicaState `json:"state"`

	// devices are the GPU indices on the node the replica uses.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Devices []int32 `json:"devices,omitempty"`

	// vramBytes is the device memory the replica holds.
	// +optional
	VRAMBytes int64 `json:"vramBytes,omitempty"`

	// progress is a loading replica's download or load progress, 0–100.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Progress int32 `json:"progress,omitempty"`

	// loadedAt is when the replica became ready.
	// +optional
	LoadedAt *metav1.Time `json:"loadedAt,omitempty"`

	// lastUsedTime is when the replica last served a request.
	// +optional
	LastUsedTime *metav1.Time `json:"lastUsedTime,omitempty"`

	// inFlight is the number of requests the replica was serving.
	// +optional
	InFlight int32 `json:"inFlight,omitempty"`

	// lastError is the most recent load error on this node.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	LastError string `json:"lastError,omitempty"`
}

// ModelStatus is what the manager observed on its last pass.
type ModelStatus struct {
	// observedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// phase summarises the Model's state.
	// +optional
	Phase ModelPhase `json:"phase,omitempty"`

	// replicas lists every replica the neurons report, by node.
	// +optional
	// +listType=map
	// +listMapKey=node
	// +kubebuilder:validation:MaxItems=64
	Replicas []Replica `json:"replicas,omitempty"`

	// desiredReplicas is how many replicas the manager wants loaded now.
	// +optional
	DesiredReplicas int32 `json:"desiredReplicas,omitempty"`

	// readyReplicas counts replicas in state Ready on Ready nodes.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`

	// ready is readyReplicas/desiredReplicas, for `kubectl get`.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	Ready string `json:"ready,omitempty"`

	// nodes lists the nodes holding replicas, for `kubectl get`.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Nodes string `json:"nodes,omitempty"`

	// vramBytes is the memory one replica needs (spec override or estimate).
	// +optional
	VRAMBytes int64 `json:"vramBytes,omitempty"`

	// vram is vramBytes in human units, for `kubectl get`.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	VRAM string `json:"vram,omitempty"`

	// lastDemandTime is the newest of the demand annotation and the replicas'
	// last use: what keep-alive and least-recently-used eviction read.
	// +optional
	LastDemandTime *metav1.Time `json:"lastDemandTime,omitempty"`

	// keepAlive is the keep-alive the manager applies now: spec.keepAlive
	// when set (raised to the 30s minimum), else one learned from the
	// Model's idle gaps, else 15m.
	// +optional
	KeepAlive *metav1.Duration `json:"keepAlive,omitempty"`

	// keepAliveSource says where keepAlive comes from: Spec, Learned or
	// Default.
	// +optional
	KeepAliveSource KeepAliveSource `json:"keepAliveSource,omitempty"`

	// conditions: Ready and Scheduled.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Model is a GGUF model served by the fleet under one or more names.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=mdl;mdls,categories=cortex
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.ready`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Nodes",type=string,JSONPath=`.status.nodes`
// +kubebuilder:printcolumn:name="VRAM",type=string,JSONPath=`.status.vram`
// +kubebuilder:printcolumn:name="Priority",type=integer,JSONPath=`.spec.priority`,priority=1
// +kubebuilder:printcolumn:name="Pinned",type=boolean,JSONPath=`.spec.pinned`,priority=1
// +kubebuilder:printcolumn:name="Keep-Alive",type=string,JSONPath=`.status.keepAlive`,priority=1
// +kubebuilder:printcolumn:name="Source",type=string,JSONPath=`.spec.source.uri`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Model struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what the user wants served.
	// +required
	Spec ModelSpec `json:"spec"`

	// status is what the manager observed.
	// +optional
	Status ModelStatus `json:"status,omitempty"`
}

// ModelList is a list of Models.
//
// +kubebuilder:object:root=true
type ModelList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Model `json:"items"`
}

// Key is the fleet-wide identity of a Model, "<namespace>/<name>": the name
// neurons load it under and the key the manager and gateway index it by.
func (m *Model) Key() string { return m.Namespace + "/" + m.Name }

// ParseModelKey splits a Model key made by Key into its namespace and name;
// ok is false for anything Key cannot have made (no "/", more than one, or
// an empty part).
func ParseModelKey(key string) (namespace, name string, ok bool) {
	namespace, name, ok = strings.Cut(key, "/")
	return namespace, name, ok && namespace != "" && name != "" && !strings.Contains(name, "/")
}

// Names returns the names clients may use for the Model: servedNames, or
// metadata.name when none are given.
func (m *Model) Names() []string {
	if len(m.Spec.ServedNames) == 0 {
		return []string{m.Name}
	}
	return m.Spec.ServedNames
}
