package sources

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/helexa-ai/cortex/internal/neuronapi"
)

func TestParse(t *testing.T) {
	const digest = "270CBA1BD5109F42D03350F60406024560464DB173C0E387D91F0426D3BD256D"
	tests := []struct {
		name    string
		src     neuronapi.Source
		scheme  string
		url     string
		path    string
		base    string
		wantErr bool
	}{
		{name: "hf default revision", src: neuronapi.Source{URI: "hf://org/repo/model.gguf"},
			scheme: "hf", url: "https://hf.example/org/repo/resolve/main/model.gguf", base: "model.gguf"},
		{name: "hf revision and nested path", src: neuronapi.Source{URI: "hf://Org-1/re.po_2@abc123/sub dir/m.Q4_K_M.gguf"},
			scheme: "hf", url: "https://hf.example/Org-1/re.po_2/resolve/abc123/sub%20dir/m.Q4_K_M.gguf", base: "m.Q4_K_M.gguf"},
		{name: "https", src: neuronapi.Source{URI: "https://files.example/a/b.gguf?x=1#frag"},
			scheme: "https", url: "https://files.example/a/b.gguf?x=1", base: "b.gguf"},
		{name: "file", src: neuronapi.Source{URI: "file:///models/x/../m.gguf"}, scheme: "file", path: "/models/m.gguf", base: "m.gguf"},
		{name: "file localhost", src: neuronapi.Source{URI: "file://localhost/m.gguf"}, scheme: "file", path: "/m.gguf", base: "m.gguf"},
		{name: "sha256 normalised", src: neuronapi.Source{URI: "file:///m.gguf", SHA256: digest}, scheme: "file", path: "/m.gguf", base: "m.gguf"},
		{name: "empty", src: neuronapi.Source{}, wantErr: true},
		{name: "no scheme", src: neuronapi.Source{URI: "/models/m.gguf"}, wantErr: true},
		{name: "relative file", src: neuronapi.Source{URI: "file://models/m.gguf"}, wantErr: true},
		{name: "ftp", src: neuronapi.Source{URI: "ftp://x/m.gguf"}, wantErr: true},
		{name: "hf without file", src: neuronapi.Source{URI: "hf://org/repo"}, wantErr: true},
		{name: "hf empty revision", src: neuronapi.Source{URI: "hf://org/repo@/m.gguf"}, wantErr: true},
		{name: "hf traversal", src: neuronapi.Source{URI: "hf://org/repo/../m.gguf"}, wantErr: true},
		{name: "hf bad org", src: neuronapi.Source{URI: "hf://-org/repo/m.gguf"}, wantErr: true},
		{name: "https without host", src: neuronapi.Source{URI: "https:///m.gguf"}, wantErr: true},
		{name: "bad sha256", src: neuronapi.Source{URI: "file:///m.gguf", SHA256: "abc"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loc, err := Parse(tt.src, "https://hf.example/", "")
			if tt.wantErr {
				if err == nil {
					t.Fatalf("want error, got %+v", loc)
				}
				if Code(err) != neuronapi.CodeInvalidRequest || !IsPermanent(err) {
					t.Fatalf("error %v: code %s, want a permanent invalid_request", err, Code(err))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if loc.Scheme != tt.scheme || loc.URL != tt.url || loc.Path != tt.path || loc.Base != tt.base {
				t.Fatalf("got %+v", loc)
			}
			if tt.src.SHA256 != "" && loc.SHA256 != strings.ToLower(tt.src.SHA256) {
				t.Fatalf("sha256 %q not normalised", loc.SHA256)
			}
			if (loc.CacheKey == "") != (tt.scheme == "file") {
				t.Fatalf("cache key %q for scheme %s", loc.CacheKey, tt.scheme)
			}
		})
	}
}

func TestCacheKeyDependsOnRevision(t *testing.T) {
	a, _ := Parse(neuronapi.Source{URI: "hf://o/r/m.gguf"}, "", "")
	b, _ := Parse(neuronapi.Source{URI: "hf://o/r@v2/m.gguf"}, "", "")
	c, _ := Parse(neuronapi.Source{URI: "hf://o/r@main/m.gguf"}, "", "")
	if a.CacheKey == b.CacheKey {
		t.Fatal("different revisions share a cache key")
	}
	if a.CacheKey != c.CacheKey {
		t.Fatal("the default revision is main, so the keys must match")
	}
}

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in           string
		start, total int64
		ok           bool
	}{
		{"bytes 0-99/1000", 0, 1000, true},
		{"bytes 100-199/*", 100, 0, true},
		{"bytes 5-/10", 5, 10, true},
		{"bytes */1000", 0, 0, false},
		{"items 0-1/2", 0, 0, false},
		{"bytes x-1/2", 0, 0, false},
		{"bytes 0-1/y", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tt := range tests {
		start, total, ok := parseContentRange(tt.in)
		if ok != tt.ok || (ok && (start != tt.start || total != tt.total)) {
			t.Errorf("parseContentRange(%q) = %d %d %v", tt.in, start, total, ok)
		}
	}
}

// ggufBytes is a fake GGUF file: the magic, then random bytes.
func ggufBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(1, uint64(n)))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	copy(b, "GGUF")
	return b
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// fileServer serves content with range support and counts requests. When
// dropAfter > 0 the first full or ranged response is cut after that many
// bytes by aborting the connection.
type fileServer struct {
	*httptest.Server
	content   []byte
	etag      string
	dropAfter atomic.Int64
	gets      atomic.Int32
	ranged    atomic.Int32
	mu        sync.Mutex
	headers   []http.Header
	paths     []string
	gate      chan struct{} // when set, a response blocks after 1 MiB until closed
}

func newFileServer(t *testing.T, content []byte) *fileServer {
	fs := &fileServer{content: content, etag: `"v1"`}
	fs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fs.gets.Add(1)
		if r.Header.Get("Range") != "" {
			fs.ranged.Add(1)
		}
		fs.mu.Lock()
		fs.headers = append(fs.headers, r.Header.Clone())
		fs.paths = append(fs.paths, r.URL.Path)
		gate := fs.gate
		fs.mu.Unlock()
		w.Header().Set("ETag", fs.etag)
		out := w
		if n := fs.dropAfter.Swap(0); n > 0 {
			out = &dropWriter{ResponseWriter: w, left: n}
		}
		if gate != nil {
			out = &gateWriter{ResponseWriter: out, left: 1 << 20, gate: gate}
		}
		http.ServeContent(out, r, "m.gguf", time.Time{}, bytes.NewReader(fs.content))
	}))
	t.Cleanup(fs.Close)
	return fs
}

