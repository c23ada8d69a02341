package chat

import (
	"reflect"
	"testing"
)

// FuzzParser checks, on any output, that the parser does not panic, that
// its events add up to its result, and that where the text is split does
// not matter. The parse cases are the seeds (run by plain go test).
func FuzzParser(f *testing.F) {
	for _, tc := range parseCases {
		f.Add(tc.in, uint(len(tc.in)/2), uint8(0), tc.cfg.InReasoning, uint8(tc.cfg.MaxCalls))
	}
	f.Add("<tool_call>{\"name\": \"get_time\", \"arguments\": {\"a\": [1, 2, {\"b\": \"</tool_call>\"}]}}</tool_call>", uint(20), uint8(0), false, uint8(0))
	f.Add("[TOOL_CALLS][{\"name\": \"get_time\", \"arguments\": {}}", uint(14), uint8(2), false, uint8(0))
	f.Add("<|python_tag|>{\"name\": \"get_time\", \"parameters\": {}};{", uint(3), uint8(1), false, uint8(0))
	formats := []ToolFormat{ToolFormatHermes, ToolFormatLlama3, ToolFormatMistral}
	f.Fuzz(func(t *testing.T, in string, split uint, format uint8, inReasoning bool, maxCalls uint8) {
		cfg := ParserConfig{
			Format:      formats[int(format)%len(formats)],
			Tools:       weatherTools,
			InReasoning: inReasoning,
			MaxCalls:    int(maxCalls % 4),
		}
		wantEvs, wantRes := runParser(cfg, in)
		checkEvents(t, wantEvs, wantRes)
		at := int(split % uint(len(in)+1))
		evs, res := runParser(cfg, in[:at], in[at:])
		if !reflect.DeepEqual(evs, wantEvs) || !reflect.DeepEqual(res, wantRes) {
			t.Fatalf("split at %d differs:\n got %#v %#v\nwant %#v %#v", at, evs, res, wantEvs, wantRes)
		}
		if cfg.MaxCalls > 0 && len(res.ToolCalls) > cfg.MaxCalls {
			t.Fatalf("%d calls, at most %d allowed", len(res.ToolCalls), cfg.MaxCalls)
		}
	})
}
