package gateway

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/labstack/echo/v4"
	"k8s.io/utils/clock"
	"sigs.k8s.io/yaml"

	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// keysRecheck is how often the keys file is read again, so a rotated or
// edited Secret takes effect without a restart.
const keysRecheck = 5 * time.Second

// maxKeyNameLen bounds key names: they are metric labels and log fields.
const maxKeyNameLen = 128

// apiKey is one API key's identity and what it may do. Limits are for the
// whole gateway (every replica together); 0 is no limit.
type apiKey struct {
	name string
	// models are the Model keys, served names and "<namespace>/*"
	// patterns the key may use; empty is every Model.
	models            []string
	requestsPerMinute int64
	tokensPerMinute   int64
	maxConcurrent     int64
}

// anonymousKey is who a request without a key is served as, with
// --allow-anonymous.
var anonymousKey = &apiKey{name: "anonymous"}

// restricted reports whether the key may use only some Models.
func (k *apiKey) restricted() bool { return len(k.models) > 0 }

// limited reports whether the key has any limit to enforce.
func (k *apiKey) limited() bool {
	return k.requestsPerMinute > 0 || k.tokensPerMinute > 0 || k.maxConcurrent > 0
}

// allows reports whether the key may use the Model with this key and
// served names. An entry that names a Model by any of its names grants the
// Model, under all its names.
func (k *apiKey) allows(modelKey string, names []string) bool {
	if !k.restricted() {
		return true
	}
	for _, m := range k.models {
		if m == modelKey {
			return true
		}
		if ns, ok := strings.CutSuffix(m, "/*"); ok && strings.HasPrefix(modelKey, ns+"/") {
			return true
		}
		for _, n := range names {
			if m == n {
				return true
			}
		}
	}
	return false
}

// keyFile is the structured keys file (YAML or JSON).
type keyFile struct {
	Keys []keyEntry `json:"keys"`
}

// keyEntry is one key of the structured file.
type keyEntry struct {
	Name              string   `json:"name"`
	Key               string   `json:"key,omitempty"`
	KeySHA256         string   `json:"keySHA256,omitempty"`
	Models            []string `json:"models,omitempty"`
	RequestsPerMinute int64    `json:"requestsPerMinute,omitempty"`
	TokensPerMinute   int64    `json:"tokensPerMinute,omitempty"`
	MaxConcurrent     int64    `json:"maxConcurrent,omitempty"`
}

// parseKeys reads a keys file: the structured format when its first
// meaningful line is "keys:" or "---" (YAML) or starts with "{" (JSON), else the
// plain format of one key per line ("name:key" or a bare key named key-N
// by its position). A bad structured file is an error naming the entry:
// keys are never half-loaded.
func parseKeys(data []byte) (map[[sha256.Size]byte]*apiKey, error) {
	if structured(data) {
		return parseStructuredKeys(data)
	}
	keys := map[[sha256.Size]byte]*apiKey{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	n := 0
	byName := map[string]*apiKey{}
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		n++
		name, key, found := strings.Cut(line, ":")
		if !found {
			name, key = fmt.Sprintf("key-%d", n), line
		}
		name, key = strings.TrimSpace(name), strings.TrimSpace(key)
		if key == "" {
			return nil, fmt.Errorf("line %d: empty key", n)
		}
		if name == "" {
			name = fmt.Sprintf("key-%d", n)
		}
		// Lines that share a name are one identity with several keys (a
		// key being rotated), as they always were.
		k := byName[name]
		if k == nil {
			k = &apiKey{name: name}
			byName[name] = k
		}
		keys[sha256.Sum256([]byte(key))] = k
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return keys, nil
}

func structured(data []byte) bool {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// A plain line is "name:key" or a bare key: never a bare "keys:",
		// a JSON object or a YAML document marker.
		return line == "keys:" || strings.HasPrefix(line, "{") || line == "---"
	}
	return false
}

