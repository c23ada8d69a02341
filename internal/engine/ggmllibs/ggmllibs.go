// Package ggmllibs tells which ggml backend libraries (libggml-cpu-<variant>.so,
// libggml-cuda.so) this process loaded, by reading the kernel's list of its
// mappings, so the neuron can name the CPU variant in use and a CUDA backend
// that was found but could not load (no driver). Pure Go: ggml's loader
// keeps no record of what it chose, and the engine's cgo boundary need not
// grow for a report.
package ggmllibs

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// BuiltIn names the CPU backend compiled into the binary (baseline x86-64),
// in use when no CPU variant library is loaded.
const BuiltIn = "built-in"

// Report is what was loaded and what was left.
type Report struct {
	// CPUBackend is the loaded CPU variant ("icelake", "haswell", …) or
	// BuiltIn.
	CPUBackend string
	// Loaded are the paths of the ggml backend libraries mapped into the
	// process.
	Loaded []string
	// NotLoaded are the backend libraries in the searched folders that are
	// not mapped: CPU variants that lost to a better one, or a CUDA backend
	// whose dependencies (the driver's libcuda.so.1) are missing.
	NotLoaded []string
}

// CUDANotLoaded reports whether a libggml-cuda.so was found but not loaded.
func (r Report) CUDANotLoaded() bool {
	return slices.ContainsFunc(r.NotLoaded, func(p string) bool { return filepath.Base(p) == "libggml-cuda.so" })
}

// Inspect reads /proc/self/maps and lists the libggml-*.so files in dirs.
func Inspect(dirs []string) Report {
	maps, _ := os.ReadFile("/proc/self/maps")
	return inspect(maps, dirs)
}

func inspect(maps []byte, dirs []string) Report {
	r := Report{CPUBackend: BuiltIn}
	sc := bufio.NewScanner(bytes.NewReader(maps))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		// address perms offset dev inode path
		f := strings.Fields(sc.Text())
		if len(f) < 6 {
			continue
		}
		p := strings.Join(f[5:], " ")
		if !isBackend(filepath.Base(p)) || slices.Contains(r.Loaded, p) {
			continue
		}
		r.Loaded = append(r.Loaded, p)
		if v, ok := strings.CutPrefix(strings.TrimSuffix(filepath.Base(p), ".so"), "libggml-cpu-"); ok {
			r.CPUBackend = v
		}
	}
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			p := filepath.Join(d, e.Name())
			if !isBackend(e.Name()) || slices.ContainsFunc(r.Loaded, func(l string) bool { return sameFile(l, p) }) {
				continue
			}
			r.NotLoaded = append(r.NotLoaded, p)
		}
	}
	return r
}

func isBackend(name string) bool {
	return strings.HasPrefix(name, "libggml-") && strings.HasSuffix(name, ".so") && name != "libggml-base.so"
}

func sameFile(a, b string) bool {
	if a == b {
		return true
	}
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

// SearchDirs is where ggml's loader (ollama's ml/backend/ggml/ggml/src/ggml.go)
// looks for backend libraries: the folders of libraryPath (a PATH-style
// list), else <executable>/../lib/ollama.
func SearchDirs(libraryPath string) []string {
	if libraryPath != "" {
		return filepath.SplitList(libraryPath)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		exe = r
	}
	return []string{filepath.Join(filepath.Dir(exe), "..", "lib", "ollama")}
}