func (fs *fileServer) lastHeader() http.Header {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.headers[len(fs.headers)-1]
}

type dropWriter struct {
	http.ResponseWriter
	left int64
}

func (d *dropWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > d.left {
		n, _ := d.ResponseWriter.Write(p[:d.left])
		d.ResponseWriter.(http.Flusher).Flush()
		d.left = 0
		_ = n
		panic(http.ErrAbortHandler) // cuts the connection mid-body
	}
	d.left -= int64(len(p))
	return d.ResponseWriter.Write(p)
}

type gateWriter struct {
	http.ResponseWriter
	left int64
	gate chan struct{}
}

func (g *gateWriter) Write(p []byte) (int, error) {
	if g.left > 0 && int64(len(p)) >= g.left {
		n, err := g.ResponseWriter.Write(p[:g.left])
		g.left = 0
		if err != nil {
			return n, err
		}
		g.ResponseWriter.(http.Flusher).Flush()
		<-g.gate
		m, err := g.ResponseWriter.Write(p[n:])
		return n + m, err
	}
	g.left -= int64(len(p))
	return g.ResponseWriter.Write(p)
}

func newResolver(t *testing.T, dir string) *Resolver {
	t.Helper()
	return New(Options{CacheDir: dir, Backoff: time.Millisecond, Attempts: 3, HFEndpoint: "http://unused.invalid"})
}

func TestResolveFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.gguf")
	content := ggufBytes(4096)
	if err := os.WriteFile(good, content, 0o644); err != nil {
		t.Fatal(err)
	}
	notGGUF := filepath.Join(dir, "bad.gguf")
	if err := os.WriteFile(notGGUF, []byte("<html>"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := New(Options{})
	tests := []struct {
		name string
		src  neuronapi.Source
		code string // "" means success
	}{
		{"ok", neuronapi.Source{URI: "file://" + good}, ""},
		{"ok with digest", neuronapi.Source{URI: "file://" + good, SHA256: digestOf(content)}, ""},
		{"digest again (memoised)", neuronapi.Source{URI: "file://" + good, SHA256: digestOf(content)}, ""},
		{"wrong digest", neuronapi.Source{URI: "file://" + good, SHA256: digestOf([]byte("x"))}, neuronapi.CodeChecksumMismatch},
		{"missing", neuronapi.Source{URI: "file://" + filepath.Join(dir, "absent.gguf")}, neuronapi.CodeSourceUnavailable},
		{"directory", neuronapi.Source{URI: "file://" + dir}, neuronapi.CodeSourceUnavailable},
		{"not gguf", neuronapi.Source{URI: "file://" + notGGUF}, neuronapi.CodeSourceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := r.Resolve(context.Background(), tt.src, nil)
			if tt.code == "" {
				if err != nil || p != good {
					t.Fatalf("Resolve = %q, %v", p, err)
				}
				return
			}
			if err == nil || Code(err) != tt.code || !IsPermanent(err) {
				t.Fatalf("err = %v (code %s), want permanent %s", err, Code(err), tt.code)
			}
		})
	}
}

