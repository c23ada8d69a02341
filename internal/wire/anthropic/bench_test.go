package anthropic

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/helexa-ai/cortex/internal/wire/openai"
	"github.com/helexa-ai/cortex/internal/wire/sse"
)

// BenchmarkStream measures the per-token cost of reading an upstream chunk,
// translating it and writing the Anthropic event: the gateway's hot path.
func BenchmarkStream(b *testing.B) {
	var up strings.Builder
	const tokens = 1000
	up.WriteString(`data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}` + "\n\n")
	for i := range tokens {
		fmt.Fprintf(&up, `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"tok%d "},"finish_reason":null}]}`+"\n\n", i)
	}
	up.WriteString(`data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\ndata: [DONE]\n\n")
	input := []byte(up.String())
	b.SetBytes(int64(len(input)))
	b.ReportAllocs()
	for b.Loop() {
		w := sse.NewWriter(io.Discard)
		tr := NewStreamTranslator("m", "msg_x", 1)
		r := sse.NewReader(bytes.NewReader(input))
		for {
			ev, err := r.Next()
			if err != nil {
				b.Fatal(err)
			}
			if ev.IsDone() {
				_ = WriteEvents(w, tr.Finish())
				break
			}
			c, err := openai.DecodeChunk([]byte(ev.Data))
			if err != nil {
				b.Fatal(err)
			}
			evs, _ := tr.Chunk(c)
			_ = WriteEvents(w, evs)
		}
	}
}
