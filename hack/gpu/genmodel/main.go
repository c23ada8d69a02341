// Command genmodel writes a random-weight llama GGUF (ggufgen.WriteRandomLlama)
// for throughput checks on machines without Go:
// hack/gpu/prepare.sh builds it as a static binary into the carried folder,
// and hack/gpu-check.sh runs it on the GPU machine, which saves carrying a
// model of a hundred megabytes or more. The text such a model produces is
// noise; only its speed means something.
//
//	genmodel -size 100M -o /tmp/llama100M.gguf
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/helexa-ai/cortex/internal/gguf/ggufgen"
	"github.com/helexa-ai/cortex/internal/units"
)

// sizes are the shapes on offer. 100M is BenchmarkEngine's llama100M
// (internal/engine/llamacpp), so GPU numbers compare with the CPU ones in
// docs/benchmarks.md; 800M is a 1B-class shape (GQA, head dimension 128)
// where a GPU's memory bandwidth shows.
var sizes = map[string]ggufgen.LlamaParams{
	"20M":  {Layers: 4, Embd: 512, Heads: 8, HeadsKV: 4, FF: 1536, Vocab: 16000},
	"100M": {Layers: 12, Embd: 768, Heads: 12, HeadsKV: 4, FF: 2048, Vocab: 32000},
	"800M": {Layers: 16, Embd: 2048, Heads: 16, HeadsKV: 4, FF: 5632, Vocab: 32000},
}

func main() {
	size := flag.String("size", "100M", "model shape: "+strings.Join(sizeNames(), ", "))
	out := flag.String("o", "", "output GGUF file (required)")
	weights := flag.String("type", "q8_0", "weight type: q8_0, q4_0, f16 or f32")
	seed := flag.Uint64("seed", 1, "random seed (the same seed writes the same file)")
	flag.Parse()
	if err := run(*size, *out, *weights, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "genmodel:", err)
		os.Exit(1)
	}
}

func sizeNames() []string {
	names := make([]string, 0, len(sizes))
	for n := range sizes {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func run(size, out, weights string, seed uint64) error {
	p, ok := sizes[size]
	if !ok {
		return fmt.Errorf("unknown size %q (%s)", size, strings.Join(sizeNames(), ", "))
	}
	if out == "" {
		return errors.New("-o is required")
	}
	p.Name = "random-llama-" + size
	p.Context = 4096
	p.WeightType = weights
	p.Seed = seed
	n, err := ggufgen.LlamaParameterCount(p)
	if err != nil {
		return fmt.Errorf("shaping the model: %w", err)
	}
	// Write beside the target and rename, so an interrupted run never
	// leaves a truncated file under the final name.
	tmp, err := os.CreateTemp(filepath.Dir(out), ".genmodel-*")
	if err != nil {
		return fmt.Errorf("creating the output: %w", err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	w := bufio.NewWriterSize(tmp, 1<<20)
	if err := ggufgen.WriteRandomLlama(w, p); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("writing the model: %w", err)
	}
	if err := w.Flush(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("writing the model: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing the model: %w", err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return fmt.Errorf("naming the model: %w", err)
	}
	st, err := os.Stat(out)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "genmodel: %s: %.1fM parameters, %s weights, %s\n", out, float64(n)/1e6, weights, units.IECBytes(st.Size()))
	return nil
}
