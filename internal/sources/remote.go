package sources

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"

	"github.com/helexa-ai/cortex/internal/neuronapi"
)

// File is a source opened for random access.
type File interface {
	io.ReaderAt
	io.Closer
	// Size is the file's length in bytes.
	Size() int64
}

// Open opens src for random access without downloading it: a file:// source
// or a cached copy is read from disk, a remote file with HTTP range
// requests. It is meant for reading a GGUF header.
func (r *Resolver) Open(ctx context.Context, src neuronapi.Source) (File, error) {
	loc, err := r.Parse(src)
	if err != nil {
		return nil, err
	}
	path := loc.Path
	if loc.Scheme != "file" {
		if p, ok := r.cached(loc); ok && r.opts.CacheDir != "" {
			path = p
		}
	}
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, unavailable(true, "model file %s does not exist", path)
			}
			return nil, unavailable(true, "opening model file %s: %v", path, err)
		}
		fi, err := f.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			_ = f.Close()
			return nil, unavailable(true, "model file %s is not a regular file", path)
		}
		return &localFile{f: f, size: fi.Size()}, nil
	}
	return OpenRemote(ctx, r.opts.Client, loc.URL, loc.Header)
}

type localFile struct {
	f    *os.File
	size int64
}

func (l *localFile) ReadAt(p []byte, off int64) (int, error) { return l.f.ReadAt(p, off) }
func (l *localFile) Close() error                            { return l.f.Close() }
func (l *localFile) Size() int64                             { return l.size }

// Remote reads a remote file with HTTP range requests, in blocks it keeps a
// few of, so the many small reads of a header parser cost few round trips.
type Remote struct {
	ctx    context.Context
	client *http.Client
	url    string
	header http.Header
	size   int64

	mu     sync.Mutex
	blocks map[int64][]byte
	order  []int64 // least recently used first
}

const (
	remoteBlock     = 2 << 20
	remoteMaxBlocks = 16
)

// OpenRemote opens url for ranged reads. The first block is fetched at once,
// which also learns the file's size. ctx bounds every later read.
func OpenRemote(ctx context.Context, client *http.Client, url string, header http.Header) (*Remote, error) {
	if client == nil {
		client = http.DefaultClient
	}
	rf := &Remote{ctx: ctx, client: client, url: url, header: header, size: -1, blocks: map[int64][]byte{}}
	if _, err := rf.block(0); err != nil {
		return nil, err
	}
	return rf, nil
}

// Size is the file's length.
func (rf *Remote) Size() int64 { return rf.size }

// Close drops the cached blocks.
func (rf *Remote) Close() error {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	rf.blocks, rf.order = map[int64][]byte{}, nil
	return nil
}

// ReadAt implements io.ReaderAt.
func (rf *Remote) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= rf.size {
			return n, io.EOF
		}
		start := pos / remoteBlock * remoteBlock
		b, err := rf.block(start)
		if err != nil {
			return n, err
		}
		if pos-start >= int64(len(b)) {
			return n, io.EOF
		}
		n += copy(p[n:], b[pos-start:])
	}
	return n, nil
}

func (rf *Remote) block(start int64) ([]byte, error) {
	rf.mu.Lock()
	if b, ok := rf.blocks[start]; ok {
		rf.touch(start)
		rf.mu.Unlock()
		return b, nil
	}
	rf.mu.Unlock()

	b, size, err := rf.fetch(start)
	if err != nil {
		return nil, err
	}
	rf.mu.Lock()
	defer rf.mu.Unlock()
	if rf.size < 0 {
		rf.size = size
	}
	rf.blocks[start] = b
	rf.touch(start)
	for len(rf.order) > remoteMaxBlocks {
		delete(rf.blocks, rf.order[0])
		rf.order = rf.order[1:]
	}
	return b, nil
}

func (rf *Remote) touch(start int64) {
	for i, s := range rf.order {
		if s == start {
			rf.order = append(rf.order[:i], rf.order[i+1:]...)
			break
		}
	}
	rf.order = append(rf.order, start)
}

func (rf *Remote) fetch(start int64) ([]byte, int64, error) {
	req, err := http.NewRequestWithContext(rf.ctx, http.MethodGet, rf.url, nil)
	if err != nil {
		return nil, 0, invalid("building request for %s: %v", rf.url, err)
	}
	for k, v := range rf.header {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "cortex-neuron")
	req.Header.Set("Range", "bytes="+strconv.FormatInt(start, 10)+"-"+strconv.FormatInt(start+remoteBlock-1, 10))
	resp, err := rf.client.Do(req)
	if err != nil {
		return nil, 0, unavailable(false, "reading %s: %v", rf.url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	switch resp.StatusCode {
	case http.StatusPartialContent:
		got, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || got != start {
			return nil, 0, unavailable(false, "reading %s: server answered range %q to bytes from %d", rf.url, resp.Header.Get("Content-Range"), start)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, remoteBlock))
		if err != nil {
			return nil, 0, unavailable(false, "reading %s: %v", rf.url, err)
		}
		if total == 0 {
			total = start + int64(len(b)) // unknown: assume this is the end
		}
		return b, total, nil
	case http.StatusOK:
		// No range support: skip to the block in the full body. Fine for a
		// header near the start, wasteful anywhere else.
		if _, err := io.CopyN(io.Discard, resp.Body, start); err != nil {
			return nil, 0, unavailable(false, "reading %s: %v", rf.url, err)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, remoteBlock))
		if err != nil {
			return nil, 0, unavailable(false, "reading %s: %v", rf.url, err)
		}
		total := resp.ContentLength
		if total < 0 {
			total = start + int64(len(b))
		}
		return b, total, nil
	case http.StatusRequestedRangeNotSatisfiable:
		return nil, 0, io.EOF
	case http.StatusNotFound, http.StatusGone, http.StatusUnauthorized, http.StatusForbidden:
		return nil, 0, unavailable(true, "reading %s: %s", rf.url, resp.Status)
	default:
		return nil, 0, unavailable(resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests, "reading %s: %s", rf.url, resp.Status)
	}
}

var _ File = (*Remote)(nil)

// String names the remote file in errors.
func (rf *Remote) String() string { return fmt.Sprintf("remote %s", rf.url) }
