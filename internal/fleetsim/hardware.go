package fleetsim

import "fmt"

// GiB is 2^30 bytes.
const GiB = int64(1) << 30

// GPUClass is what the simulator knows of one kind of accelerator. Rates
// are derived per model from its size (see Rates); the sources of every
// figure are in docs/fleet.md.
type GPUClass struct {
	Name string
	// MemoryBytes is the device memory.
	MemoryBytes int64
	// MemBandwidth is the memory bandwidth in bytes per second (spec sheet).
	MemBandwidth float64
	// FLOPS is the dense FP16 tensor throughput in FLOP per second (spec
	// sheet, without sparsity).
	FLOPS float64
	// LoadBandwidth is how fast weights reach the device, bytes per second:
	// the slower of the host link and the node's storage.
	LoadBandwidth float64
	// InitSeconds is the fixed cost of a load beyond moving the bytes
	// (engine start, KV cache and compute graph allocation).
	InitSeconds float64
	// DecodeEff and PrefillEff are the fractions of MemBandwidth and FLOPS
	// an engine reaches in decode and prefill.
	DecodeEff, PrefillEff float64
	// BatchSlowdown is how much slower each decode step gets per extra
	// sequence in the batch: a step of b sequences takes (1 +
	// BatchSlowdown×(b−1)) times a single sequence's.
	BatchSlowdown float64
}

// nvmeBandwidth is the sequential read of one local NVMe Gen4 drive (spec
// sheets of current drives give 7.0–7.45 GB/s); weights are read from it,
// so it bounds loads on every GPU class below (their host links are
// faster).
const nvmeBandwidth = 7.0e9

// gpuInitSeconds is a GPU load's fixed cost. It is an assumption (no GPU
// was available to measure it); CPU's is measured.
const gpuInitSeconds = 1.5

// The efficiencies are calibrated on llama.cpp's published CUDA figures
// (docs/fleet.md): decode reaches about 0.7 of memory bandwidth, prefill
// about half the dense FP16 rate on prompts of a few thousand tokens, and
// eight sequences decode in about 2.3× the time of one.
const (
	gpuDecodeEff     = 0.7
	gpuPrefillEff    = 0.5
	gpuBatchSlowdown = 0.18
)

// Classes is the table of accelerator classes. The GPU rows come from
// NVIDIA's data sheets; the CPU row is calibrated from the real engine on
// the 2-vCPU machine the project's benchmarks ran on (docs/benchmarks.md).
var Classes = map[string]GPUClass{
	"H100": {Name: "H100", MemoryBytes: 80e9, MemBandwidth: 3.35e12, FLOPS: 989e12,
		LoadBandwidth: min(0.8*64e9, nvmeBandwidth), InitSeconds: gpuInitSeconds,
		DecodeEff: gpuDecodeEff, PrefillEff: gpuPrefillEff, BatchSlowdown: gpuBatchSlowdown},
	"H200": {Name: "H200", MemoryBytes: 141e9, MemBandwidth: 4.8e12, FLOPS: 989e12,
		LoadBandwidth: min(0.8*64e9, nvmeBandwidth), InitSeconds: gpuInitSeconds,
		DecodeEff: gpuDecodeEff, PrefillEff: gpuPrefillEff, BatchSlowdown: gpuBatchSlowdown},
	"L4": {Name: "L4", MemoryBytes: 24e9, MemBandwidth: 300e9, FLOPS: 121e12,
		LoadBandwidth: min(0.8*32e9, nvmeBandwidth), InitSeconds: gpuInitSeconds,
		DecodeEff: gpuDecodeEff, PrefillEff: gpuPrefillEff, BatchSlowdown: gpuBatchSlowdown},
	"A10": {Name: "A10", MemoryBytes: 24e9, MemBandwidth: 600e9, FLOPS: 125e12,
		LoadBandwidth: min(0.8*32e9, nvmeBandwidth), InitSeconds: gpuInitSeconds,
		DecodeEff: gpuDecodeEff, PrefillEff: gpuPrefillEff, BatchSlowdown: gpuBatchSlowdown},
	// CPU: the real engine on this machine decoded a 106 MB Q8_0 model at
	// 20 tok/s alone and 52 tok/s over 8 streams, and prefilled 75 tok/s
	// (100 M parameters), 1 thread; so decode moves about 2.1 GB/s of
	// weights, prefill reaches 15 GFLOP/s, and 8 streams take 3.1× one
	// stream's step. Memory is the machine's RAM.
	"CPU": {Name: "CPU", MemoryBytes: 24 * GiB, MemBandwidth: 2.1e9, FLOPS: 15e9,
		LoadBandwidth: cpuLoadBandwidth, InitSeconds: cpuInitSeconds,
		DecodeEff: 1, PrefillEff: 1, BatchSlowdown: 0.30},
}

