package cortexcli

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"sigs.k8s.io/yaml"

	"github.com/helexa-ai/cortex/internal/fleet"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const gi = 1 << 30

func healthyReport() fleet.Report {
	return fleet.Report{
		Status:     fleet.StatusOK,
		Nodes:      fleet.NodeCount{Healthy: 2, Total: 2},
		Unservable: []fleet.Unservable{},
		Neurons: []fleet.Node{
			{Name: "gpu-a", Ready: true, GPUs: 2, MemoryFreeBytes: 61 * gi, MemoryTotalBytes: 160 * gi, Models: []string{"default/qwen2-5-7b"}},
			{Name: "gpu-b", Ready: true, Cordoned: true, GPUs: 1, MemoryFreeBytes: 80 * gi, MemoryTotalBytes: 80 * gi, Models: []string{}},
		},
		Models: []fleet.Model{
			{Model: "default/llama-3-8b", Names: []string{"llama-3-8b"}, Phase: "Idle", Locations: []fleet.Location{
				{Node: "gpu-a", State: fleet.StatePlaceable, NodeReady: true, Memory: fleet.Memory{ModelBytes: 6 * gi, FreeBytes: 61 * gi, TotalBytes: 160 * gi}},
			}},
			{Model: "default/qwen2-5-7b", Names: []string{"qwen2.5-7b", "gpt-4o-mini"}, Phase: "Ready", Ready: 1, Desired: 1, Locations: []fleet.Location{
				{Node: "gpu-a", State: "Ready", NodeReady: true, Memory: fleet.Memory{ModelBytes: 5 * gi, FreeBytes: 61 * gi, TotalBytes: 160 * gi}},
			}},
		},
	}
}

func degradedReport() fleet.Report {
	return fleet.Report{
		Status: fleet.StatusDegraded,
		Nodes:  fleet.NodeCount{Healthy: 2, Total: 3},
		Unservable: []fleet.Unservable{
			{Model: "research/deepseek-r1-distill-llama-70b-q4-k-m", Reason: fleet.ReasonUnschedulable, Detail: "one replica needs 42.5Gi on one node; the largest free space is 31.2Gi on gpu-node-h100-rack2-slot07 (after evicting idle models of lower priority)"},
			{Model: "team-a/qwen2-5-coder-32b", Node: "gpu-node-a100-03", Reason: fleet.ReasonNodeNotReady, Detail: "NeuronNode gpu-node-a100-03 is not Ready (HeartbeatStale): last heartbeat 3m12s ago"},
			{Model: "team-a/qwen2-5-coder-32b", Node: "gpu-node-h100-rack2-slot07", Reason: fleet.ReasonLoadFailed, Detail: "sha256 mismatch"},
		},
		Neurons: []fleet.Node{
			{Name: "gpu-node-a100-03", Reason: "HeartbeatStale", GPUs: 4, MemoryFreeBytes: 12 * gi, MemoryTotalBytes: 320 * gi, Models: []string{"team-a/qwen2-5-coder-32b"}},
			{Name: "gpu-node-h100-rack2-slot07", Ready: true, GPUs: 8, MemoryFreeBytes: 31*gi + gi/5, MemoryTotalBytes: 640 * gi, Models: []string{"team-a/qwen2-5-coder-32b", "team-a/llama-3-1-8b-instruct", "team-b/mistral-nemo-12b", "team-b/phi-3-5-mini"}},
			{Name: "cpu-1", Ready: true, MemoryFreeBytes: 7 * gi, MemoryTotalBytes: 8 * gi, Models: []string{}},
		},
		Models: []fleet.Model{
			{Model: "research/deepseek-r1-distill-llama-70b-q4-k-m", Phase: "Unschedulable", Desired: 1, Locations: []fleet.Location{}},
			{Model: "team-a/llama-3-1-8b-instruct", Phase: "Ready", Ready: 2, Desired: 2, Locations: []fleet.Location{
				{Node: "gpu-node-h100-rack2-slot07", State: "Ready", NodeReady: true},
				{Node: "cpu-1", State: "Ready", NodeReady: true},
			}},
			{Model: "team-a/qwen2-5-coder-32b", Phase: "Degraded", Ready: 0, Desired: 2, Locations: []fleet.Location{
				{Node: "gpu-node-a100-03", State: "Ready"},
				{Node: "gpu-node-h100-rack2-slot07", State: "Failed", NodeReady: true},
			}},
			{Model: "team-b/mistral-nemo-12b", Phase: "Loading", Desired: 1, Locations: []fleet.Location{
				{Node: "gpu-node-h100-rack2-slot07", State: "Loading", NodeReady: true},
			}},
			{Model: "team-b/phi-3-5-mini", Phase: "Idle", Locations: []fleet.Location{}},
		},
	}
}