func parseStructuredKeys(data []byte) (map[[sha256.Size]byte]*apiKey, error) {
	var f keyFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, err
	}
	keys := map[[sha256.Size]byte]*apiKey{}
	names := map[string]bool{}
	var errs []error
	for i, e := range f.Keys {
		where := fmt.Sprintf("keys[%d]", i)
		if e.Name != "" {
			where = fmt.Sprintf("keys[%d] (%s)", i, e.Name)
		}
		if err := checkKeyName(e.Name); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		} else if names[e.Name] {
			errs = append(errs, fmt.Errorf("%s: the name is used twice", where))
		}
		names[e.Name] = true
		var digest [sha256.Size]byte
		switch {
		case (e.Key == "") == (e.KeySHA256 == ""):
			errs = append(errs, fmt.Errorf("%s: set exactly one of key and keySHA256", where))
			continue
		case e.Key != "":
			if strings.TrimSpace(e.Key) != e.Key || strings.ContainsAny(e.Key, " \t\r\n") {
				errs = append(errs, fmt.Errorf("%s: the key has whitespace", where))
				continue
			}
			digest = sha256.Sum256([]byte(e.Key))
		default:
			b, err := hex.DecodeString(e.KeySHA256)
			if err != nil || len(b) != sha256.Size {
				errs = append(errs, fmt.Errorf("%s: keySHA256 must be 64 hex digits (sha256sum of the key)", where))
				continue
			}
			copy(digest[:], b)
		}
		if _, dup := keys[digest]; dup {
			errs = append(errs, fmt.Errorf("%s: the same key is listed twice", where))
			continue
		}
		if e.RequestsPerMinute < 0 || e.TokensPerMinute < 0 || e.MaxConcurrent < 0 {
			errs = append(errs, fmt.Errorf("%s: limits must not be negative", where))
		}
		for _, m := range e.Models {
			if strings.TrimSpace(m) == "" || m == "*" {
				errs = append(errs, fmt.Errorf("%s: models entry %q: name a Model, a served name or <namespace>/* (leave models out for every Model)", where, m))
			}
		}
		keys[digest] = &apiKey{
			name: e.Name, models: e.Models,
			requestsPerMinute: e.RequestsPerMinute, tokensPerMinute: e.TokensPerMinute, maxConcurrent: e.MaxConcurrent,
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return keys, nil
}

func checkKeyName(name string) error {
	switch {
	case name == "":
		return errors.New("the name is empty")
	case len(name) > maxKeyNameLen:
		return fmt.Errorf("the name is longer than %d bytes", maxKeyNameLen)
	case strings.IndexFunc(name, func(c rune) bool { return c <= ' ' || c == ':' || c > '~' }) >= 0:
		return errors.New("the name has a space, colon, control or non-ASCII character")
	}
	return nil
}

// keyring holds the API keys by their SHA-256, compared in constant time.
// It reads its file again every keysRecheck (a rotated or edited Secret);
// a file that turns unreadable or invalid keeps the keys last loaded, and
// says so in the log and in cortex_gateway_api_keys_reload_errors_total.
type keyring struct {
	path    string
	clock   clock.PassiveClock
	log     logr.Logger
	onError func()
	onLoad  func(n int)

	mu      sync.Mutex
	keys    map[[sha256.Size]byte]*apiKey
	raw     []byte
	checked time.Time
	lastErr string
}

func loadKeyring(path string, clk clock.PassiveClock) (*keyring, error) {
	k := &keyring{path: path, clock: clk, keys: map[[sha256.Size]byte]*apiKey{}, log: logr.Discard()}
	if path == "" {
		return k, nil
	}
	if err := k.reload(); err != nil {
		return nil, fmt.Errorf("reading API keys from %s: %w", path, err)
	}
	k.checked = clk.Now()
	return k, nil
}

// reload reads the file; callers hold mu (or own k).
func (k *keyring) reload() error {
	data, err := os.ReadFile(k.path)
	if err != nil {
		return err
	}
	if bytes.Equal(data, k.raw) && k.raw != nil {
		return nil
	}
	keys, err := parseKeys(data)
	if err != nil {
		return err
	}
	k.keys, k.raw = keys, data
	if k.onLoad != nil {
		k.onLoad(len(keys))
	}
	return nil
}

