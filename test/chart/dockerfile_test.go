package chart

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// dockerfile is the part of a Dockerfile these tests read.
type dockerfile struct {
	path string
	// stages are the lines of each stage, FROM line first.
	stages [][]string
	// makeTargets are the targets `make` is called with.
	makeTargets []string
}

// makeCall matches a make command: at the start of a RUN (after its
// --mount options) or after && or ;, not a package named make in an
// apt-get install list.
var makeCall = regexp.MustCompile(`(?:^RUN(?:\s+--mount=\S+)*|&&|;)\s+make\s+([a-z][a-z0-9-]*(?:\s+[a-z][a-z0-9-]*)*)`)

func parseDockerfile(t *testing.T, path string) dockerfile {
	t.Helper()
	d := dockerfile{path: path}
	// Join continued lines, drop comments.
	text := strings.ReplaceAll(readFile(t, path), "\\\n", " ")
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "FROM ") {
			d.stages = append(d.stages, nil)
		}
		if len(d.stages) > 0 {
			d.stages[len(d.stages)-1] = append(d.stages[len(d.stages)-1], line)
		}
		if strings.HasPrefix(line, "RUN ") {
			for _, m := range makeCall.FindAllStringSubmatch(line, -1) {
				d.makeTargets = append(d.makeTargets, strings.Fields(m[1])...)
			}
		}
	}
	return d
}

func (d dockerfile) final() []string { return d.stages[len(d.stages)-1] }

func has(lines []string, prefix string) bool {
	return slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, prefix) })
}

// TestDockerfiles: the images build through the Makefile targets CI runs
// (so the Dockerfiles' build steps are exercised without Docker), and run
// as the non-root user 65532.
func TestDockerfiles(t *testing.T) {
	cases := map[string]struct {
		target    string
		baseImage string
		copies    []string
	}{
		"manager.Dockerfile":     {"build-manager", "FROM gcr.io/distroless/static:nonroot", []string{"/out/manager"}},
		"gateway.Dockerfile":     {"build-gateway", "FROM gcr.io/distroless/static:nonroot", []string{"/out/gateway"}},
		"neuron-cpu.Dockerfile":  {"build-neuron", "FROM debian:bookworm-slim", []string{"/out/neuron"}},
		"neuron-cuda.Dockerfile": {"build-neuron", "FROM debian:bookworm-slim", []string{"/out/neuron /opt/cortex/bin/neuron", "/out/libggml-cuda.so /opt/cortex/bin/libggml-cuda.so", "/out/cuda /opt/cortex/lib"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			d := parseDockerfile(t, filepath.Join(root, "build", "docker", name))
			if len(d.stages) < 2 {
				t.Fatalf("%d stages; want a build stage and a runtime stage", len(d.stages))
			}
			if !slices.Contains(d.makeTargets, tc.target) {
				t.Errorf("builds with make %v, want %s", d.makeTargets, tc.target)
			}
			for _, target := range d.makeTargets {
				// make -n fails on an unknown target.
				if out, err := run("make", "-C", root, "-n", target, "BIN=/nonexistent"); err != nil {
					t.Errorf("make %s: %v\n%s", target, err, out)
				}
			}
			final := d.final()
			if !strings.HasPrefix(final[0], tc.baseImage) {
				t.Errorf("runtime stage %q, want %s…", final[0], tc.baseImage)
			}
			if !has(final, "USER 65532:65532") {
				t.Error("the runtime stage does not switch to USER 65532:65532")
			}
			for _, c := range tc.copies {
				if !has(final, "COPY --from=build "+c) {
					t.Errorf("the runtime stage does not COPY --from=build %s", c)
				}
			}
			if strings.HasPrefix(name, "neuron") {
				if !slices.ContainsFunc(d.stages[len(d.stages)-2], func(l string) bool {
					return strings.Contains(l, "nlohmann-json3-dev") && strings.Contains(l, "libstb-dev")
				}) {
					t.Error("the build stage does not install nlohmann-json3-dev and libstb-dev")
				}
			}
		})
	}

	// The CUDA image builds the backend with the project's scripts, the
	// toolkit CI compiles with included (what CI compiles is what ships).
	cuda := readFile(t, filepath.Join(root, "build", "docker", "neuron-cuda.Dockerfile"))
	if !strings.Contains(cuda, "hack/build-cuda.sh /out") {
		t.Error("neuron-cuda.Dockerfile does not run hack/build-cuda.sh")
	}
	if !strings.Contains(cuda, `toolkit="$(hack/cuda-toolkit.sh)"`) {
		t.Error("neuron-cuda.Dockerfile does not take its CUDA toolkit from hack/cuda-toolkit.sh, as CI does")
	}
	if st, err := os.Stat(filepath.Join(root, "hack", "build-cuda.sh")); err != nil {
		t.Logf("PENDING: hack/build-cuda.sh does not exist yet; neuron-cuda.Dockerfile assumes `hack/build-cuda.sh <dir>` writes <dir>/libggml-cuda.so")
	} else if st.Mode()&0o111 == 0 {
		t.Error("hack/build-cuda.sh is not executable")
	}
}

// TestMakeImages: without a Docker daemon, `make images` prints one docker
// build per image, each naming a Dockerfile that exists and the tag the
// chart pulls.
func TestMakeImages(t *testing.T) {
	out, err := run("make", "-C", root, "--no-print-directory", "images", "DOCKER=false", "IMAGE_TAG=1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	var builds []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "false build ") {
			builds = append(builds, line)
		}
	}
	wantTags := []string{"cortex-manager:1.2.3", "cortex-gateway:1.2.3", "cortex-neuron:1.2.3-cpu", "cortex-neuron:1.2.3-cuda"}
	if len(builds) != len(wantTags) {
		t.Fatalf("make images printed %d builds:\n%s", len(builds), out)
	}
	for i, b := range builds {
		f := strings.Fields(b)
		file := f[slices.Index(f, "-f")+1]
		if _, err := os.Stat(filepath.Join(root, file)); err != nil {
			t.Errorf("%s: %v", b, err)
		}
		if !strings.HasSuffix(f[slices.Index(f, "-t")+1], "/"+wantTags[i]) {
			t.Errorf("%s: want tag %s", b, wantTags[i])
		}
	}
}
