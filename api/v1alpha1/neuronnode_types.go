package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types and reasons on a NeuronNode.
const (
	// NeuronNodeConditionReady is True while the neuron's heartbeat is fresh
	// and its API answers, or, with the heartbeat late, while the neuron
	// keeps answering the manager's polls (HeartbeatLate: the neuron cannot
	// reach the API server, or could not while it was down). The manager
	// owns this condition.
	NeuronNodeConditionReady = "Ready"

	ReasonHeartbeatFresh = "HeartbeatFresh"
	ReasonHeartbeatLate  = "HeartbeatLate"
	ReasonHeartbeatStale = "HeartbeatStale"
	ReasonUnreachable    = "Unreachable"
	ReasonNoHeartbeat    = "NoHeartbeat"
)

// Labels the neuron sets on its own NeuronNode, usable in nodeSelector.
const (
	// LabelHostname is the Kubernetes node (or host) the neuron runs on.
	LabelHostname = "cortex.helexa.ai/hostname"
	// LabelGPUProduct is the product name of the host's first GPU ("cpu" on
	// a host without one), with spaces replaced by dashes.
	LabelGPUProduct = "cortex.helexa.ai/gpu-product"
	// LabelGPUCount is the number of GPUs on the host.
	LabelGPUCount = "cortex.helexa.ai/gpu-count"
)

// DeviceKind tells a GPU from the CPU pseudo-device a GPU-less host reports.
// +kubebuilder:validation:Enum=cuda;cpu
type DeviceKind string

const (
	DeviceCUDA DeviceKind = "cuda"
	DeviceCPU  DeviceKind = "cpu"
)

// NeuronNodeSpec holds what an operator sets on a GPU host.
type NeuronNodeSpec struct {
	// unschedulable cordons the node: nothing new is placed on it; what is
	// loaded stays until it idles out or is evicted.
	// +optional
	Unschedulable bool `json:"unschedulable,omitempty"`

	// reservedVRAM is kept free on every device of the node, for other
	// workloads or driver overhead.
	// +optional
	ReservedVRAM *resource.Quantity `json:"reservedVRAM,omitempty"`
}

// GPU is one device on the host.
type GPU struct {
	// index is the device's index on the host (CUDA ordinal).
	// +required
	// +kubebuilder:validation:Minimum=0
	Index int32 `json:"index"`

	// kind is cuda for a GPU, cpu for the host-memory device of a host
	// without GPUs.
	// +optional
	Kind DeviceKind `json:"kind,omitempty"`

	// uuid is the device's UUID as NVML reports it.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	UUID string `json:"uuid,omitempty"`

	// name is the product name, e.g. "NVIDIA H100 80GB HBM3".
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Name string `json:"name,omitempty"`

	// memoryTotalBytes is the memory the device offers to cortex (capped by
	// the neuron's flags on a CPU host).
	// +optional
	MemoryTotalBytes int64 `json:"memoryTotalBytes,omitempty"`

	// memoryFreeBytes is the memory not yet held by cortex models or other
	// processes.
	// +optional
	MemoryFreeBytes int64 `json:"memoryFreeBytes,omitempty"`

	// computeCapability is the CUDA compute capability, e.g. "9.0".
	// +optional
	// +kubebuilder:validation:MaxLength=16
	ComputeCapability string `json:"computeCapability,omitempty"`

	// utilizationPercent is the device's recent compute utilisation.
	// +optional
	UtilizationPercent int32 `json:"utilizationPercent,omitempty"`
}

// ResidentModel is a model the neuron holds.
type ResidentModel struct {
	// name is the Model key, "<namespace>/<name>".
	// +required
	// +kubebuilder:validation:MaxLength=317
	Name string `json:"name"`

	// state is the model's state on this neuron.
	// +required
	State ReplicaState `json:"state"`

	// devices are the GPU indices the model uses.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Devices []int32 `json:"devices,omitempty"`

	// vramBytes is the device memory the model holds.
	// +optional
	VRAMBytes int64 `json:"vramBytes,omitempty"`

	// inFlight is the number of requests being served or queued.
	// +optional
	InFlight int32 `json:"inFlight,omitempty"`

	// lastUsedTime is when the model last served a request.
	// +optional
	LastUsedTime *metav1.Time `json:"lastUsedTime,omitempty"`
}

// EngineInfo describes the neuron's inference engine.
type EngineInfo struct {
	// version is the inference engine's version: the llama.cpp revision and
	// the module it comes from.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Version string `json:"version,omitempty"`

	// backends are the ggml backends available, e.g. ["cpu", "cuda"].
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=64
	Backends []string `json:"backends,omitempty"`
}

// NeuronNodeStatus is written by the neuron on the host (inventory,
// heartbeat, models) and by the manager (conditions).
type NeuronNodeStatus struct {
	// observedGeneration is the spec generation the manager last acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// endpoint is the neuron's base URL, e.g. http://10.0.3.7:13131.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Endpoint string `json:"endpoint,omitempty"`

	// nodeName is the Kubernetes Node the neuron pod runs on.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	NodeName string `json:"nodeName,omitempty"`

	// gpus is the device inventory.
	// +optional
	// +listType=map
	// +listMapKey=index
	// +kubebuilder:validation:MaxItems=16
	GPUs []GPU `json:"gpus,omitempty"`

	// models are the models the neuron holds.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=128
	Models []ResidentModel `json:"models,omitempty"`

	// lastHeartbeatTime is when the neuron last wrote this status.
	// +optional
	LastHeartbeatTime *metav1.Time `json:"lastHeartbeatTime,omitempty"`

	// engine describes the inference engine.
	// +optional
	Engine EngineInfo `json:"engine,omitempty"`

	// gpuCount is len(gpus) counting only GPUs, for `kubectl get`.
	// +optional
	GPUCount int32 `json:"gpuCount,omitempty"`

	// modelCount is len(models), for `kubectl get`.
	// +optional
	ModelCount int32 `json:"modelCount,omitempty"`

	// vram is free/total device memory in human units, for `kubectl get`.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	VRAM string `json:"vram,omitempty"`

	// ready mirrors the Ready condition, for `kubectl get`.
	// +optional
	// +kubebuilder:validation:MaxLength=16
	Ready string `json:"ready,omitempty"`

	// conditions: Ready (owned by the manager).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// NeuronNode is one GPU host running a neuron.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=nn;neuron;neurons,categories=cortex
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.ready`
// +kubebuilder:printcolumn:name="GPUs",type=integer,JSONPath=`.status.gpuCount`
// +kubebuilder:printcolumn:name="VRAM Free/Total",type=string,JSONPath=`.status.vram`
// +kubebuilder:printcolumn:name="Models",type=integer,JSONPath=`.status.modelCount`
// +kubebuilder:printcolumn:name="Cordoned",type=boolean,JSONPath=`.spec.unschedulable`,priority=1
// +kubebuilder:printcolumn:name="Endpoint",type=string,JSONPath=`.status.endpoint`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type NeuronNode struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec holds what an operator sets.
	// +optional
	Spec NeuronNodeSpec `json:"spec,omitempty"`

	// status is written by the neuron and the manager.
	// +optional
	Status NeuronNodeStatus `json:"status,omitempty"`
}

// NeuronNodeList is a list of NeuronNodes.
//
// +kubebuilder:object:root=true
type NeuronNodeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NeuronNode `json:"items"`
}
