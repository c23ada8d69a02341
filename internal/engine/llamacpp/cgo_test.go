package llamacpp

import (
	"os"
	"regexp"
	"slices"
	"sync"
	"testing"

	"github.com/helexa-ai/cortex/internal/engine"
)

// TestPinnedHeaders checks that the headers this package compiles against
// belong to the module version linked in: pinnedModule, the version in
// cgo.go's include paths and go.mod's github.com/ollama/ollama must agree.
// The link itself (hack/llama-headers.sh) is rebuilt by make; a plain go
// build after a module upgrade would otherwise use the old link.
func TestPinnedHeaders(t *testing.T) {
	mod, err := os.ReadFile("../../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	linked := ""
	if m := regexp.MustCompile(`(?m)^\s*github\.com/ollama/ollama (v\S+)`).FindSubmatch(mod); m != nil {
		linked = string(m[1])
	}
	if linked != pinnedModule {
		t.Errorf("go.mod requires github.com/ollama/ollama %q, the engine's headers are %q's: follow 'Upgrading llama.cpp' in docs/development.md", linked, pinnedModule)
	}
	src, err := os.ReadFile("cgo.go")
	if err != nil {
		t.Fatal(err)
	}
	var versions []string
	for _, m := range regexp.MustCompile(`#cgo CPPFLAGS: -I\$\{SRCDIR\}/_pinned/ollama@([^/]+)/`).FindAllStringSubmatch(string(src), -1) {
		versions = append(versions, m[1])
	}
	versions = slices.Compact(versions)
	if len(versions) != 1 || versions[0] != pinnedModule {
		t.Errorf("cgo.go's include paths name versions %v, want only %s", versions, pinnedModule)
	}
	if _, err := os.Stat("_pinned/ollama@" + pinnedModule + "/llama/llama.cpp/include/llama.h"); err != nil {
		t.Errorf("the header link is missing (run make llama-headers): %v", err)
	}
}

// TestLoadProgress checks the progress callback through the C trampoline:
// it sees the load finish, and a panic in it does not escape into C.
func TestLoadProgress(t *testing.T) {
	var mu sync.Mutex
	var seen []float32
	loadStories(t, engine.LoadParams{Progress: func(f float32) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, f)
	}})
	mu.Lock()
	if len(seen) == 0 || seen[len(seen)-1] != 1 {
		t.Errorf("progress %v, want it to end at 1", seen)
	}
	mu.Unlock()
	m := loadStories(t, engine.LoadParams{Progress: func(float32) { panic("progress") }})
	if _, res := generate(t, m, "Once upon a time", engine.GenerateRequest{MaxTokens: 2}); res.CompletionTokens == 0 {
		t.Error("a model loaded with a panicking progress callback does not generate")
	}
}

// TestBatch fills a batch to its size and checks what llama.cpp will read.
func TestBatch(t *testing.T) {
	b, err := newCBatch(3)
	if err != nil {
		t.Fatal(err)
	}
	defer b.free()
	b.add(7, 0, false, 2)
	b.add(8, 1, true, 2)
	b.clear()
	b.add(9, 5, true, 1)
	if b.len() != 1 || b.tokens[0] != 9 || b.pos[0] != 5 || b.nSeq[0] != 1 || *b.seq[0] != 1 || b.logits[0] != 1 {
		t.Errorf("batch after clear and add: len %d token %d pos %d seq %d logits %d", b.len(), b.tokens[0], b.pos[0], *b.seq[0], b.logits[0])
	}
	b.add(1, 6, false, 1)
	b.add(2, 7, false, 1)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("a fourth token fitted in a batch of 3")
			}
		}()
		b.add(3, 8, false, 1)
	}()
	b.free()
	b.free() // idempotent
}