func TestDownloadAndOfflineCache(t *testing.T) {
	content := ggufBytes(3<<20 + 17)
	fs := newFileServer(t, content)
	cache := t.TempDir()
	r := newResolver(t, cache)
	src := neuronapi.Source{URI: fs.URL + "/files/m.gguf", SHA256: digestOf(content)}

	var mu sync.Mutex
	var seen []Progress
	p, err := r.Resolve(context.Background(), src, func(pr Progress) {
		mu.Lock()
		seen = append(seen, pr)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("cached file differs from the served one (err %v)", err)
	}
	if _, err := os.Stat(p + ".partial"); !os.IsNotExist(err) {
		t.Fatalf("partial file left behind: %v", err)
	}
	mu.Lock()
	last := seen[len(seen)-1]
	mu.Unlock()
	if last.Phase != PhaseVerifying || last.Done != int64(len(content)) {
		t.Fatalf("last progress %+v", last)
	}
	var m meta
	if err := readJSON(filepath.Join(filepath.Dir(p), "meta.json"), &m); err != nil || m.SHA256 != digestOf(content) || m.ETag != `"v1"` {
		t.Fatalf("sidecar %+v, %v", m, err)
	}

	// Offline: the server is gone, the cache answers.
	fs.Close()
	r2 := newResolver(t, cache)
	if p2, err := r2.Resolve(context.Background(), src, nil); err != nil || p2 != p {
		t.Fatalf("offline Resolve = %q, %v", p2, err)
	}
	if c, ok := r2.Cached(src); !ok || c != p {
		t.Fatalf("Cached = %q %v", c, ok)
	}
	// Without a digest the cached copy is fine too; with another digest
	// it is not (and the server is gone, so that fails).
	if _, err := r2.Resolve(context.Background(), neuronapi.Source{URI: src.URI}, nil); err != nil {
		t.Fatal(err)
	}
	_, err = r2.Resolve(context.Background(), neuronapi.Source{URI: src.URI, SHA256: digestOf([]byte("other"))}, nil)
	if err == nil || Code(err) != neuronapi.CodeSourceUnavailable {
		t.Fatalf("want source_unavailable, got %v", err)
	}
}

func TestResumeAfterDroppedConnection(t *testing.T) {
	content := ggufBytes(3 << 20)
	fs := newFileServer(t, content)
	fs.dropAfter.Store(1<<20 + 5)
	r := newResolver(t, t.TempDir())
	p, err := r.Resolve(context.Background(), neuronapi.Source{URI: fs.URL + "/m.gguf", SHA256: digestOf(content)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, content) {
		t.Fatal("resumed file differs")
	}
	if fs.gets.Load() != 2 || fs.ranged.Load() != 1 {
		t.Fatalf("gets=%d ranged=%d, want one full and one ranged request", fs.gets.Load(), fs.ranged.Load())
	}
	h := fs.lastHeader()
	if !strings.HasPrefix(h.Get("Range"), "bytes=") || h.Get("Range") == "bytes=0-" || h.Get("If-Range") != `"v1"` {
		t.Fatalf("resume headers Range=%q If-Range=%q", h.Get("Range"), h.Get("If-Range"))
	}
}

func TestResumeAcrossResolvers(t *testing.T) {
	content := ggufBytes(2 << 20)
	fs := newFileServer(t, content)
	fs.dropAfter.Store(1 << 20)
	cache := t.TempDir()
	src := neuronapi.Source{URI: fs.URL + "/m.gguf"}
	first := New(Options{CacheDir: cache, Attempts: 1})
	if _, err := first.Resolve(context.Background(), src, nil); err == nil {
		t.Fatal("the cut download must fail with one attempt")
	}
	// A new process finds the partial file and continues it.
	second := New(Options{CacheDir: cache, Attempts: 1})
	p, err := second.Resolve(context.Background(), src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, content) {
		t.Fatal("resumed file differs")
	}
	if want := "bytes=" + strconv.Itoa(1<<20) + "-"; fs.lastHeader().Get("Range") != want {
		t.Fatalf("Range = %q, want %q", fs.lastHeader().Get("Range"), want)
	}
}

func TestResumeChangedFileStartsOver(t *testing.T) {
	content := ggufBytes(2 << 20)
	fs := newFileServer(t, content)
	fs.dropAfter.Store(1 << 20)
	cache := t.TempDir()
	src := neuronapi.Source{URI: fs.URL + "/m.gguf"}
	if _, err := New(Options{CacheDir: cache, Attempts: 1}).Resolve(context.Background(), src, nil); err == nil {
		t.Fatal("want the cut download to fail")
	}
	// The file changed upstream: If-Range no longer matches, the server
	// sends it whole, and the partial bytes must not be kept.
	newContent := ggufBytes(2<<20 + 1)
	fs.content, fs.etag = newContent, `"v2"`
	p, err := New(Options{CacheDir: cache, Attempts: 1}).Resolve(context.Background(), neuronapi.Source{URI: src.URI, SHA256: digestOf(newContent)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, newContent) {
		t.Fatal("file mixes old and new content")
	}
}

func TestChecksumMismatch(t *testing.T) {
	fs := newFileServer(t, ggufBytes(1<<20))
	cache := t.TempDir()
	r := newResolver(t, cache)
	_, err := r.Resolve(context.Background(), neuronapi.Source{URI: fs.URL + "/m.gguf", SHA256: digestOf([]byte("expected"))}, nil)
	if err == nil || Code(err) != neuronapi.CodeChecksumMismatch || !IsPermanent(err) {
		t.Fatalf("err = %v (code %s), want checksum_mismatch", err, Code(err))
	}
	matches, _ := filepath.Glob(filepath.Join(cache, "*", "m.gguf*"))
	if len(matches) != 0 {
		t.Fatalf("files left after a checksum mismatch: %v", matches)
	}
	if fs.gets.Load() != 1 {
		t.Fatalf("a checksum mismatch must not be retried: %d requests", fs.gets.Load())
	}
}

func TestDownloadNotGGUF(t *testing.T) {
	fs := newFileServer(t, []byte("<html>login</html>"))
	_, err := newResolver(t, t.TempDir()).Resolve(context.Background(), neuronapi.Source{URI: fs.URL + "/m.gguf"}, nil)
	if err == nil || !strings.Contains(err.Error(), "not a GGUF") {
		t.Fatalf("err = %v", err)
	}
}

func TestHTTPErrors(t *testing.T) {
	var calls atomic.Int32
	status := atomic.Int32{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	tests := []struct {
		status    int
		calls     int32
		permanent bool
	}{
		{http.StatusNotFound, 1, true},
		{http.StatusUnauthorized, 1, true},
		{http.StatusBadRequest, 1, true},
		{http.StatusServiceUnavailable, 3, false},
		{http.StatusTooManyRequests, 3, false},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			calls.Store(0)
			status.Store(int32(tt.status))
			_, err := newResolver(t, t.TempDir()).Resolve(context.Background(), neuronapi.Source{URI: srv.URL + "/m.gguf"}, nil)
			if err == nil || Code(err) != neuronapi.CodeSourceUnavailable || IsPermanent(err) != tt.permanent {
				t.Fatalf("err = %v permanent=%v", err, IsPermanent(err))
			}
			if calls.Load() != tt.calls {
				t.Fatalf("%d requests, want %d", calls.Load(), tt.calls)
			}
		})
	}
}

func TestHFSource(t *testing.T) {
	content := ggufBytes(1000)
	fs := newFileServer(t, content)
	r := New(Options{CacheDir: t.TempDir(), HFEndpoint: fs.URL, HFToken: "secret"})
	p, err := r.Resolve(context.Background(), neuronapi.Source{URI: "hf://org/repo@v1.0/dir/m.gguf"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(p) != "m.gguf" {
		t.Fatalf("path %s", p)
	}
	fs.mu.Lock()
	path := fs.paths[0]
	fs.mu.Unlock()
	if path != "/org/repo/resolve/v1.0/dir/m.gguf" {
		t.Fatalf("requested %s", path)
	}
	if got := fs.lastHeader().Get("Authorization"); got != "Bearer secret" {
		t.Fatalf("Authorization = %q", got)
	}
}

func TestSingleFlight(t *testing.T) {
	content := ggufBytes(3 << 20)
	fs := newFileServer(t, content)
	fs.gate = make(chan struct{})
	r := newResolver(t, t.TempDir())
	src := neuronapi.Source{URI: fs.URL + "/m.gguf"}

	const n = 8
	var joined sync.WaitGroup
	joined.Add(n)
	var wg sync.WaitGroup
	paths := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var once sync.Once
			// The first progress a caller sees proves it joined the
			// download (joiners get the latest progress at once).
			paths[i], errs[i] = r.Resolve(context.Background(), src, func(p Progress) {
				if p.Done > 0 {
					once.Do(joined.Done)
				}
			})
		}()
	}
	joined.Wait()
	close(fs.gate)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || paths[i] != paths[0] {
			t.Fatalf("caller %d: %q %v", i, paths[i], errs[i])
		}
	}
	if fs.gets.Load() != 1 {
		t.Fatalf("%d downloads for %d concurrent callers", fs.gets.Load(), n)
	}
}

func TestAbandonedDownloadResumes(t *testing.T) {
	content := ggufBytes(3 << 20)
	fs := newFileServer(t, content)
	fs.gate = make(chan struct{})
	r := newResolver(t, t.TempDir())
	src := neuronapi.Source{URI: fs.URL + "/m.gguf"}

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := r.Resolve(ctx, src, func(p Progress) {
			if p.Done > 0 {
				cancel() // the only caller leaves midway
			}
		})
		errc <- err
	}()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	fs.mu.Lock()
	close(fs.gate) // lets the abandoned response finish writing (to nobody)
	fs.gate = nil
	fs.mu.Unlock()
	p, err := r.Resolve(context.Background(), src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, content) {
		t.Fatal("file differs after an abandoned download")
	}
	if fs.ranged.Load() != 1 {
		t.Fatalf("the second download must resume the abandoned one's partial file (%d ranged requests)", fs.ranged.Load())
	}
}

