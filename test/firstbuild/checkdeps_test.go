// Package firstbuild checks what a newcomer's first `make build`, `make run`
// or `make test` does on a machine that lacks part of the cgo toolchain:
// hack/check-deps.sh stops it before anything compiles, with the exact
// command to run. The machine is simulated with a PATH view (a fake
// dpkg-query that hides packages, a PATH without some commands).
package firstbuild

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var root = filepath.Join("..", "..")

// fakeDpkg writes a dpkg-query that reports every package installed except
// those in missing, into a new folder it returns.
func fakeDpkg(t *testing.T, missing ...string) string {
	t.Helper()
	dir := t.TempDir()
	script := `#!/bin/sh
for a; do p=$a; done
case " ` + strings.Join(missing, " ") + ` " in *" $p "*) echo "dpkg-query: no packages found matching $p" >&2; exit 1 ;; esac
printf 'install ok installed'
`
	if err := os.WriteFile(filepath.Join(dir, "dpkg-query"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// pathWithout is a folder of links to every command on PATH except drop.
func pathWithout(t *testing.T, drop ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			name := e.Name()
			skip := false
			for _, x := range drop {
				if name == x {
					skip = true
				}
			}
			if _, err := os.Lstat(filepath.Join(dir, name)); skip || err == nil {
				continue
			}
			_ = os.Symlink(filepath.Join(d, name), filepath.Join(dir, name))
		}
	}
	return dir
}

func run(t *testing.T, path string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "PATH="+path)
	out, err := cmd.CombinedOutput()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
	return string(out), code
}

func sudo() string {
	if os.Getuid() == 0 {
		return ""
	}
	return "sudo "
}

func TestCheckDeps(t *testing.T) {
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		t.Skip("the PATH views below are built on a Debian machine's commands")
	}
	path := os.Getenv("PATH")
	tests := []struct {
		name string
		path string
		code int
		want []string // each must appear in the output
	}{
		{"this machine", path, 0, nil},
		{"no stb headers", fakeDpkg(t, "libstb-dev") + ":" + path, 1,
			[]string{"needs libstb-dev", "    " + sudo() + "apt-get install -y --no-install-recommends libstb-dev\n"}},
		{"fresh Debian: no toolchain, no headers", fakeDpkg(t, "build-essential", "cmake", "nlohmann-json3-dev", "libstb-dev") + ":" + pathWithout(t, "gcc", "g++", "cc", "c++", "cmake", "make"), 1,
			[]string{"    " + sudo() + "apt-get install -y --no-install-recommends build-essential cmake nlohmann-json3-dev libstb-dev\n"}},
		{"compiler removed, package listed", pathWithout(t, "g++"), 1,
			[]string{"apt-get install -y --no-install-recommends build-essential\n"}},
		{"no go", pathWithout(t, "go"), 1, []string{"no 'go' on PATH: install Go"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, code := run(t, tc.path, "hack/check-deps.sh")
			if code != tc.code {
				t.Fatalf("exit %d, want %d:\n%s", code, tc.code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if tc.code == 0 && out != "" {
				t.Errorf("want silence when nothing is missing, got:\n%s", out)
			}
		})
	}

	t.Run("bad argument", func(t *testing.T) {
		if out, code := run(t, path, "hack/check-deps.sh", "--bogus"); code != 2 || !strings.Contains(out, "unknown argument") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
	})
}

// TestMakeStopsBeforeCompiling: make build-neuron (and so build, run, test)
// stops at check-deps with the command, and no go build starts.
func TestMakeStopsBeforeCompiling(t *testing.T) {
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		t.Skip("needs a Debian machine's commands")
	}
	for _, target := range []string{"build-neuron", "build", "test"} {
		t.Run(target, func(t *testing.T) {
			out, code := run(t, fakeDpkg(t, "nlohmann-json3-dev")+":"+os.Getenv("PATH"), "make", "--no-print-directory", target, "BIN="+t.TempDir())
			if code == 0 {
				t.Fatalf("make %s succeeded with nlohmann-json3-dev missing:\n%s", target, out)
			}
			if !strings.Contains(out, "apt-get install -y --no-install-recommends nlohmann-json3-dev") {
				t.Errorf("no install command in:\n%s", out)
			}
			// What make echoes when it starts the build, the tests or the
			// generators.
			if strings.Contains(out, "-trimpath") || strings.Contains(out, "KUBEBUILDER_ASSETS") || strings.Contains(out, "controller-gen") || strings.Contains(out, "build-backends") {
				t.Errorf("make went on after check-deps failed:\n%s", out)
			}
		})
	}
}
