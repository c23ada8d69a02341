package gguf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// HTTPReaderAt reads a remote file with HTTP range requests, so that the
// header of a multi-gigabyte GGUF can be parsed without downloading it.
// Read issues a handful of 1 MiB requests for a typical header.
type HTTPReaderAt struct {
	ctx     context.Context
	client  *http.Client
	url     string
	headers http.Header
	size    int64
}

// NewHTTPReaderAt probes url with a one-byte range request to learn the
// file's size and to check that the server honours ranges. headers (e.g.
// Authorization) are sent with every request; ctx bounds all of them.
func NewHTTPReaderAt(ctx context.Context, client *http.Client, url string, headers http.Header) (*HTTPReaderAt, error) {
	if client == nil {
		client = http.DefaultClient
	}
	r := &HTTPReaderAt{ctx: ctx, client: client, url: url, headers: headers.Clone()}
	resp, err := r.get(0, 0)
	if err != nil {
		return nil, err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusPartialContent {
		return nil, &HTTPStatusError{Status: resp.StatusCode, Err: fmt.Errorf("range request to %s: server answered %s, not 206 Partial Content", redact(url), resp.Status)}
	}
	size, err := totalFromContentRange(resp.Header.Get("Content-Range"))
	if err != nil {
		return nil, fmt.Errorf("range request to %s: %w", redact(url), err)
	}
	r.size = size
	return r, nil
}

// HTTPStatusError is a range probe the server answered with another status
// than 206: a 4xx says the file is not there (or not ours to read), a 200
// that the server ignores ranges.
type HTTPStatusError struct {
	Status int
	Err    error
}

func (e *HTTPStatusError) Error() string { return e.Err.Error() }

// Size is the remote file's size in bytes.
func (r *HTTPReaderAt) Size() int64 { return r.size }

// ReadAt reads len(p) bytes at off with one range request.
func (r *HTTPReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= r.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	want := min(int64(len(p)), r.size-off)
	resp, err := r.get(off, off+want-1)
	if err != nil {
		return 0, err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusPartialContent {
		return 0, fmt.Errorf("range request to %s: server answered %s", redact(r.url), resp.Status)
	}
	n, err := io.ReadFull(resp.Body, p[:want])
	if err != nil {
		return n, fmt.Errorf("reading %s at %d: %w", redact(r.url), off, err)
	}
	if want < int64(len(p)) {
		return n, io.EOF
	}
	return n, nil
}

func (r *HTTPReaderAt) get(first, last int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(r.ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return nil, err
	}
	for k, vs := range r.headers {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", first, last))
	// A compressed answer would make the byte range meaningless.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("range request to %s: %w", redact(r.url), err)
	}
	return resp, nil
}

func drain(resp *http.Response) {
	// Reading a little of what is left lets the connection be reused; a
	// server that ignored Range is not read to the end.
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	_ = resp.Body.Close()
}

// totalFromContentRange parses "bytes 0-0/12345".
func totalFromContentRange(h string) (int64, error) {
	i := strings.LastIndexByte(h, '/')
	if !strings.HasPrefix(h, "bytes ") || i < 0 {
		return 0, fmt.Errorf("malformed Content-Range %q", h)
	}
	total := h[i+1:]
	if total == "*" {
		return 0, fmt.Errorf("server did not report the file size")
	}
	n, err := strconv.ParseInt(total, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("malformed Content-Range %q", h)
	}
	return n, nil
}

// redact drops the query string, which often carries signed credentials.
func redact(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i] + "?…"
	}
	return u
}
