package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/helexa-ai/cortex/internal/cortexcli"
	"github.com/helexa-ai/cortex/internal/fleet"
)

// 7. `cortex status` reads the same fleet from the API server and from the
// gateway's /health: a served Model, and one nothing can serve.
func TestCortexStatusFromTheClusterAndTheGateway(t *testing.T) {
	apply(t, modelManifest("status-served", "stories260K.gguf", "  replicas: {min: 1, max: 1}\n  engine: {contextLength: 512, parallel: 1}\n"))
	apply(t, modelManifest("status-nowhere", "stories260K.gguf", "  placement: {nodeSelector: {cortex.helexa.ai/gpu-product: none}}\n"))
	t.Cleanup(func() {
		if _, err := run("delete", "-n", ns, "model/status-served", "model/status-nowhere", "--wait=true", "--timeout=60s"); err != nil {
			t.Error(err)
		}
	})
	mustRun(t, "wait", "-n", ns, "--for=condition=Ready", "model/status-served", "--timeout=120s")

	status := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := cortexcli.Main(context.Background(), append([]string{"cortex", "status"}, args...),
			cortexcli.IO{Out: &out, Err: &errb, Getenv: func(string) string { return "" }})
		return code, out.String(), errb.String()
	}
	var cluster, gateway fleet.Report
	eventually(t, 30*time.Second, "the gateway to report what the cluster does", func() (bool, string) {
		code, out, errOut := status("--kubeconfig", st.Kubeconfig, "-A", "-o", "json")
		cluster = fleet.Report{}
		if err := json.Unmarshal([]byte(out), &cluster); err != nil || code != cortexcli.ExitDegraded {
			return false, "cluster: exit " + strconv.Itoa(code) + " " + out + errOut
		}
		code, out, errOut = status("--endpoint", st.GatewayURL, "--api-key", st.APIKey, "-o", "json")
		gateway = fleet.Report{}
		if err := json.Unmarshal([]byte(out), &gateway); err != nil || code != cortexcli.ExitDegraded {
			return false, "gateway: exit " + strconv.Itoa(code) + " " + out + errOut
		}
		a, _ := json.Marshal(cluster)
		b, _ := json.Marshal(gateway)
		return bytes.Equal(a, b), "cluster " + string(a) + "\ngateway " + string(b)
	})

	if cluster.Nodes != (fleet.NodeCount{Healthy: 2, Total: 2}) {
		t.Fatalf("nodes: %+v", cluster.Nodes)
	}
	var served *fleet.Model
	for i := range cluster.Models {
		if cluster.Models[i].Model == ns+"/status-served" {
			served = &cluster.Models[i]
		}
	}
	if served == nil || served.Ready != 1 || len(served.Locations) == 0 || served.Locations[0].State != "Ready" ||
		!strings.HasPrefix(served.Locations[0].Node, "neuron-") || served.Locations[0].Memory.ModelBytes == 0 {
		t.Fatalf("status-served: %+v", served)
	}
	want := fleet.Unservable{Model: ns + "/status-nowhere", Reason: fleet.ReasonNoEligibleNode,
		Detail: "no Ready, uncordoned NeuronNode matches nodeSelector cortex.helexa.ai/gpu-product=none"}
	if len(cluster.Unservable) != 1 || cluster.Unservable[0] != want {
		t.Fatalf("unservable: %+v", cluster.Unservable)
	}

	code, out, _ := status("--kubeconfig", st.Kubeconfig, "-n", ns)
	t.Logf("cortex status:\n%s", out)
	if code != cortexcli.ExitDegraded || !strings.Contains(out, "FLEET DEGRADED   NODES 2/2 healthy") ||
		!strings.Contains(out, "status-nowhere  NoEligibleNode") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}
