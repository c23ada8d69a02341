package sources

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"

	"github.com/helexa-ai/cortex/internal/gguf"
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
// requests (gguf.HTTPReaderAt). It is meant for reading a GGUF header; ctx
// bounds every read of a remote file.
func (r *Resolver) Open(ctx context.Context, src neuronapi.Source) (File, error) {
	loc, err := r.Parse(src)
	if err != nil {
		return nil, err
	}
	path := loc.Path
	if loc.Scheme != "file" && r.opts.CacheDir != "" {
		if p, ok := r.cached(loc); ok {
			path = p
		}
	}
	if path == "" {
		rd, err := gguf.NewHTTPReaderAt(ctx, r.opts.Client, loc.URL, loc.Header)
		if err != nil {
			// A 4xx (missing file, wrong repository, no access) will not
			// fix itself; timeouts, throttling and 5xx may.
			var se *gguf.HTTPStatusError
			permanent := errors.As(err, &se) && se.Status >= 400 && se.Status < 500 &&
				se.Status != http.StatusRequestTimeout && se.Status != http.StatusTooManyRequests
			return nil, unavailable(permanent, "opening %s: %v", loc.URL, err)
		}
		return remoteFile{rd}, nil
	}
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

type localFile struct {
	f    *os.File
	size int64
}

func (l *localFile) ReadAt(p []byte, off int64) (int, error) { return l.f.ReadAt(p, off) }
func (l *localFile) Close() error                            { return l.f.Close() }
func (l *localFile) Size() int64                             { return l.size }

type remoteFile struct{ *gguf.HTTPReaderAt }

func (remoteFile) Close() error { return nil }
