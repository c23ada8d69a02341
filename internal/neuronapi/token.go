package neuronapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
)

// ReadTokenFile reads the neurons' bearer token from a file, usually a
// mounted Secret. Surrounding whitespace (the trailing newline editors and
// `kubectl create secret --from-file` keep) is not part of the token. An
// empty file, or a token with spaces, control or non-ASCII characters
// inside, is an error: such a token cannot travel in an Authorization
// header, and every call would be refused with nothing saying why.
func ReadTokenFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the token file: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("token file %s is empty", path)
	}
	if i := strings.IndexFunc(tok, func(c rune) bool { return c <= ' ' || c > '~' }); i >= 0 {
		return "", fmt.Errorf("token file %s: the token has a space, control or non-ASCII character at byte %d", path, i)
	}
	return tok, nil
}

// Token is the bearer token a program uses: the file's when file is set
// (the file wins over the value), else token itself.
func Token(file, token string) (string, error) {
	if file == "" {
		return token, nil
	}
	return ReadTokenFile(file)
}

const (
	// DefaultTokenRecheck is how often a token file is looked at again.
	DefaultTokenRecheck = 10 * time.Second
	// DefaultTokenGrace is how long the previous token stays good after a
	// rotation. The kubelet refreshes a Secret volume on each pod on its
	// own schedule (its sync period plus its cache's TTL: a minute or two
	// by default), so the sender and the receiver of a token see a new one
	// at different times; the grace covers that skew with room to spare.
	DefaultTokenGrace = 5 * time.Minute
	// forcedRereadEvery bounds the re-reads a refused or unknown token
	// triggers, so a flood of wrong tokens costs at most one stat a second.
	forcedRereadEvery = time.Second
)

// TokenOptions tune a TokenSource; zero values take the defaults.
type TokenOptions struct {
	// Recheck is the least time between two looks at the file.
	Recheck time.Duration
	// Grace is how long the previous token stays good after a change
	// (negative: not at all).
	Grace time.Duration
	// Now overrides the clock (tests).
	Now func() time.Time
	// Log hears about rotations and unusable files.
	Log logr.Logger
}

// TokenSource is the neurons' bearer token as one program holds it: a fixed
// value, or a file (a mounted Secret) re-read when it changes, so rotating
// the Secret needs no restart. It remembers the token it replaced for a
// grace period, which is what lets a rotation fail no request whatever
// order the pods see the new file in:
//
//   - a receiver (the neuron) accepts the current and the previous token;
//   - a sender (manager, gateway) refused with 401 retries once with what
//     Fallback gives: the file's token if it changed meanwhile, else the
//     previous one.
//
// A file that turns unreadable, empty or malformed keeps the last good
// token. Safe for concurrent use.
type TokenSource struct {
	file    string
	recheck time.Duration
	grace   time.Duration
	now     func() time.Time
	log     logr.Logger

	mu       sync.Mutex
	cur      string
	curSum   [sha256.Size]byte
	prev     string
	prevSum  [sha256.Size]byte
	changed  time.Time // when cur replaced prev
	checked  time.Time
	rereadAt time.Time
	lastErr  string // the last unusable-file reason logged
}

// NewTokenSource returns the token from file (which must be readable now)
// or, when file is empty, the fixed token (which may be empty: no token).
func NewTokenSource(file, token string, o TokenOptions) (*TokenSource, error) {
	s := &TokenSource{file: file, recheck: o.Recheck, grace: o.Grace, now: o.Now, log: o.Log}
	if s.recheck <= 0 {
		s.recheck = DefaultTokenRecheck
	}
	if s.grace == 0 {
		s.grace = DefaultTokenGrace
	}
	if s.now == nil {
		s.now = time.Now
	}
	if file == "" {
		s.set(token, time.Time{})
		return s, nil
	}
	tok, err := ReadTokenFile(file)
	if err != nil {
		return nil, err
	}
	s.set(tok, time.Time{})
	s.checked = s.now()
	return s, nil
}

// StaticToken is a TokenSource of a fixed token ("" for none).
func StaticToken(token string) *TokenSource {
	s, _ := NewTokenSource("", token, TokenOptions{})
	return s
}

// set installs tok as current, keeping the one it replaces as previous.
// Callers hold mu (or own s exclusively).
func (s *TokenSource) set(tok string, at time.Time) {
	if tok == s.cur {
		return
	}
	if s.cur != "" {
		s.prev, s.prevSum, s.changed = s.cur, s.curSum, at
	}
	s.cur, s.curSum = tok, sha256.Sum256([]byte(tok))
}

// Enabled reports whether there is a token at all.
func (s *TokenSource) Enabled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur != ""
}

// Token is the token to send now, the file looked at again when Recheck
// has passed.
func (s *TokenSource) Token() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if now.Sub(s.checked) >= s.recheck {
		s.reread(now)
	}
	return s.cur
}

// Fallback is the token to retry with after sent was refused (401): the
// file is read again at once, and the answer is its token if that differs
// from sent, else the previous token while its grace lasts, else "" (no
// retry is worth making).
func (s *TokenSource) Fallback(sent string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if now.Sub(s.rereadAt) >= forcedRereadEvery {
		s.rereadAt = now
		s.reread(now)
	}
	if s.cur != sent {
		return s.cur
	}
	if s.prev != "" && s.prev != sent && s.inGrace(now) {
		return s.prev
	}
	return ""
}

// Accepts reports whether got is the current token, or the previous one
// within its grace. A token that matches neither makes the source read
// the file again (at most once a second) before it says no: the sender may
// simply have seen the new Secret first.
func (s *TokenSource) Accepts(got string) bool {
	sum := sha256.Sum256([]byte(got))
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if now.Sub(s.checked) >= s.recheck {
		s.reread(now)
	}
	if s.match(sum, now) {
		return true
	}
	if now.Sub(s.rereadAt) < forcedRereadEvery {
		return false
	}
	s.rereadAt = now
	s.reread(now)
	return s.match(sum, now)
}

// match compares digests in constant time, whatever the lengths.
func (s *TokenSource) match(sum [sha256.Size]byte, now time.Time) bool {
	ok := subtle.ConstantTimeCompare(sum[:], s.curSum[:]) == 1
	if s.prev != "" && s.inGrace(now) {
		ok = subtle.ConstantTimeCompare(sum[:], s.prevSum[:]) == 1 || ok
	}
	return ok && s.cur != ""
}

func (s *TokenSource) inGrace(now time.Time) bool {
	return s.grace > 0 && now.Sub(s.changed) < s.grace
}

// reread reads the file and takes its token if it changed. The file is
// read whole rather than judged by its modification time: it is a few
// bytes, and a rewrite within the file system's timestamp granularity
// would otherwise go unseen. Callers hold mu.
func (s *TokenSource) reread(now time.Time) {
	s.checked = now
	if s.file == "" {
		return
	}
	tok, err := ReadTokenFile(s.file)
	if err != nil {
		if err.Error() != s.lastErr {
			s.lastErr = err.Error()
			s.log.Info("Token file unusable; keeping the previous token", "file", s.file, "reason", err.Error())
		}
		return
	}
	s.lastErr = ""
	if tok != s.cur {
		s.set(tok, now)
		s.log.Info("Neuron token rotated; the previous one stays good for the grace period", "file", s.file, "grace", s.grace.String())
	}
}
