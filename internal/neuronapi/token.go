package neuronapi

import (
	"fmt"
	"os"
	"strings"
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
