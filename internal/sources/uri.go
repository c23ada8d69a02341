// Package sources turns a model source (hf://, https://, file://) into a
// local GGUF file: downloads are streamed into a cache directory, resumed
// after interruption, verified and renamed into place atomically, and a
// file already in the cache is used without touching the network. It also
// opens remote files for ranged reads, so a GGUF header can be inspected
// without downloading the weights.
package sources

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"

	"github.com/helexa-ai/cortex/internal/neuronapi"
)

// DefaultHFEndpoint is the Hugging Face Hub, used unless HF_ENDPOINT says
// otherwise.
const DefaultHFEndpoint = "https://huggingface.co"

// Error is a failure to resolve a source, carrying the neuron API error code
// it maps to.
type Error struct {
	// Code is neuronapi.CodeSourceUnavailable, CodeChecksumMismatch or
	// CodeInvalidRequest.
	Code string
	// Permanent is true when retrying the same source cannot succeed
	// (malformed URI, missing file, 404, checksum mismatch).
	Permanent bool
	Err       error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func invalid(format string, args ...any) *Error {
	return &Error{Code: neuronapi.CodeInvalidRequest, Permanent: true, Err: fmt.Errorf(format, args...)}
}

func unavailable(permanent bool, format string, args ...any) *Error {
	return &Error{Code: neuronapi.CodeSourceUnavailable, Permanent: permanent, Err: fmt.Errorf(format, args...)}
}

// Location is a parsed source.
type Location struct {
	// Scheme is "file", "https", "http" or "hf".
	Scheme string
	// Path is the local file of a file:// source.
	Path string
	// URL is what is downloaded for a remote source.
	URL string
	// Header is sent with every request for URL (authorisation).
	Header http.Header
	// CacheKey names the cache entry of a remote source: derived from the
	// URL, which carries the revision of an hf:// source.
	CacheKey string
	// Base is the file name the cached copy gets.
	Base string
	// SHA256 is the expected digest, lower case, or "".
	SHA256 string
}

var (
	hfNamePart = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	hexDigest  = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
)

// Parse checks a source and works out where it lives. hfEndpoint and
// hfToken apply to hf:// sources ("" endpoint: the public Hub).
func Parse(src neuronapi.Source, hfEndpoint, hfToken string) (Location, error) {
	var loc Location
	if src.SHA256 != "" {
		if !hexDigest.MatchString(src.SHA256) {
			return loc, invalid("sha256 %q is not 64 hexadecimal digits", src.SHA256)
		}
		loc.SHA256 = strings.ToLower(src.SHA256)
	}
	raw := strings.TrimSpace(src.URI)
	if raw == "" {
		return loc, invalid("source uri is empty")
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return loc, invalid("source uri %q has no scheme; use hf://, https:// or file://", raw)
	}
	switch strings.ToLower(scheme) {
	case "file":
		u, err := url.Parse(raw)
		if err != nil {
			return loc, invalid("parsing source uri %q: %v", raw, err)
		}
		if u.Host != "" && u.Host != "localhost" {
			return loc, invalid("file uri %q names host %q; use file:///absolute/path", raw, u.Host)
		}
		if u.Path == "" || !path.IsAbs(u.Path) {
			return loc, invalid("file uri %q needs an absolute path (file:///…)", raw)
		}
		loc.Scheme, loc.Path = "file", path.Clean(u.Path)
		loc.Base = path.Base(loc.Path)
		return loc, nil
	case "http", "https":
		u, err := url.Parse(raw)
		if err != nil {
			return loc, invalid("parsing source uri %q: %v", raw, err)
		}
		if u.Host == "" {
			return loc, invalid("source uri %q has no host", raw)
		}
		u.Fragment = ""
		loc.Scheme, loc.URL = strings.ToLower(scheme), u.String()
		loc.Base = baseName(u.Path)
	case "hf":
		u, err := hfURL(rest, hfEndpoint)
		if err != nil {
			return loc, err
		}
		loc.Scheme, loc.URL = "hf", u
		loc.Base = baseName(rest)
		if hfToken != "" {
			loc.Header = http.Header{"Authorization": {"Bearer " + hfToken}}
		}
	default:
		return loc, invalid("source uri %q has unsupported scheme %q; use hf://, https:// or file://", raw, scheme)
	}
	sum := sha256.Sum256([]byte(loc.URL))
	loc.CacheKey = hex.EncodeToString(sum[:12])
	return loc, nil
}

// hfURL maps org/repo[@rev]/path to the Hub's resolve URL.
func hfURL(rest, endpoint string) (string, error) {
	parts := strings.SplitN(rest, "/", 3)
	if len(parts) < 3 || parts[2] == "" {
		return "", invalid("hf uri hf://%s must be hf://org/repo[@revision]/path/to/file.gguf", rest)
	}
	org, repo, file := parts[0], parts[1], parts[2]
	repo, rev, hasRev := strings.Cut(repo, "@")
	if hasRev && rev == "" {
		return "", invalid("hf uri hf://%s has an empty revision after @", rest)
	}
	if rev == "" {
		rev = "main"
	}
	if !hfNamePart.MatchString(org) || !hfNamePart.MatchString(repo) {
		return "", invalid("hf uri hf://%s: %q/%q is not a valid repository name", rest, org, repo)
	}
	segs := strings.Split(file, "/")
	for i, s := range segs {
		if s == "" || s == "." || s == ".." {
			return "", invalid("hf uri hf://%s has an invalid file path %q", rest, file)
		}
		segs[i] = url.PathEscape(s)
	}
	if endpoint == "" {
		endpoint = DefaultHFEndpoint
	}
	endpoint = strings.TrimRight(endpoint, "/")
	if _, err := url.Parse(endpoint); err != nil {
		return "", invalid("HF endpoint %q: %v", endpoint, err)
	}
	return endpoint + "/" + org + "/" + repo + "/resolve/" + url.PathEscape(rev) + "/" + strings.Join(segs, "/"), nil
}

// baseName is the last path element, made safe as a file name.
func baseName(p string) string {
	b := path.Base(p)
	if b == "." || b == "/" || b == "" {
		return "model.gguf"
	}
	b = strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == 0 {
			return '_'
		}
		return r
	}, b)
	if len(b) > 200 {
		b = b[len(b)-200:]
	}
	return b
}

// IsPermanent reports whether err is a source error that retrying cannot
// fix.
func IsPermanent(err error) bool {
	var se *Error
	return errors.As(err, &se) && se.Permanent
}

// Code returns the API error code of err, CodeSourceUnavailable for an
// error that is not a source error.
func Code(err error) string {
	var se *Error
	if errors.As(err, &se) {
		return se.Code
	}
	return neuronapi.CodeSourceUnavailable
}
