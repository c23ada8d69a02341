package neuronapi

import (
	"net/http"
	"net/textproto"
)

// WriteFirstToken sends the 103 Early Hints that tells a client which
// asked (HeaderFirstToken) that its plain answer's first token was
// generated. An informational response carries the headers set on w so
// far; the one it adds is removed again, so the final answer does not
// carry it.
func WriteFirstToken(w http.ResponseWriter) {
	h := w.Header()
	h.Set(HeaderFirstToken, "1")
	w.WriteHeader(http.StatusEarlyHints)
	h.Del(HeaderFirstToken)
}

// IsFirstToken reports whether an informational response is the one
// WriteFirstToken sends.
func IsFirstToken(code int, h textproto.MIMEHeader) bool {
	return code == http.StatusEarlyHints && h.Get(HeaderFirstToken) != ""
}
