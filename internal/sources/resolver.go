package sources

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/helexa-ai/cortex/internal/neuronapi"
)

// ggufMagic opens every GGUF file.
var ggufMagic = []byte("GGUF")

// Phases reported through Progress.
const (
	PhaseDownloading = "downloading"
	PhaseVerifying   = "verifying"
)

// Progress is a download's progress.
type Progress struct {
	Phase string
	// Done and Total are bytes; Total is 0 when the server did not say.
	Done, Total int64
}

// Options configures a Resolver.
type Options struct {
	// CacheDir holds downloaded files (required for remote sources).
	CacheDir string
	// Client does the downloads (nil: a client without an overall
	// timeout; stalls are caught by StallTimeout instead).
	Client *http.Client
	// HFEndpoint replaces https://huggingface.co for hf:// sources.
	HFEndpoint string
	// HFToken is sent as a bearer token to the HF endpoint.
	HFToken string
	// Attempts is how many times a download is tried, resuming each time
	// (0: 5).
	Attempts int
	// Backoff is the wait before the second attempt, doubling after
	// (0: 1s).
	Backoff time.Duration
	// StallTimeout aborts an attempt that receives nothing for this long
	// (0: 60s).
	StallTimeout time.Duration
	// LogInterval is how often a running download logs its progress
	// (0: 10s).
	LogInterval time.Duration
}

// Resolver resolves sources to local files. It is safe for concurrent use;
// concurrent resolutions of one remote file share one download.
type Resolver struct {
	opts Options

	mu      sync.Mutex
	flights map[string]*flight
	// abandoned are canceled flights that may still be writing.
	abandoned map[string]*flight
	// verified memoises sha256 checks of file:// sources by path, size and
	// modification time, so a reload does not rehash a large file.
	verified map[string]string
}

// New returns a Resolver.
func New(opts Options) *Resolver {
	if opts.Client == nil {
		opts.Client = &http.Client{Transport: http.DefaultTransport}
	}
	if opts.Attempts <= 0 {
		opts.Attempts = 5
	}
	if opts.Backoff <= 0 {
		opts.Backoff = time.Second
	}
	if opts.StallTimeout <= 0 {
		opts.StallTimeout = 60 * time.Second
	}
	if opts.LogInterval <= 0 {
		opts.LogInterval = 10 * time.Second
	}
	return &Resolver{opts: opts, flights: map[string]*flight{}, abandoned: map[string]*flight{}, verified: map[string]string{}}
}

// Parse parses a source with the resolver's HF settings.
func (r *Resolver) Parse(src neuronapi.Source) (Location, error) {
	return Parse(src, r.opts.HFEndpoint, r.opts.HFToken)
}

// Cached returns the local file of a source when no download is needed: a
// file:// source (not checked), or a remote source already in the cache with
// a matching digest.
func (r *Resolver) Cached(src neuronapi.Source) (string, bool) {
	loc, err := r.Parse(src)
	if err != nil {
		return "", false
	}
	if loc.Scheme == "file" {
		return loc.Path, true
	}
	if r.opts.CacheDir == "" {
		return "", false
	}
	p, ok := r.cached(loc)
	return p, ok
}

// Resolve returns a local GGUF file for src, downloading it into the cache
// when it is remote and not cached yet. onProgress (may be nil) is called
// from the downloading goroutine; it must not block.
func (r *Resolver) Resolve(ctx context.Context, src neuronapi.Source, onProgress func(Progress)) (string, error) {
	loc, err := r.Parse(src)
	if err != nil {
		return "", err
	}
	if loc.Scheme == "file" {
		return loc.Path, r.checkLocal(loc)
	}
	if r.opts.CacheDir == "" {
		return "", invalid("no cache directory is configured for remote sources")
	}
	if p, ok := r.cached(loc); ok {
		return p, nil
	}
	return r.join(ctx, loc, onProgress)
}

