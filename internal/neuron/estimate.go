package neuron

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/helexa-ai/cortex/internal/gguf"
	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/sources"
)

// estimateTimeout bounds reading a GGUF header at load acceptance (a few
// range requests for a remote source).
const estimateTimeout = 60 * time.Second

func isRemote(src neuronapi.Source) bool {
	return !strings.HasPrefix(strings.ToLower(strings.TrimSpace(src.URI)), "file:")
}

// estimateSource reads the GGUF header of src (a ranged read when remote and
// not cached) and estimates its memory with the engine settings.
func (r *registry) estimateSource(ctx context.Context, src neuronapi.Source, ec neuronapi.EngineConfig) (neuronapi.Estimate, *gguf.File, error) {
	f, err := r.res.Open(ctx, src)
	if err != nil {
		return neuronapi.Estimate{}, nil, sourceError(err)
	}
	defer func() { _ = f.Close() }()
	gf, err := gguf.Read(f)
	if err != nil {
		if errors.Is(err, gguf.ErrNotGGUF) {
			return neuronapi.Estimate{}, nil, sourceError(&sources.Error{Code: neuronapi.CodeSourceUnavailable, Permanent: true,
				Err: fmt.Errorf("%s is not a GGUF file", src.URI)})
		}
		return neuronapi.Estimate{}, nil, sourceError(&sources.Error{Code: neuronapi.CodeSourceUnavailable, Permanent: !isRemote(src),
			Err: fmt.Errorf("reading the GGUF header of %s: %w", src.URI, err)})
	}
	est := estimateFile(gf, ec)
	if ps, ok := src.Projector(); ok {
		pf, err := r.res.Open(ctx, ps)
		if err != nil {
			return neuronapi.Estimate{}, nil, sourceError(err)
		}
		defer func() { _ = pf.Close() }()
		pg, err := gguf.Read(pf)
		if err != nil {
			return neuronapi.Estimate{}, nil, sourceError(&sources.Error{Code: neuronapi.CodeSourceUnavailable, Permanent: !isRemote(ps),
				Err: fmt.Errorf("reading the GGUF header of the projector %s: %w", ps.URI, err)})
		}
		addProjector(&est, pg)
	}
	return est, gf, nil
}

// addProjector counts a vision projector into a model's estimate.
func addProjector(est *neuronapi.Estimate, pf *gguf.File) {
	pe := gguf.EstimateProjector(pf)
	est.ProjectorBytes = pe.Total
	est.ImageTokens = pe.ImageTokens
	est.TotalBytes += pe.Total
}

func estimateFile(gf *gguf.File, ec neuronapi.EngineConfig) neuronapi.Estimate {
	me := gguf.Estimate(gf, ec.ContextLength, ec.Parallel, ec.KVCacheType, ec.FlashAttention == "enabled")
	layers, _ := gf.ArchUint("block_count")
	trained, _ := gf.ArchUint("context_length")
	return neuronapi.Estimate{
		TotalBytes:           me.Total,
		WeightsBytes:         me.Weights,
		KVCacheBytes:         me.KVCache,
		ComputeBytes:         me.Compute + me.Output,
		Layers:               int(layers),
		ContextLength:        me.ContextLength,
		Parallel:             me.Parallel,
		Architecture:         gf.Architecture(),
		TrainedContextLength: int(trained),
	}
}

// needFor turns an estimate into what placement divides (the contract's
// Estimate.Need, which the manager uses too).
func needFor(est neuronapi.Estimate, gpuLayers *int) need { return est.Need(gpuLayers) }
