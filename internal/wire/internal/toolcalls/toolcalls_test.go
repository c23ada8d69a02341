package toolcalls

import (
	"fmt"
	"strings"
	"testing"

	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// log renders calls as a readable trace.
type log struct{ lines []string }

func (l *log) Switch() { l.lines = append(l.lines, "switch") }
func (l *log) Flush(c *Call) {
	if !c.Opened && c.Name != "" {
		c.Opened = true
		l.lines = append(l.lines, "open "+c.Name)
	}
	if c.Opened && c.Args.Len() > c.Sent {
		l.lines = append(l.lines, "args "+c.Args.String()[c.Sent:])
		c.Sent = c.Args.Len()
	}
}
func (l *log) ProtocolError(format string, args ...any) error { return fmt.Errorf(format, args...) }

func delta(idx *int, id, name, args string) openai.ToolCall {
	return openai.ToolCall{Index: idx, ID: id, Function: openai.FunctionCall{Name: name, Arguments: args}}
}

func at(i int) *int { return &i }

func TestSequencer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		deltas []openai.ToolCall
		want   string
		err    string
	}{
		{"one after another", []openai.ToolCall{
			delta(at(0), "a", "f", `{"x":`), delta(at(0), "", "", `1}`), delta(at(1), "b", "g", `{}`),
		}, "switch|open f|args {\"x\":|args 1}|switch|open g|args {}", ""},
		{"no index: a new id is a new call", []openai.ToolCall{
			delta(nil, "a", "f", `{}`), delta(nil, "b", "g", `{}`),
		}, "switch|open f|args {}|switch|open g|args {}", ""},
		{"interleaved: held until the open call completes", []openai.ToolCall{
			delta(at(0), "a", "f", `{"x":`), delta(at(1), "b", "g", `{"y":2}`), delta(at(0), "", "", `1}`),
		}, "switch|open f|args {\"x\":|args 1}|switch|open g|args {\"y\":2}", ""},
		{"resumed after close", []openai.ToolCall{
			delta(at(0), "a", "f", `{}`),
		}, "", "resumed after its block was closed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, l := New("block"), &log{}
			var err error
			for _, d := range tc.deltas {
				if err = s.Add(d, l); err != nil {
					break
				}
			}
			if tc.err != "" {
				// Close the call, then resume it.
				s.Order[0].Closed = true
				err = s.Add(delta(at(0), "", "", `{"more":1}`), l)
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(l.lines, "|"); got != tc.want {
				t.Fatalf("trace\n got %s\nwant %s", got, tc.want)
			}
		})
	}
	s := New("item")
	_ = s.Add(delta(at(0), "a", "", `{}`), &log{})
	if c := s.Unnamed(); c == nil || c.ID != "a" {
		t.Fatalf("Unnamed = %v", c)
	}
}