// checkLocal checks a file:// source: a regular GGUF file, with the digest
// when one is given.
func (r *Resolver) checkLocal(loc Location) error {
	fi, err := os.Stat(loc.Path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return unavailable(true, "model file %s does not exist", loc.Path)
		}
		return unavailable(true, "checking model file %s: %v", loc.Path, err)
	}
	if !fi.Mode().IsRegular() {
		return unavailable(true, "model file %s is not a regular file", loc.Path)
	}
	f, err := os.Open(loc.Path)
	if err != nil {
		return unavailable(true, "opening model file %s: %v", loc.Path, err)
	}
	defer func() { _ = f.Close() }()
	if err := checkMagic(f, loc.Path); err != nil {
		return err
	}
	if loc.SHA256 == "" {
		return nil
	}
	memo := loc.Path + "\x00" + strconv.FormatInt(fi.Size(), 10) + "\x00" + fi.ModTime().String()
	r.mu.Lock()
	sum, ok := r.verified[memo]
	r.mu.Unlock()
	if !ok {
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(f, 0, fi.Size())); err != nil {
			return unavailable(false, "hashing model file %s: %v", loc.Path, err)
		}
		sum = hex.EncodeToString(h.Sum(nil))
		r.mu.Lock()
		r.verified[memo] = sum
		r.mu.Unlock()
	}
	if sum != loc.SHA256 {
		return &Error{Code: neuronapi.CodeChecksumMismatch, Permanent: true,
			Err: fmt.Errorf("model file %s has sha256 %s, expected %s", loc.Path, sum, loc.SHA256)}
	}
	return nil
}

func checkMagic(r io.ReaderAt, name string) error {
	var magic [4]byte
	if _, err := r.ReadAt(magic[:], 0); err != nil || !bytes.Equal(magic[:], ggufMagic) {
		return unavailable(true, "%s is not a GGUF file (bad magic)", name)
	}
	return nil
}

// meta is the sidecar of a cache entry.
type meta struct {
	URL    string    `json:"url"`
	SHA256 string    `json:"sha256"`
	ETag   string    `json:"etag,omitempty"`
	Size   int64     `json:"size"`
	Time   time.Time `json:"downloadedAt"`
}

// partialMeta is the sidecar of an unfinished download: what the resumed
// request must match for its bytes to continue the partial file.
type partialMeta struct {
	URL          string `json:"url"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"lastModified,omitempty"`
	Total        int64  `json:"total,omitempty"`
}

type entry struct {
	dir, final, partial, meta, partialMeta string
}

func (r *Resolver) entry(loc Location) entry {
	dir := filepath.Join(r.opts.CacheDir, loc.CacheKey)
	final := filepath.Join(dir, loc.Base)
	return entry{
		dir:         dir,
		final:       final,
		partial:     final + ".partial",
		meta:        filepath.Join(dir, "meta.json"),
		partialMeta: final + ".partial.json",
	}
}

// cached returns the cached file of loc when it is complete and matches the
// wanted digest.
func (r *Resolver) cached(loc Location) (string, bool) {
	e := r.entry(loc)
	var m meta
	if err := readJSON(e.meta, &m); err != nil {
		return "", false
	}
	fi, err := os.Stat(e.final)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != m.Size || m.URL != loc.URL {
		return "", false
	}
	if loc.SHA256 != "" && !strings.EqualFold(loc.SHA256, m.SHA256) {
		return "", false
	}
	return e.final, true
}

// flight is one download shared by every caller resolving the same file.
type flight struct {
	done   chan struct{}
	path   string
	err    error
	cancel context.CancelFunc

	mu        sync.Mutex
	waiters   int
	nextID    int
	listeners map[int]func(Progress)
	last      *Progress
}

func (f *flight) report(p Progress) {
	f.mu.Lock()
	f.last = &p
	ls := make([]func(Progress), 0, len(f.listeners))
	for _, l := range f.listeners {
		ls = append(ls, l)
	}
	f.mu.Unlock()
	for _, l := range ls {
		l(p)
	}
}