// cpuLoadBandwidth and cpuInitSeconds are measured on this machine with the
// real engine (docs/fleet.md): a load of a GGUF in the page cache.
const (
	cpuLoadBandwidth = 2.0e9
	cpuInitSeconds   = 0.6
)

// Class returns the named class.
func Class(name string) (GPUClass, error) {
	c, ok := Classes[name]
	if !ok {
		return GPUClass{}, fmt.Errorf("unknown GPU class %q (known: H100, H200, L4, A10, CPU)", name)
	}
	return c, nil
}

// ModelSize is one size class of a GGUF model as served.
type ModelSize struct {
	Name string
	// Params is the parameter count.
	Params float64
	// WeightBytes is the Q4_K_M GGUF file size.
	WeightBytes int64
	// KVBytesPerToken is the FP16 KV cache per token of context.
	KVBytesPerToken int64
	// Share is the fraction of a fleet's models of this size.
	Share float64
}

// Sizes is the mix of model sizes, 3B to 70B: file sizes of common
// Q4_K_M quantisations and KV cache sizes from the architectures (layers ×
// KV heads × head size × 2 × 2 bytes). The shares lean to small models, as
// model hubs and marketplaces do.
var Sizes = []ModelSize{
	{Name: "3B", Params: 3.2e9, WeightBytes: 2.02e9, KVBytesPerToken: 28 * 8 * 128 * 4, Share: 0.25},
	{Name: "8B", Params: 8.0e9, WeightBytes: 4.92e9, KVBytesPerToken: 32 * 8 * 128 * 4, Share: 0.35},
	{Name: "14B", Params: 14.8e9, WeightBytes: 8.99e9, KVBytesPerToken: 48 * 8 * 128 * 4, Share: 0.20},
	{Name: "32B", Params: 32.8e9, WeightBytes: 19.85e9, KVBytesPerToken: 64 * 8 * 128 * 4, Share: 0.12},
	{Name: "70B", Params: 70.6e9, WeightBytes: 42.5e9, KVBytesPerToken: 80 * 8 * 128 * 4, Share: 0.08},
}

// computeBuffer is what llama.cpp reserves beyond weights and KV cache.
const computeBuffer = GiB / 2

// ReplicaBytes is what one replica of size s holds: weights, KV cache for
// contextLength × parallel tokens, compute buffers.
func ReplicaBytes(s ModelSize, contextLength, parallel int) int64 {
	return s.WeightBytes + s.KVBytesPerToken*int64(contextLength*parallel) + computeBuffer
}

// Rates are a model's speeds on a class.
type Rates struct {
	// PrefillTokPerSec is prompt tokens per second.
	PrefillTokPerSec float64
	// DecodeStep is one decode step of a single sequence, seconds.
	DecodeStep float64
	// LoadSeconds is the time from the load order to Ready.
	LoadSeconds float64
	// BatchSlowdown is the class's (see GPUClass).
	BatchSlowdown float64
}

// RatesFor derives a model's rates on a class: decode reads every weight
// once per step (memory bound), prefill does 2 FLOP per parameter and
// token (compute bound), a load moves the replica's bytes and pays the
// class's init cost.
func RatesFor(c GPUClass, s ModelSize, replicaBytes int64) Rates {
	return Rates{
		PrefillTokPerSec: c.PrefillEff * c.FLOPS / (2 * s.Params),
		DecodeStep:       float64(s.WeightBytes) / (c.DecodeEff * c.MemBandwidth),
		LoadSeconds:      float64(s.WeightBytes)/c.LoadBandwidth + c.InitSeconds,
		BatchSlowdown:    c.BatchSlowdown,
	}
}

// step is the duration of one decode step with b sequences.
func (r Rates) step(b int) float64 {
	return r.DecodeStep * (1 + r.BatchSlowdown*float64(max(b, 1)-1))
}
