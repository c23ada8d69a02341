// Package neuronapi is the contract between the neuron and its two callers,
// the manager (load, unload, observe) and the gateway (inference): the wire
// types of the neuron's control API and an HTTP client for them.
//
// Inference endpoints (/v1/chat/completions, /v1/completions,
// /v1/embeddings, /tokenize) speak the OpenAI dialect and are defined in
// internal/wire/openai; the `model` field there carries the Model key
// ("<namespace>/<name>").
package neuronapi

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/vram"
)

// DefaultPort is the neuron's default listen port.
const DefaultPort = 13131

// Paths of the neuron API.
const (
	PathHealthz   = "/healthz"
	PathReadyz    = "/readyz"
	PathVersion   = "/version"
	PathDiscovery = "/discovery"
	PathModels    = "/models"
	PathLoad      = "/models/load"
	PathUnload    = "/models/unload"
	PathEstimate  = "/models/estimate"
	PathTokenize  = "/tokenize"
	PathMetrics   = "/metrics"

	PathChatCompletions = "/v1/chat/completions"
	PathCompletions     = "/v1/completions"
	PathEmbeddings      = "/v1/embeddings"
)

// HeaderFirstToken, on a plain (not streamed) chat or completion request,
// asks the neuron to say when the answer's first token is generated: it
// sends a 103 Early Hints informational response carrying the same header
// before the final one. The gateway's balancer learns from it that the
// prompt's prefill is over on that replica (a streamed answer shows it by
// its first chunk). A request without it gets no informational response:
// some HTTP clients take any 1xx for the final answer.
const HeaderFirstToken = "Cortex-First-Token"

// HeaderPrefillRate is on every chat and completion answer (and its 103):
// the prompt tokens per second the neuron's engine measured for that Model
// on recent requests (an exponentially weighted mean of their uncached
// prompt tokens over their prompt processing time). The gateway's
// balancer uses it to weigh replicas on GPUs of different speed. Absent
// until the Model processed a prompt.
const HeaderPrefillRate = "Cortex-Prefill-Rate"

// Source locates a GGUF file.
type Source struct {
	// URI is hf://org/repo[@rev]/path.gguf, https://… or file:///abs/path.
	URI string `json:"uri"`
	// SHA256, when set, is verified after download.
	SHA256 string `json:"sha256,omitempty"`
	// ProjectorURI and ProjectorSHA256 locate a vision model's projector
	// (mmproj GGUF), by the same rules; empty for a text-only model. They
	// are flat so that sources compare with ==.
	ProjectorURI    string `json:"projectorUri,omitempty"`
	ProjectorSHA256 string `json:"projectorSha256,omitempty"`
}

// Projector returns the projector's own source; ok is false without one.
func (s Source) Projector() (Source, bool) {
	if s.ProjectorURI == "" {
		return Source{}, false
	}
	return Source{URI: s.ProjectorURI, SHA256: s.ProjectorSHA256}, true
}

// EngineConfig tunes llama.cpp for one model. Zero values mean "default".
type EngineConfig struct {
	ContextLength  int    `json:"contextLength,omitempty"`
	Parallel       int    `json:"parallel,omitempty"`
	GPULayers      *int   `json:"gpuLayers,omitempty"`
	FlashAttention string `json:"flashAttention,omitempty"` // auto|enabled|disabled
	KVCacheType    string `json:"kvCacheType,omitempty"`    // f16|q8_0|q4_0
	ChatTemplate   string `json:"chatTemplate,omitempty"`
}

// LoadRequest asks a neuron to load a model. Loading is idempotent: a
// request for a model that is loading or ready with the same source and
// engine settings returns its current state; with different settings it is
// refused with 409 (unload first).
type LoadRequest struct {
	// Name is the Model key, "<namespace>/<name>".
	Name   string       `json:"name"`
	Source Source       `json:"source"`
	Engine EngineConfig `json:"engine,omitempty"`
	// Devices are the device indices to place the model on, as chosen by
	// the manager; empty lets the neuron choose.
	Devices []int `json:"devices,omitempty"`
	// VRAMBytes, when set, overrides the neuron's own memory estimate.
	VRAMBytes int64 `json:"vramBytes,omitempty"`
}

// UnloadRequest asks a neuron to unload a model. Unloading a model the
// neuron does not hold succeeds (idempotent).
type UnloadRequest struct {
	Name string `json:"name"`
}

// EstimateRequest asks a neuron what a model would need, reading only the
// GGUF header (a ranged download for remote sources).
type EstimateRequest struct {
	Source Source       `json:"source"`
	Engine EngineConfig `json:"engine,omitempty"`
}