// join waits for the shared download of loc, starting it if none runs. The
// download outlives any one caller but is canceled when every caller has
// gone, leaving its partial file to resume from.
func (r *Resolver) join(ctx context.Context, loc Location, onProgress func(Progress)) (string, error) {
	r.mu.Lock()
	f := r.flights[loc.CacheKey]
	if f == nil {
		dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		f = &flight{done: make(chan struct{}), cancel: cancel, listeners: map[int]func(Progress){}}
		prev := r.abandoned[loc.CacheKey]
		r.flights[loc.CacheKey] = f
		go func() {
			// An abandoned download of the same file may still be
			// winding down; two writers must never share a partial file.
			if prev != nil {
				<-prev.done
			}
			path, err := r.download(dctx, loc, f.report)
			cancel()
			r.mu.Lock()
			if r.flights[loc.CacheKey] == f {
				delete(r.flights, loc.CacheKey)
			}
			if r.abandoned[loc.CacheKey] == f {
				delete(r.abandoned, loc.CacheKey)
			}
			r.mu.Unlock()
			f.path, f.err = path, err
			close(f.done)
		}()
	}
	f.mu.Lock()
	f.waiters++
	id := f.nextID
	f.nextID++
	if onProgress != nil {
		f.listeners[id] = onProgress
		if f.last != nil {
			onProgress(*f.last)
		}
	}
	f.mu.Unlock()
	r.mu.Unlock()

	select {
	case <-f.done:
		return f.path, f.err
	case <-ctx.Done():
		r.mu.Lock()
		f.mu.Lock()
		delete(f.listeners, id)
		f.waiters--
		last := f.waiters == 0
		f.mu.Unlock()
		if last && r.flights[loc.CacheKey] == f {
			// Later callers start a fresh flight that resumes from the
			// partial file once this one has stopped writing it.
			delete(r.flights, loc.CacheKey)
			r.abandoned[loc.CacheKey] = f
			f.cancel()
		}
		r.mu.Unlock()
		return "", ctx.Err()
	}
}

// download fetches loc into the cache, resuming a partial file left by an
// earlier attempt or process.
func (r *Resolver) download(ctx context.Context, loc Location, report func(Progress)) (string, error) {
	log := logr.FromContextOrDiscard(ctx).WithValues("url", loc.URL)
	e := r.entry(loc)
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		return "", unavailable(false, "creating cache directory %s: %v", e.dir, err)
	}
	// Another process (or an earlier flight) may have finished meanwhile.
	if p, ok := r.cached(loc); ok {
		return p, nil
	}
	// A complete file with the wrong digest or no sidecar is stale.
	_ = os.Remove(e.final)
	_ = os.Remove(e.meta)

	st := &dlState{loc: loc, e: e, report: report, log: log, logEvery: r.opts.LogInterval}
	backoff := r.opts.Backoff
	var lastErr error
	for attempt := range r.opts.Attempts {
		if attempt > 0 {
			log.Info("Retrying download", "attempt", attempt+1, "after", backoff.String(), "error", lastErr.Error())
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(backoff):
			}
			backoff *= 2
		}
		err := r.fetch(ctx, st)
		if err == nil {
			lastErr = nil
			break
		}
		lastErr = err
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if IsPermanent(err) {
			return "", err
		}
	}
	if lastErr != nil {
		var se *Error
		if errors.As(lastErr, &se) {
			return "", lastErr
		}
		return "", unavailable(false, "downloading %s: %v", loc.URL, lastErr)
	}

	report(Progress{Phase: PhaseVerifying, Done: st.done, Total: st.done})
	sum := hex.EncodeToString(st.h.Sum(nil))
	if loc.SHA256 != "" && sum != loc.SHA256 {
		_ = os.Remove(e.partial)
		_ = os.Remove(e.partialMeta)
		return "", &Error{Code: neuronapi.CodeChecksumMismatch, Permanent: true,
			Err: fmt.Errorf("download of %s has sha256 %s, expected %s", loc.URL, sum, loc.SHA256)}
	}
	f, err := os.Open(e.partial)
	if err != nil {
		return "", unavailable(false, "opening downloaded file: %v", err)
	}
	err = checkMagic(f, loc.URL)
	_ = f.Close()
	if err != nil {
		_ = os.Remove(e.partial)
		_ = os.Remove(e.partialMeta)
		return "", err
	}
	if err := writeJSON(e.meta, meta{URL: loc.URL, SHA256: sum, ETag: st.etag, Size: st.done, Time: time.Now().UTC()}); err != nil {
		return "", unavailable(false, "writing cache metadata: %v", err)
	}
	if err := os.Rename(e.partial, e.final); err != nil {
		return "", unavailable(false, "moving download into place: %v", err)
	}
	_ = os.Remove(e.partialMeta)
	log.Info("Downloaded model", "path", e.final, "bytes", st.done, "sha256", sum)
	return e.final, nil
}

