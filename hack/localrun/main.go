// Command localrun is `make run`: the whole cortex stack on this machine —
// a real kube-apiserver and etcd, the manager, the gateway and two CPU
// neurons on loopback — with sample Models applied, progress printed as
// they load, and a clean stop on Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/localstack"
)

func main() {
	root, _ := os.Getwd()
	home, _ := os.UserCacheDir()
	bin := flag.String("bin", filepath.Join(root, "bin"), "directory with the manager, gateway and neuron binaries")
	dir := flag.String("dir", filepath.Join(root, ".cortex"), "state directory (kubeconfig, keys, logs, manifests)")
	cache := flag.String("cache-dir", filepath.Join(home, "cortex", "models"), "model cache the neurons read (file:// sources live here)")
	gatewayAddr := flag.String("gateway-addr", "127.0.0.1:8080", "where the gateway listens")
	memory := flag.String("neuron-memory", "384Mi", "memory each CPU neuron advertises")
	samples := flag.Bool("samples", true, "apply the sample Models")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, root, *bin, *dir, *cache, *gatewayAddr, *memory, *samples); err != nil {
		fmt.Fprintln(os.Stderr, "cortex:", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) {
	fmt.Printf("%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func run(ctx context.Context, root, bin, dir, cache, gatewayAddr, memory string, samples bool) error {
	say("Finding kube-apiserver and etcd (hack/envtest.sh)…")
	out, err := exec.CommandContext(ctx, filepath.Join(root, "hack", "envtest.sh")).Output()
	if err != nil {
		return fmt.Errorf("hack/envtest.sh: %w", err)
	}
	assets := strings.TrimSpace(string(out))

	shared := filepath.Join(root, "..", "shared", "models", "stories260K.gguf")
	if _, err := os.Stat(shared); err != nil {
		shared = ""
	}
	say("Seeding the model cache %s…", cache)
	models, err := localstack.SeedCache(cache, shared)
	if err != nil {
		return err
	}

	say("Starting kube-apiserver, etcd, manager, gateway and two neurons (logs in %s)…", filepath.Join(dir, "logs"))
	neurons := []localstack.NeuronSpec{{Name: "neuron-a", MemoryLimit: memory}, {Name: "neuron-b", MemoryLimit: memory}}
	st, err := localstack.Start(ctx, localstack.Options{
		Dir: dir, BinDir: bin, Assets: assets, CRDDir: filepath.Join(root, "config", "crd", "bases"),
		CacheDir: cache, Neurons: neurons, GatewayAddr: gatewayAddr,
	})
	if err != nil {
		return err
	}
	defer func() {
		say("Stopping…")
		if err := st.Stop(); err != nil {
			say("stop: %v", err)
		}
		say("Stopped.")
	}()

	manifests := filepath.Join(dir, "models")
	_ = os.MkdirAll(manifests, 0o755)
	for _, m := range models {
		path := filepath.Join(manifests, m.Name+".yaml")
		if err := os.WriteFile(path, []byte(m.Manifest), 0o644); err != nil {
			return err
		}
		if !samples {
			continue
		}
		var obj cortexv1.Model
		if err := yaml.UnmarshalStrict([]byte(m.Manifest), &obj); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		obj.Namespace = "default"
		if err := st.Client.Create(ctx, &obj); err != nil {
			return fmt.Errorf("applying %s: %w", path, err)
		}
	}
	printUsage(st, manifests, models)
	watch(ctx, st.Client)
	return nil
}

func printUsage(st *localstack.Stack, manifests string, models []localstack.LocalModel) {
	var names []string
	for _, m := range models {
		names = append(names, m.Name)
	}
	fmt.Printf(`
cortex is running. Models: %s (manifests in %s).

  export KUBECONFIG=%s
  kubectl get models,neuronnodes
  kubectl describe model chat-small

  curl %s/v1/models -H "Authorization: Bearer %s"
  curl %s/v1/chat/completions -H "Authorization: Bearer %s" -H "Content-Type: application/json" \
    -d '{"model":"stories","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":48}'

  SDKs:        base URL %s/v1, API key %s
  Claude Code: ANTHROPIC_BASE_URL=%s ANTHROPIC_AUTH_TOKEN=%s claude --model chat-small
  Codex:       ~/.codex/config.toml:
                 [model_providers.cortex]
                 name = "cortex"
                 base_url = "%s/v1"
                 env_key = "CORTEX_API_KEY"
                 wire_api = "responses"
               CORTEX_API_KEY=%s codex -c model_provider=cortex -m chat-small

  Metrics: gateway %s, manager %s

Ctrl-C stops everything.

`, strings.Join(names, ", "), manifests, st.Kubeconfig,
		st.GatewayURL, st.APIKey, st.GatewayURL, st.APIKey,
		st.GatewayURL, st.APIKey, st.GatewayURL, st.APIKey,
		st.GatewayURL, st.APIKey, st.GatewayMetrics, st.ManagerMetrics)
}

// watch prints every change of a Model's or NeuronNode's state until ctx
// ends.
func watch(ctx context.Context, c client.Client) {
	seen := map[string]string{}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		var models cortexv1.ModelList
		var nodes cortexv1.NeuronNodeList
		if c.List(ctx, &models) == nil && c.List(ctx, &nodes) == nil {
			var lines []string
			for _, n := range nodes.Items {
				line := fmt.Sprintf("node %-9s ready=%-5s models=%d vram=%s", n.Name, n.Status.Ready, n.Status.ModelCount, n.Status.VRAM)
				lines = append(lines, "n/"+n.Name+"\x00"+line)
			}
			for _, m := range models.Items {
				line := fmt.Sprintf("model %-11s %-13s ready=%-4s nodes=%-18s vram=%s", m.Name, m.Status.Phase, m.Status.Ready, m.Status.Nodes, m.Status.VRAM)
				for _, r := range m.Status.Replicas {
					if r.State == cortexv1.ReplicaLoading {
						line += fmt.Sprintf(" loading on %s %d%%", r.Node, r.Progress)
					}
				}
				for _, cond := range m.Status.Conditions {
					if cond.Status != "True" && cond.Type == cortexv1.ModelConditionScheduled {
						line += " (" + cond.Message + ")"
					}
				}
				lines = append(lines, "m/"+m.Name+"\x00"+line)
			}
			slices.Sort(lines)
			for _, l := range lines {
				key, text, _ := strings.Cut(l, "\x00")
				if seen[key] != text {
					seen[key] = text
					say("%s", text)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