// Estimate is the memory a model needs with given engine settings.
type Estimate struct {
	// TotalBytes = WeightsBytes + KVCacheBytes + ComputeBytes +
	// ProjectorBytes.
	TotalBytes    int64  `json:"totalBytes"`
	WeightsBytes  int64  `json:"weightsBytes"`
	KVCacheBytes  int64  `json:"kvCacheBytes"`
	ComputeBytes  int64  `json:"computeBytes"`
	Layers        int    `json:"layers"`
	ContextLength int    `json:"contextLength"`
	Parallel      int    `json:"parallel"`
	Architecture  string `json:"architecture,omitempty"`
	// TrainedContextLength is the model's own maximum context.
	TrainedContextLength int `json:"trainedContextLength,omitempty"`
	// ProjectorBytes is a vision projector's weights and encoder buffer
	// (0 without one); ImageTokens is the context positions one image
	// takes, when the projector says.
	ProjectorBytes int64 `json:"projectorBytes,omitempty"`
	ImageTokens    int   `json:"imageTokens,omitempty"`
}

// Need is what a replica loaded with gpuLayers (nil: every layer) asks of
// the devices it spans: weights and KV cache divide among them — with only
// some layers offloaded, only their share — and the compute buffers are
// needed on each. The neuron reserves by it and the manager plans by it.
func (e Estimate) Need(gpuLayers *int) vram.Need {
	split := e.WeightsBytes + e.KVCacheBytes
	if gpuLayers != nil && *gpuLayers >= 0 && e.Layers > 0 && *gpuLayers < e.Layers {
		split = split * int64(*gpuLayers) / int64(e.Layers)
	}
	// llama.cpp puts the projector on one device of its choosing, so
	// every device must have room for it.
	return vram.Need{Split: split, Each: e.ComputeBytes + e.ProjectorBytes}
}

// ModelState is a model's state on one neuron.
type ModelState string

const (
	StateLoading   ModelState = "loading"
	StateReady     ModelState = "ready"
	StateUnloading ModelState = "unloading"
	StateFailed    ModelState = "failed"
)

// Progress reports a loading model's progress.
type Progress struct {
	// Phase is "downloading", "verifying" or "loading".
	Phase      string `json:"phase"`
	BytesDone  int64  `json:"bytesDone,omitempty"`
	BytesTotal int64  `json:"bytesTotal,omitempty"`
	// Percent is 0–100 over the whole load.
	Percent int `json:"percent"`
}

// ModelStatus is one model as the neuron holds it.
type ModelStatus struct {
	Name    string       `json:"name"`
	State   ModelState   `json:"state"`
	Source  Source       `json:"source"`
	Engine  EngineConfig `json:"engine"`
	Devices []int        `json:"devices,omitempty"`
	// DeviceBytes is what the model holds (or reserves) on each of
	// Devices, in the same order.
	DeviceBytes []int64    `json:"deviceBytes,omitempty"`
	VRAMBytes   int64      `json:"vramBytes"`
	Progress    *Progress  `json:"progress,omitempty"`
	Error       string     `json:"error,omitempty"`
	LoadedAt    *time.Time `json:"loadedAt,omitempty"`
	LastUsed    *time.Time `json:"lastUsed,omitempty"`
	InFlight    int        `json:"inFlight"`
	Queued      int        `json:"queued"`
	// Requests counts the inference requests the model accepted since it
	// was loaded (0 again after a reload); the manager measures each
	// Model's request rate from it, which orders evictions.
	Requests int64 `json:"requests,omitempty"`
	// ContextLength and Parallel are the effective engine settings.
	ContextLength int `json:"contextLength,omitempty"`
	Parallel      int `json:"parallel,omitempty"`
}

// Device is one device of the host. A host without GPUs reports one device
// of kind "cpu" whose memory is host RAM (capped by the neuron's flags).
type Device struct {
	Index             int    `json:"index"`
	Kind              string `json:"kind"` // cuda|cpu
	UUID              string `json:"uuid,omitempty"`
	Name              string `json:"name,omitempty"`
	MemoryTotal       int64  `json:"memoryTotal"`
	MemoryFree        int64  `json:"memoryFree"`
	ComputeCapability string `json:"computeCapability,omitempty"`
	Utilization       int    `json:"utilization,omitempty"`
}

// ModelsResponse is GET /models: the models and the devices' memory, read
// together so the caller sees one consistent picture.
type ModelsResponse struct {
	Models  []ModelStatus `json:"models"`
	Devices []Device      `json:"devices"`
}

// Discovery is GET /discovery.
type Discovery struct {
	Node     string   `json:"node"`
	Version  string   `json:"version"`
	Backends []string `json:"backends"`
	Devices  []Device `json:"devices"`
	// CPUBackend names the ggml CPU backend computing on the CPU: the
	// variant library loaded ("icelake", "haswell", …) or "built-in"
	// (baseline x86-64, compiled into the binary).
	CPUBackend string `json:"cpuBackend,omitempty"`
	// Libraries are the ggml backend libraries the engine loaded.
	Libraries []string `json:"libraries,omitempty"`
	// NoGPU says why no GPU serves, when none does: NVML missing or
	// failing (no driver), no device, or a CUDA backend that did not load.
	NoGPU string `json:"noGPU,omitempty"`
}

