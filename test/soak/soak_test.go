// Package soak runs a short version of the soak-and-fault benchmark
// (internal/soak, `make soak` runs the full one): mixed traffic through two
// gateway replicas on the real local stack while one gateway is rolled,
// the API server and etcd restart and the neuron token rotates, asserting
// the goals that are firm: no request fails during the rolling restart or
// the token rotation, none to a warm Model during the API-server outage,
// none in steady state, and the gateways and neurons
// end the run with no more goroutines or descriptors than they started with
// (within a tolerance for connection pools).
package soak

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/helexa-ai/cortex/internal/soak"
	"github.com/helexa-ai/cortex/internal/testenv"
)

// Growth allowed between the start and the end of the run: idle
// connections between the gateways and the neurons come and go.
const (
	goroutineSlack = 30
	fdSlack        = 20
)

func TestShortSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole stack and runs traffic for about a minute")
	}
	root := testenv.RepoRoot()
	model := filepath.Join(root, "..", "shared", "models", "stories260K.gguf")
	if _, err := os.Stat(model); err != nil {
		t.Fatalf("the test model is missing: %v", err)
	}
	assets, err := testenv.Assets()
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	bin := filepath.Join(work, "bin")
	build := exec.Command("go", "build", "-o", bin+"/", "./cmd/manager", "./cmd/gateway", "./cmd/neuron")
	build.Dir = root
	build.Env = os.Environ()
	if os.Getenv("CGO_CPPFLAGS") == "" {
		build.Env = append(build.Env, "CGO_CPPFLAGS=-I"+filepath.Join(root, "hack", "include"))
	}
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the binaries: %v\n%s", err, out)
	}
	ctrllog.SetLogger(logr.Discard())
	rep, err := soak.Run(context.Background(), soak.Config{
		Root: root, BinDir: bin, Assets: assets, Work: work, Model: model,
		Faults:  []string{"gateway-roll", "apiserver-restart", "token-rotate"},
		Workers: 4, Steady: 5 * time.Second, MaxDuration: 6 * time.Minute, MaxRequests: 50000,
		Logf: t.Logf,
	})
	if err != nil {
		t.Fatalf("soak: %v (process logs under %s)", err, filepath.Join(work, "stack", "logs"))
	}
	var table bytes.Buffer
	rep.Print(&table)
	t.Logf("\n%s", table.String())
	if len(rep.Skipped) > 0 {
		t.Fatalf("faults skipped: %v", rep.Skipped)
	}
	byFault := map[string]soak.Phase{}
	for _, p := range rep.Phases {
		byFault[p.Fault] = p
	}
	for _, name := range []string{"gateway-roll", "apiserver-restart", "token-rotate", "steady"} {
		p, ok := byFault[name]
		if !ok {
			t.Fatalf("no %s phase in the report", name)
		}
		if p.Completed == 0 {
			t.Errorf("%s: no request completed (the phase saw no traffic)", name)
		}
	}
	if p := byFault["gateway-roll"]; p.FailedTotal() != 0 {
		t.Errorf("the rolling restart failed %d requests: %v", p.FailedTotal(), p.Examples)
	}
	if p := byFault["apiserver-restart"]; p.WarmFailed != 0 {
		t.Errorf("the API-server restart failed %d requests to warm Models: %v", p.WarmFailed, p.Examples)
	}
	if p := byFault["token-rotate"]; p.FailedTotal() != 0 {
		t.Errorf("rotating the neuron token failed %d requests: %v", p.FailedTotal(), p.Examples)
	}
	if p := byFault["steady"]; p.FailedTotal() != 0 {
		t.Errorf("%d requests failed with no fault: %v", p.FailedTotal(), p.Examples)
	}
	// The two gateways share the prompt prefixes they route: each learned
	// some from the other (the replica rolled mid-run from its restart).
	if len(rep.PrefixesLearned) != 2 {
		t.Errorf("prefix sync counters of %d gateways, want 2: %v", len(rep.PrefixesLearned), rep.PrefixesLearned)
	}
	for name, n := range rep.PrefixesLearned {
		if n < 1 {
			t.Errorf("%s learned no routed prefix from its peer", name)
		}
	}
	if len(rep.Resources) == 0 {
		t.Fatal("no process footprints")
	}
	for _, f := range rep.Resources {
		if !f.Start.OK || !f.End.OK {
			t.Errorf("%s: footprint not read (start %s, end %s)", f.Process, f.Start, f.End)
			continue
		}
		if f.End.Goroutines > f.Start.Goroutines+goroutineSlack || f.End.FDs > f.Start.FDs+fdSlack {
			t.Errorf("%s grew: %s → %s", f.Process, f.Start, f.End)
		}
	}
}
