package ggmllibs

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestInspect(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"libggml-cpu-icelake.so", "libggml-cpu-haswell.so", "libggml-cuda.so", "libggml-base.so", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	icelake := filepath.Join(dir, "libggml-cpu-icelake.so")
	maps := "7f00-7f01 r-xp 00000000 fd:00 12 " + icelake + "\n" +
		"7f01-7f02 r--p 00001000 fd:00 12 " + icelake + "\n" +
		"7f02-7f03 r-xp 00000000 fd:00 13 /usr/lib/x86_64-linux-gnu/libc.so.6\n" +
		"7f03-7f04 rw-p 00000000 00:00 0 \n"

	tests := []struct {
		name       string
		maps       string
		cpu        string
		loaded     []string
		notLoaded  []string
		cudaMissed bool
	}{
		{"variant loaded, cuda left", maps, "icelake", []string{icelake},
			[]string{filepath.Join(dir, "libggml-cpu-haswell.so"), filepath.Join(dir, "libggml-cuda.so")}, true},
		{"nothing loaded", "7f02-7f03 r-xp 00000000 fd:00 13 /usr/lib/libc.so.6\n", BuiltIn, nil,
			[]string{filepath.Join(dir, "libggml-cpu-haswell.so"), filepath.Join(dir, "libggml-cpu-icelake.so"), filepath.Join(dir, "libggml-cuda.so")}, true},
		{"empty maps", "", BuiltIn, nil, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dirs := []string{dir, filepath.Join(dir, "missing")}
			if tc.maps == "" {
				dirs = nil
			}
			r := inspect([]byte(tc.maps), dirs)
			if r.CPUBackend != tc.cpu || !slices.Equal(r.Loaded, tc.loaded) || !slices.Equal(r.NotLoaded, tc.notLoaded) || r.CUDANotLoaded() != tc.cudaMissed {
				t.Fatalf("got %+v (cuda not loaded %v), want cpu %q loaded %v not loaded %v", r, r.CUDANotLoaded(), tc.cpu, tc.loaded, tc.notLoaded)
			}
		})
	}
}

func TestSearchDirs(t *testing.T) {
	if got := SearchDirs("/a/lib/ollama:/b"); !slices.Equal(got, []string{"/a/lib/ollama", "/b"}) {
		t.Fatalf("SearchDirs = %v", got)
	}
	if got := SearchDirs(""); len(got) != 1 || filepath.Base(filepath.Dir(got[0])) != "lib" {
		t.Fatalf("SearchDirs(\"\") = %v, want <exe>/../lib/ollama", got)
	}
}