// Version is GET /version.
type Version struct {
	Version  string `json:"version"`
	LlamaCpp string `json:"llamaCpp,omitempty"`
}

// TokenizeRequest is POST /tokenize: either Text, or Messages rendered with
// the model's chat template (what a chat request would cost).
type TokenizeRequest struct {
	Model string `json:"model"`
	Text  string `json:"text,omitempty"`
	// Chat is an OpenAI chat-completions request body whose messages (and
	// tools) are rendered with the chat template before counting.
	Chat any `json:"chat,omitempty"`
}

// TokenizeResponse returns the tokens and their count.
type TokenizeResponse struct {
	Tokens []int `json:"tokens"`
	Count  int   `json:"count"`
}

// ErrorBody is the OpenAI error envelope the neuron answers errors with.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inside of the error envelope.
type ErrorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Code    string  `json:"code,omitempty"`
	Param   *string `json:"param"`
}

// Stable error codes.
const (
	CodeModelNotFound         = "model_not_found"
	CodeModelNotReady         = "model_not_ready"
	CodeContextLengthExceeded = "context_length_exceeded"
	CodeInsufficientMemory    = "insufficient_memory"
	CodeInvalidRequest        = "invalid_request_error"
	CodeConflict              = "conflict"
	CodeQueueFull             = "queue_full"
	CodeUnauthorized          = "invalid_api_key"
	CodeSourceUnavailable     = "source_unavailable"
	CodeChecksumMismatch      = "checksum_mismatch"
	CodeInternal              = "internal_error"
)

// Normalize returns e in canonical form, the one the neuron loads with and
// echoes back: names in lower case, the neuron's defaults written out
// ("auto" flash attention, an "f16" KV cache), and a negative or unset
// gpuLayers both meaning "every layer" (nil). Two configurations load a
// model the same way exactly when their normal forms are equal.
func (e EngineConfig) Normalize() EngineConfig {
	e.FlashAttention = strings.ToLower(strings.TrimSpace(e.FlashAttention))
	if e.FlashAttention == "" {
		e.FlashAttention = "auto"
	}
	e.KVCacheType = strings.ToLower(strings.TrimSpace(e.KVCacheType))
	if e.KVCacheType == "" {
		e.KVCacheType = "f16"
	}
	if e.GPULayers != nil {
		if *e.GPULayers < 0 {
			e.GPULayers = nil
		} else {
			g := *e.GPULayers
			e.GPULayers = &g
		}
	}
	return e
}

// FieldError is an invalid field of a request: Field is its JSON path,
// Message says what is wrong in a sentence a client can show.
type FieldError struct {
	Field, Message string
}

func (e *FieldError) Error() string { return e.Message }

// Validate checks a normalized configuration's ranges and names (the chat
// template, which needs the template engine, is checked by the neuron).
func (e EngineConfig) Validate() error {
	switch {
	case e.ContextLength < 0 || e.ContextLength > 1<<22:
		return &FieldError{"engine.contextLength", fmt.Sprintf("Invalid 'engine.contextLength': %d is out of range.", e.ContextLength)}
	case e.Parallel < 0 || e.Parallel > 256:
		return &FieldError{"engine.parallel", fmt.Sprintf("Invalid 'engine.parallel': %d is out of range.", e.Parallel)}
	}
	switch e.FlashAttention {
	case "auto", "enabled", "disabled":
	default:
		return &FieldError{"engine.flashAttention", fmt.Sprintf("Invalid 'engine.flashAttention': %q; use auto, enabled or disabled.", e.FlashAttention)}
	}
	switch e.KVCacheType {
	case "f16", "q8_0", "q4_0":
	default:
		return &FieldError{"engine.kvCacheType", fmt.Sprintf("Invalid 'engine.kvCacheType': %q; use f16, q8_0 or q4_0.", e.KVCacheType)}
	}
	return nil
}

// Equivalent reports whether two engine configurations load a model the
// same way: their normal forms are equal, field by field, so a new engine
// setting takes part without being listed here.
func (e EngineConfig) Equivalent(o EngineConfig) bool {
	return reflect.DeepEqual(e.Normalize(), o.Normalize())
}

// MemoryKey identifies what a memory estimate of a model loaded with e
// depends on: every setting but the chat template, in normal form.
func (e EngineConfig) MemoryKey() string {
	n := e.Normalize()
	n.ChatTemplate = ""
	b, _ := json.Marshal(n)
	return string(b)
}

// Replica is the state as Model and NeuronNode status show it: the
// neuron's lower-case states map to the CRDs' ReplicaState.
func (s ModelState) Replica() cortexv1.ReplicaState {
	switch s {
	case StateReady:
		return cortexv1.ReplicaReady
	case StateUnloading:
		return cortexv1.ReplicaUnloading
	case StateFailed:
		return cortexv1.ReplicaFailed
	default:
		return cortexv1.ReplicaLoading
	}
}
