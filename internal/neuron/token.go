package neuron

import (
	"crypto/sha256"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/helexa-ai/cortex/internal/neuronapi"
)

// tokenRecheck is how often the token file is looked at again, so a
// rotated Kubernetes Secret takes effect without a restart.
const tokenRecheck = 10 * time.Second

// tokenSource holds the digest of the bearer token, from a fixed value or
// a file it rereads when the file changes. A file that turns unreadable,
// empty or malformed keeps the last good token.
type tokenSource struct {
	log  logr.Logger
	file string

	mu      sync.Mutex
	digest  *[sha256.Size]byte
	mod     time.Time
	size    int64
	checked time.Time
}

func newTokenSource(log logr.Logger, file, token string) *tokenSource {
	ts := &tokenSource{log: log, file: file}
	if file == "" && token != "" {
		d := sha256.Sum256([]byte(token))
		ts.digest = &d
	}
	return ts
}

// current returns the token's digest, nil when there is none.
func (ts *tokenSource) current(now time.Time) *[sha256.Size]byte {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.file == "" || now.Sub(ts.checked) < tokenRecheck && ts.digest != nil {
		return ts.digest
	}
	ts.checked = now
	fi, err := os.Stat(ts.file)
	if err != nil || (fi.ModTime().Equal(ts.mod) && fi.Size() == ts.size && ts.digest != nil) {
		return ts.digest
	}
	tok, err := neuronapi.ReadTokenFile(ts.file)
	if err != nil {
		ts.log.Info("Token file unusable; keeping the previous token", "file", ts.file, "reason", err.Error())
		return ts.digest
	}
	d := sha256.Sum256([]byte(tok))
	if ts.digest != nil && d != *ts.digest {
		ts.log.Info("API token rotated", "file", ts.file)
	}
	ts.digest, ts.mod, ts.size = &d, fi.ModTime(), fi.Size()
	return ts.digest
}