// check returns the key's definition, re-reading the file when it is due.
func (k *keyring) check(key string) (*apiKey, bool) {
	if key == "" {
		return nil, false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if now := k.clock.Now(); k.path != "" && now.Sub(k.checked) >= keysRecheck {
		k.checked = now
		if err := k.reload(); err != nil {
			if k.onError != nil {
				k.onError()
			}
			if err.Error() != k.lastErr {
				k.log.Error(err, "API keys file unusable; keeping the keys last loaded", "file", k.path)
			}
			k.lastErr = err.Error()
		} else {
			k.lastErr = ""
		}
	}
	sum := sha256.Sum256([]byte(key))
	var found *apiKey
	// Every digest is compared, so the time taken says nothing of which
	// (if any) matched.
	for h, ak := range k.keys {
		if subtle.ConstantTimeCompare(h[:], sum[:]) == 1 {
			found = ak
		}
	}
	return found, found != nil
}

// presentedKey is the key a request carries: x-api-key (Anthropic SDKs)
// first, else Authorization: Bearer (OpenAI SDKs).
func presentedKey(r *http.Request) string {
	key := r.Header.Get("x-api-key")
	if key == "" {
		if auth := r.Header.Get("Authorization"); len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
			key = strings.TrimSpace(auth[7:])
		}
	}
	return key
}

// authenticate checks the API key unless anonymous access is configured,
// then settles the request's account with its key when it is done: the
// concurrency slot, the token count reconciled with the neuron's usage,
// and the per-key metrics.
func (g *Gateway) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		path := c.Request().URL.Path
		if path == "/healthz" || path == "/readyz" {
			return next(c)
		}
		key := presentedKey(c.Request())
		ri := info(c)
		if ak, ok := g.keys.check(key); ok {
			ri.apiKey = ak
		} else if g.cfg.AllowAnonymous {
			ri.apiKey = anonymousKey
		} else if key == "" {
			return openai.Unauthorized("missing API key: send Authorization: Bearer <key> or x-api-key")
		} else {
			return openai.Unauthorized("invalid API key")
		}
		ri.keyName = ri.apiKey.name
		if path == "/health" && ri.apiKey.restricted() {
			// The fleet report names every Model: not for a key that may
			// see only some.
			return openai.NewError(http.StatusForbidden, openai.TypePermission, openai.CodePermissionDenied, "",
				"this API key may use only some models; /health describes the whole fleet")
		}
		err := next(c)
		g.settle(c, err)
		return err
	}
}

// lookupFor resolves a client's model name among the Models the request's
// key may use. A Model the key may not use does not exist for it: the
// answer is the very 404 of an unknown name, and an ambiguous name is
// ambiguous only among the Models it may use.
func (g *Gateway) lookupFor(c echo.Context, name string) (string, error) {
	ak := info(c).apiKey
	key, _, err := g.catalog.Lookup(name)
	var amb *ambiguousError
	if errors.As(err, &amb) && ak != nil && ak.restricted() {
		var allowed []string
		for _, k := range amb.keys {
			if g.mayUse(ak, k) {
				allowed = append(allowed, k)
			}
		}
		switch len(allowed) {
		case 0:
			return "", errUnknownModel
		case 1:
			return allowed[0], nil
		}
		return "", &ambiguousError{name: name, keys: allowed}
	}
	if err != nil {
		return "", err
	}
	if ak != nil && !g.mayUse(ak, key) {
		return "", errUnknownModel
	}
	return key, nil
}

// mayUse reports whether the key may use the Model with this key.
func (g *Gateway) mayUse(ak *apiKey, modelKey string) bool {
	if !ak.restricted() {
		return true
	}
	m, ok := g.catalog.Model(modelKey)
	if !ok {
		return false
	}
	return ak.allows(modelKey, m.Names())
}

// visibleModels are the Models /v1/models lists for this request's key.
func (g *Gateway) visibleModels(c echo.Context) []ModelView {
	views := g.catalog.Models()
	ak := info(c).apiKey
	if ak == nil || !ak.restricted() {
		return views
	}
	out := views[:0:0]
	for _, v := range views {
		if ak.allows(v.Key, v.Names) {
			out = append(out, v)
		}
	}
	return out
}

func loggerOf(c echo.Context) logr.Logger {
	return logr.FromContextOrDiscard(c.Request().Context())
}