func TestTableGolden(t *testing.T) {
	tests := []struct {
		name   string
		report fleet.Report
		scope  string
	}{
		{"healthy", healthyReport(), "namespace default"},
		{"degraded", degradedReport(), "all namespaces"},
		{"empty", fleet.Report{Status: fleet.StatusDegraded}, "gateway https://llm.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Table(tt.report, tt.scope, 80)
			for i, line := range strings.Split(got, "\n") {
				if n := utf8.RuneCountInString(line); n > 80 {
					t.Errorf("line %d is %d columns wide:\n%s", i+1, n, line)
				}
			}
			golden := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("table differs from %s (go test -update rewrites it):\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
}

// Narrower terminals keep every line within their width.
func TestTableFitsNarrowTerminals(t *testing.T) {
	for _, width := range []int{60, 72, 100} {
		for i, line := range strings.Split(Table(degradedReport(), "all namespaces", width), "\n") {
			if n := utf8.RuneCountInString(line); n > width {
				t.Errorf("width %d, line %d is %d wide: %s", width, i+1, n, line)
			}
		}
	}
}

func TestRenderJSONAndYAMLKeepTheReport(t *testing.T) {
	want := degradedReport()
	for _, format := range []string{OutputJSON, OutputYAML} {
		var buf bytes.Buffer
		if err := Render(&buf, want, format, "", 80); err != nil {
			t.Fatal(err)
		}
		var got fleet.Report
		var err error
		if format == OutputJSON {
			err = json.Unmarshal(buf.Bytes(), &got)
		} else {
			err = yaml.Unmarshal(buf.Bytes(), &got)
		}
		if err != nil {
			t.Fatalf("%s: %v\n%s", format, err, buf.String())
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s round trip:\n got %+v\nwant %+v", format, got, want)
		}
	}
	if err := Render(&bytes.Buffer{}, want, "xml", "", 80); err == nil {
		t.Error("xml rendered")
	}
}

func TestWrap(t *testing.T) {
	tests := []struct {
		text string
		n    int
		want []string
	}{
		{"", 10, []string{""}},
		{"a b c", 10, []string{"a b c"}},
		{"alpha beta gamma", 10, []string{"alpha beta", "gamma"}},
		{"averyveryverylongword x", 10, []string{"averyvery…", "x"}},
	}
	for _, tt := range tests {
		if got := wrap(tt.text, tt.n); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("wrap(%q, %d) = %q, want %q", tt.text, tt.n, got, tt.want)
		}
	}
}

// A Ready node whose heartbeat is late is still worth a line: it serves,
// but its NeuronNode is not being updated.
func TestProblemLinesNameALateHeartbeat(t *testing.T) {
	r := healthyReport()
	r.Neurons[1].Reason = "HeartbeatLate"
	got := problemLines(r, nil)
	if len(got) != 1 || got[0].label != "node gpu-b" || !strings.Contains(got[0].text, "heartbeat late (HeartbeatLate): serving") {
		t.Fatalf("problems %+v", got)
	}
	if got := problemLines(healthyReport(), nil); len(got) != 0 {
		t.Fatalf("a healthy fleet has problems: %+v", got)
	}
}
