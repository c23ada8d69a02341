package sched

import (
	"bytes"
	"strings"
	"unicode/utf8"

	"github.com/helexa-ai/cortex/internal/engine"
)

// TextStream turns token pieces into chunks of final text. It holds back
// the end of the text while it could still be the start of a stop
// sequence or of a multi-byte UTF-8 character, cuts the text before the
// first stop sequence, and hands out each token's logprob with the chunk
// that carries the start of its text.
type TextStream struct {
	stops [][]byte
	buf   []byte // text not yet emitted
	base  int    // stream offset of buf[0]
	lps   []pendingLogprob
	// matched is the stop sequence that ended the stream, if one did.
	matched string
}

type pendingLogprob struct {
	lp    engine.TokenLogprob
	start int // stream offset where the token's text begins
}

// NewTextStream makes a stream that stops at any of stops (empty ones are
// ignored).
func NewTextStream(stops []string) *TextStream {
	s := &TextStream{}
	for _, st := range stops {
		if st != "" {
			s.stops = append(s.stops, []byte(st))
		}
	}
	return s
}

// Push adds one token's text and, when logprobs were asked for, its
// logprob. It returns the chunk that became final (possibly empty) and
// whether a stop sequence was found, which ends the stream.
func (s *TextStream) Push(piece string, lp *engine.TokenLogprob) (engine.Chunk, bool) {
	start := s.base + len(s.buf)
	s.buf = append(s.buf, piece...)
	if lp != nil {
		s.lps = append(s.lps, pendingLogprob{lp: *lp, start: start})
	}
	if cut, stop := s.firstStop(); cut >= 0 {
		s.matched = string(stop)
		c := s.take(cut)
		s.buf, s.lps = s.buf[:0], s.lps[:0]
		return c, true
	}
	n := len(s.buf) - s.stopHold()
	n = completeUTF8(s.buf[:n])
	return s.take(n), false
}

// Flush returns all text still held, at the end of the generation.
func (s *TextStream) Flush() engine.Chunk {
	c := s.take(len(s.buf))
	for _, p := range s.lps {
		c.Logprobs = append(c.Logprobs, p.lp)
	}
	s.lps = s.lps[:0]
	return c
}

// take emits buf[:n] with the logprobs of the tokens that start in it.
func (s *TextStream) take(n int) engine.Chunk {
	var c engine.Chunk
	if n > 0 {
		c.Text = strings.ToValidUTF8(string(s.buf[:n]), "\uFFFD")
	}
	end := s.base + n
	k := 0
	for k < len(s.lps) && s.lps[k].start < end {
		c.Logprobs = append(c.Logprobs, s.lps[k].lp)
		k++
	}
	s.lps = append(s.lps[:0], s.lps[k:]...)
	s.buf = append(s.buf[:0], s.buf[n:]...)
	s.base = end
	return c
}

// Matched is the stop sequence that ended the stream ("" if none did).
func (s *TextStream) Matched() string { return s.matched }

// firstStop is the offset in buf of the earliest stop sequence, or -1, and
// that sequence.
func (s *TextStream) firstStop() (int, []byte) {
	cut := -1
	var which []byte
	for _, st := range s.stops {
		if i := bytes.Index(s.buf, st); i >= 0 && (cut < 0 || i < cut) {
			cut, which = i, st
		}
	}
	return cut, which
}

// stopHold is the length of the longest suffix of buf that is a proper
// prefix of a stop sequence.
func (s *TextStream) stopHold() int {
	hold := 0
	for _, st := range s.stops {
		for k := min(len(st)-1, len(s.buf)); k > hold; k-- {
			if bytes.HasSuffix(s.buf, st[:k]) {
				hold = k
				break
			}
		}
	}
	return hold
}

// completeUTF8 returns the length of the longest prefix of b that does not
// end inside a multi-byte character. Bytes that can never become valid are
// not held back.
func completeUTF8(b []byte) int {
	// A UTF-8 character is at most 4 bytes: look at the last 3 for a lead
	// byte whose sequence is not complete yet.
	for i := len(b) - 1; i >= 0 && i >= len(b)-3; i-- {
		c := b[i]
		if c < 0x80 {
			return len(b) // ASCII: nothing pending
		}
		if c >= 0xC0 { // a lead byte
			if !utf8.FullRune(b[i:]) {
				return i
			}
			return len(b)
		}
	}
	return len(b)
}
