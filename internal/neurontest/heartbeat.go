package neurontest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/units"
)

// Register creates the server's NeuronNode (with the given labels) and
// writes one heartbeat.
func (s *Server) Register(ctx context.Context, c client.Client, labels map[string]string) error {
	nn := &cortexv1.NeuronNode{ObjectMeta: metav1.ObjectMeta{Name: s.cfg.Name, Labels: labels}}
	if err := c.Create(ctx, nn); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating NeuronNode %s: %w", s.cfg.Name, err)
	}
	return s.Beat(ctx, c)
}

// Beat writes the neuron-owned part of the NeuronNode status once, as the
// real neuron does: a merge patch that never touches conditions.
func (s *Server) Beat(ctx context.Context, c client.Client) error {
	snap := s.Snapshot()
	nn := &cortexv1.NeuronNode{ObjectMeta: metav1.ObjectMeta{Name: s.cfg.Name}}
	now := metav1.Now()
	status := map[string]any{
		"endpoint":          s.URL(),
		"lastHeartbeatTime": now.UTC().Format(time.RFC3339),
		"gpuCount":          len(snap.Devices),
		"modelCount":        len(snap.Models),
	}
	var free, total int64
	var gpus []map[string]any
	for _, d := range snap.Devices {
		free += d.MemoryFree
		total += d.MemoryTotal
		gpus = append(gpus, map[string]any{
			"index": d.Index, "kind": d.Kind, "uuid": d.UUID, "name": d.Name,
			"memoryTotalBytes": d.MemoryTotal, "memoryFreeBytes": d.MemoryFree,
		})
	}
	status["gpus"] = gpus
	status["vram"] = units.FreeOfTotal(free, total)
	var models []map[string]any
	for _, m := range snap.Models {
		models = append(models, map[string]any{"name": m.Name, "state": m.State.Replica(), "vramBytes": m.VRAMBytes})
	}
	status["models"] = models
	patch, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return err
	}
	if err := c.Status().Patch(ctx, nn, client.RawPatch("application/merge-patch+json", patch)); err != nil {
		return fmt.Errorf("writing heartbeat of %s: %w", s.cfg.Name, err)
	}
	return nil
}

// Heartbeat keeps writing heartbeats every interval until stopped.
type Heartbeat struct {
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// StartHeartbeat begins writing heartbeats for s.
func (s *Server) StartHeartbeat(ctx context.Context, c client.Client, interval time.Duration) *Heartbeat {
	ctx, cancel := context.WithCancel(ctx)
	hb := &Heartbeat{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(hb.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			_ = s.Beat(ctx, c)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return hb
}

// Stop ends the heartbeat and waits for the writer to exit.
func (h *Heartbeat) Stop() {
	h.once.Do(func() {
		h.cancel()
		<-h.done
	})
}
