package chat

import (
	"crypto/rand"
	_ "embed"
)

// builtinChatML is the template for models without one (and the ChatML
// override): ChatML turns, with tools described in the system turn and
// calls written as Hermes <tool_call> blocks, the format the parser and
// the forced-call grammar use. Tool results go back in a tool turn.
//
//go:embed builtin_chatml.jinja
var builtinChatML string

// idAlphabet makes tool-call ids.
const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// randomID returns n random characters of idAlphabet, unbiased.
func randomID(n int) string {
	out := make([]byte, 0, n)
	buf := make([]byte, 2*n)
	for len(out) < n {
		_, _ = rand.Read(buf) // never fails since Go 1.24
		for _, c := range buf {
			// 248 = 4×62: rejecting the rest keeps every character equally likely.
			if c < 248 && len(out) < n {
				out = append(out, idAlphabet[int(c)%len(idAlphabet)])
			}
		}
	}
	return string(out)
}

// newCallID is OpenAI's id shape: "call_" and 24 characters.
func newCallID() string { return "call_" + randomID(24) }

// newShortID is Mistral's: 9 alphanumerics.
func newShortID() string { return randomID(9) }