func TestOpenRemote(t *testing.T) {
	content := ggufBytes(3<<20 + 3)
	fs := newFileServer(t, content)
	r := New(Options{CacheDir: t.TempDir()})
	f, err := r.Open(context.Background(), neuronapi.Source{URI: fs.URL + "/m.gguf"})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Size() != int64(len(content)) {
		t.Fatalf("size %d", f.Size())
	}
	buf := make([]byte, 100)
	if _, err := f.ReadAt(buf, 2<<20); err != nil || !bytes.Equal(buf, content[2<<20:2<<20+100]) {
		t.Fatalf("ReadAt: %v", err)
	}
	if fs.ranged.Load() != fs.gets.Load() {
		t.Fatal("a remote open must only make range requests")
	}
}

func TestOpenLocalAndCached(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "m.gguf")
	content := ggufBytes(100)
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
	r := New(Options{CacheDir: t.TempDir()})
	f, err := r.Open(context.Background(), neuronapi.Source{URI: "file://" + p})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Size() != 100 {
		t.Fatalf("size %d", f.Size())
	}
	if _, err := r.Open(context.Background(), neuronapi.Source{URI: "file://" + filepath.Join(dir, "absent")}); err == nil {
		t.Fatal("want error for a missing file")
	}
	fs := newFileServer(t, content)
	src := neuronapi.Source{URI: fs.URL + "/m.gguf"}
	if _, err := r.Resolve(context.Background(), src, nil); err != nil {
		t.Fatal(err)
	}
	before := fs.gets.Load()
	cf, err := r.Open(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	defer cf.Close()
	if _, ok := cf.(*localFile); !ok || fs.gets.Load() != before {
		t.Fatalf("a cached source must open from disk (%T, %d requests)", cf, fs.gets.Load()-before)
	}
}

// A header read the server refuses with a 4xx is permanent (a typo'd path
// never fixes itself); a 5xx or 429 may pass.
func TestOpenRemoteClassifiesStatus(t *testing.T) {
	for _, tc := range []struct {
		status    int
		permanent bool
	}{{404, true}, {403, true}, {429, false}, {503, false}} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(tc.status) }))
		r := New(Options{})
		_, err := r.Open(context.Background(), neuronapi.Source{URI: srv.URL + "/m.gguf"})
		srv.Close()
		if err == nil || IsPermanent(err) != tc.permanent {
			t.Errorf("status %d: err %v, permanent %v; want permanent %v", tc.status, err, IsPermanent(err), tc.permanent)
		}
	}
}
