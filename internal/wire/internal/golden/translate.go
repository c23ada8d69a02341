package golden

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/helexa-ai/cortex/internal/wire/openai"
	"github.com/helexa-ai/cortex/internal/wire/sse"
)

// Translator is a dialect's stream translator (anthropic and responses).
type Translator[E any] interface {
	Start() []E
	Chunk(*openai.ChatChunk) ([]E, error)
	Finish() []E
	Fail(error) []E
	Done() bool
}

// Translate feeds a recorded upstream chat stream through tr the way the
// gateway does and returns the SSE it writes: the opening events, then
// keepAlive's output (a dialect's keep-alive), then every chunk translated,
// ending with Finish, or Fail when the upstream breaks or is cut. It fails
// the test when tr is not done after the stream or produces events after
// its end.
func Translate[E any](t testing.TB, upstream []byte, tr Translator[E], write func(*sse.Writer, []E) error, keepAlive func(*sse.Writer) error) []byte {
	t.Helper()
	var out bytes.Buffer
	w := sse.NewWriter(&out)
	emit := func(evs []E) {
		if err := write(w, evs); err != nil {
			t.Fatal(err)
		}
	}
	emit(tr.Start())
	if err := keepAlive(w); err != nil {
		t.Fatal(err)
	}
	r := sse.NewReader(bytes.NewReader(upstream))
	for {
		ev, err := r.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatal(err)
			}
			emit(tr.Fail(openai.ServerError("The model server closed the stream before it finished.")))
			break
		}
		if ev.IsDone() {
			emit(tr.Finish())
			break
		}
		c, err := openai.DecodeChunk([]byte(ev.Data))
		if err != nil {
			emit(tr.Fail(err))
			break
		}
		evs, err := tr.Chunk(c)
		emit(evs)
		if err != nil {
			emit(tr.Fail(err))
			break
		}
	}
	if !tr.Done() {
		t.Fatal("translator not done after the stream")
	}
	if evs := append(tr.Finish(), tr.Fail(errors.New("late"))...); len(evs) != 0 {
		t.Fatalf("events after the end: %v", evs)
	}
	return out.Bytes()
}