// dlState carries a download across attempts.
type dlState struct {
	loc      Location
	e        entry
	report   func(Progress)
	log      logr.Logger
	logEvery time.Duration

	h      hash.Hash // over the first `hashed` bytes of the partial file
	hashed int64
	done   int64
	total  int64
	etag   string
}

// fetch runs one attempt: it continues the partial file with a ranged
// request when the server can, and starts over otherwise.
func (r *Resolver) fetch(ctx context.Context, st *dlState) error {
	offset := int64(0)
	var pm partialMeta
	if fi, err := os.Stat(st.e.partial); err == nil && readJSON(st.e.partialMeta, &pm) == nil && pm.URL == st.loc.URL {
		offset = fi.Size()
	}
	if offset == 0 {
		pm = partialMeta{URL: st.loc.URL}
	}

	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, st.loc.URL, nil)
	if err != nil {
		return invalid("building request for %s: %v", st.loc.URL, err)
	}
	for k, v := range st.loc.Header {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "cortex-neuron")
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
		// If-Range makes the server send the whole file instead of a range
		// of a different version.
		if pm.ETag != "" {
			req.Header.Set("If-Range", pm.ETag)
		} else if pm.LastModified != "" {
			req.Header.Set("If-Range", pm.LastModified)
		}
	}
	stall := time.AfterFunc(r.opts.StallTimeout, cancel)
	defer stall.Stop()
	resp, err := r.opts.Client.Do(req)
	if err != nil {
		return fmt.Errorf("requesting %s: %w", st.loc.URL, err)
	}
	defer func() { _ = resp.Body.Close() }()

	switch {
	case resp.StatusCode == http.StatusPartialContent && offset > 0:
		start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != offset {
			// Not the range asked for: start over on the next attempt.
			_ = os.Remove(st.e.partial)
			return fmt.Errorf("server answered range %q to a request from byte %d", resp.Header.Get("Content-Range"), offset)
		}
		st.total = total
		st.log.Info("Resuming download", "from", offset, "total", total)
	case resp.StatusCode == http.StatusOK:
		offset = 0
		st.total = max(resp.ContentLength, 0)
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		_ = os.Remove(st.e.partial)
		return fmt.Errorf("server refused to resume at byte %d", offset)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		hint := ""
		if st.loc.Scheme == "hf" && len(st.loc.Header) == 0 {
			hint = " (gated or private repository? set HF_TOKEN)"
		}
		return unavailable(true, "downloading %s: %s%s", st.loc.URL, resp.Status, hint)
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return unavailable(true, "downloading %s: %s", st.loc.URL, resp.Status)
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusRequestTimeout:
		return unavailable(true, "downloading %s: %s", st.loc.URL, resp.Status)
	default:
		return fmt.Errorf("downloading %s: %s", st.loc.URL, resp.Status)
	}

	pm.ETag = resp.Header.Get("ETag")
	if strings.HasPrefix(pm.ETag, "W/") {
		pm.ETag = "" // weak validators cannot guard a byte range
	}
	pm.LastModified = resp.Header.Get("Last-Modified")
	pm.Total = st.total
	st.etag = pm.ETag
	if err := writeJSON(st.e.partialMeta, pm); err != nil {
		return unavailable(false, "writing download metadata: %v", err)
	}

	flags := os.O_CREATE | os.O_WRONLY
	if offset == 0 {
		flags |= os.O_TRUNC
	} else {
		flags |= os.O_APPEND
	}
	f, err := os.OpenFile(st.e.partial, flags, 0o644)
	if err != nil {
		return unavailable(false, "opening %s: %v", st.e.partial, err)
	}
	defer func() { _ = f.Close() }()
	if err := st.rehash(offset); err != nil {
		return err
	}

	st.done = offset
	st.report(Progress{Phase: PhaseDownloading, Done: st.done, Total: st.total})
	buf := make([]byte, 1<<20)
	// The first bytes are reported at once, then at most every 100ms.
	var lastReport time.Time
	lastLog := time.Now()
	logDone := st.done
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			stall.Reset(r.opts.StallTimeout)
			if _, err := f.Write(buf[:n]); err != nil {
				return unavailable(false, "writing %s: %v", st.e.partial, err)
			}
			st.h.Write(buf[:n])
			st.done += int64(n)
			st.hashed = st.done
			if now := time.Now(); now.Sub(lastReport) >= 100*time.Millisecond {
				lastReport = now
				st.report(Progress{Phase: PhaseDownloading, Done: st.done, Total: st.total})
				if now.Sub(lastLog) >= st.logEvery {
					rate := float64(st.done-logDone) / now.Sub(lastLog).Seconds()
					st.log.Info("Downloading model", "bytes", st.done, "total", st.total, "percent", percent(st.done, st.total), "bytesPerSecond", int64(rate))
					lastLog, logDone = now, st.done
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if ctx.Err() == nil && actx.Err() != nil {
				return fmt.Errorf("download stalled: nothing received for %s", r.opts.StallTimeout)
			}
			return fmt.Errorf("reading %s at byte %d: %w", st.loc.URL, st.done, rerr)
		}
	}
	if err := f.Sync(); err != nil {
		return unavailable(false, "syncing %s: %v", st.e.partial, err)
	}
	if st.total > 0 && st.done != st.total {
		return fmt.Errorf("download of %s ended at byte %d of %d", st.loc.URL, st.done, st.total)
	}
	st.report(Progress{Phase: PhaseDownloading, Done: st.done, Total: max(st.total, st.done)})
	return nil
}

// rehash makes st.h cover exactly the first offset bytes of the partial
// file, reading them back when this attempt resumes a file it did not
// write itself.
func (st *dlState) rehash(offset int64) error {
	if st.h != nil && st.hashed == offset {
		return nil
	}
	st.h, st.hashed = sha256.New(), 0
	if offset == 0 {
		return nil
	}
	f, err := os.Open(st.e.partial)
	if err != nil {
		return unavailable(false, "reading %s: %v", st.e.partial, err)
	}
	defer func() { _ = f.Close() }()
	n, err := io.Copy(st.h, io.LimitReader(f, offset))
	if err != nil || n != offset {
		return unavailable(false, "rehashing %s: read %d of %d bytes: %v", st.e.partial, n, offset, err)
	}
	st.hashed = offset
	return nil
}

func percent(done, total int64) int {
	if total <= 0 {
		return 0
	}
	return int(min(done*100/total, 100))
}

// parseContentRange parses "bytes start-end/total" (total may be "*").
func parseContentRange(s string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	a, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil || start < 0 {
		return 0, 0, false
	}
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil || total < 0 {
			return 0, 0, false
		}
	}
	return start, total, true
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// writeJSON replaces path atomically.
func writeJSON(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
