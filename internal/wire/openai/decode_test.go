package openai

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestDecodeJSON(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		limit     int64
		wantErr   bool
		status    int
		code      string
		param     string
		msgSubstr string
	}{
		{name: "ok", body: `{"model":"m","messages":[{"role":"user","content":"hi"}]}`},
		{name: "unknown fields tolerated", body: `{"model":"m","future_field":{"x":1},"messages":[]}`},
		{name: "empty", body: "  ", wantErr: true, status: 400, code: CodeInvalidJSON, msgSubstr: "empty"},
		{name: "syntax", body: `{"model":`, wantErr: true, status: 400, code: CodeInvalidJSON, msgSubstr: "not valid JSON"},
		{name: "syntax mid", body: `{"model":"m",,}`, wantErr: true, status: 400, code: CodeInvalidJSON, msgSubstr: "at byte"},
		{name: "not object", body: `[1,2]`, wantErr: true, status: 400, code: CodeInvalidType, msgSubstr: "an array"},
		{name: "trailing", body: `{"model":"m"} {"x":1}`, wantErr: true, status: 400, code: CodeInvalidJSON, msgSubstr: "after its JSON object"},
		{name: "trailing garbage", body: `{"model":"m"}}`, wantErr: true, status: 400, code: CodeInvalidJSON},
		{name: "too large", body: `{"model":"mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm"}`, limit: 10, wantErr: true, status: 413, code: CodeRequestTooLarge},
		{name: "wrong top-level type", body: `{"model":5}`, wantErr: true, status: 400, code: CodeInvalidType, param: "model", msgSubstr: "expected a string, but got an integer"},
		{name: "wrong nested type", body: `{"model":"m","messages":[{"role":"user","content":"a"},{"role":7}]}`, wantErr: true, param: "messages[1].role", status: 400, code: CodeInvalidType},
		{name: "custom unmarshaler path", body: `{"model":"m","messages":[{"role":"user","content":42}]}`, wantErr: true, param: "messages[0].content", status: 400, code: CodeInvalidValue, msgSubstr: "string, an array"},
		{name: "bad part", body: `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":5}]}]}`, wantErr: true, param: "messages[0].content[0].text", status: 400, code: CodeInvalidType},
		{name: "float into int", body: `{"model":"m","max_tokens":1.5}`, wantErr: true, param: "max_tokens", code: CodeInvalidType, status: 400, msgSubstr: "expected an integer, but got a number"},
		{name: "bool wrong", body: `{"model":"m","stream":"yes"}`, wantErr: true, param: "stream", status: 400, msgSubstr: "a boolean"},
		{name: "tool choice", body: `{"model":"m","tool_choice":"sometimes"}`, wantErr: true, param: "tool_choice", status: 400},
		{name: "stop wrong", body: `{"model":"m","stop":[1]}`, wantErr: true, param: "stop", status: 400},
		{name: "null fields fine", body: `{"model":"m","temperature":null,"tools":null,"stop":null}`},
		{name: "invalid UTF-8", body: "{\"model\":\"m\xff\"}", wantErr: true, status: 400, code: CodeInvalidJSON, msgSubstr: "not valid UTF-8 (at byte 11)"},
		{name: "duplicate key", body: `{"model":"a","stream":true,"model":"b"}`, wantErr: true, status: 400, code: CodeInvalidJSON, msgSubstr: `key "model" twice`},
		{name: "duplicate nested key", body: `{"model":"m","messages":[{"role":"user","content":"x","role":"system"}]}`, wantErr: true, status: 400, msgSubstr: `key "role" twice`},
		{name: "duplicate escaped key", body: `{"model":"m","mod\u0065l":"n"}`, wantErr: true, status: 400, msgSubstr: `key "model" twice`},
		{name: "duplicate among many keys", body: `{"a":1,"b":1,"c":1,"d":1,"e":1,"f":1,"g":1,"h":1,"i":1,"j":1,"k":1,"l":1,"m":1,"n":1,"o":1,"p":1,"q":1,"r":1,"a":2}`, wantErr: true, status: 400, msgSubstr: `key "a" twice`},
		{name: "same key in sibling objects", body: `{"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}],"metadata":{"model":"x","k":["model","model"]}}`},
		{name: "key text as a value", body: `{"model":"model","stop":["model"]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req ChatRequest
			err := DecodeJSON(strings.NewReader(tt.body), tt.limit, &req)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("DecodeJSON: %v", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("DecodeJSON error = %v (%T), want *Error", err, err)
			}
			if e.Status != tt.status {
				t.Errorf("status = %d, want %d", e.Status, tt.status)
			}
			if tt.code != "" && e.Code != tt.code {
				t.Errorf("code = %q, want %q (%s)", e.Code, tt.code, e.Message)
			}
			if e.Param != tt.param {
				t.Errorf("param = %q, want %q (%s)", e.Param, tt.param, e.Message)
			}
			if !strings.Contains(e.Message, tt.msgSubstr) {
				t.Errorf("message = %q, want it to contain %q", e.Message, tt.msgSubstr)
			}
		})
	}
}

func TestErrorBodyAndConversion(t *testing.T) {
	e := InvalidRequest("messages[0].role", CodeInvalidValue, "bad role %q", "x")
	b := e.Body()
	if b.Error.Type != TypeInvalidRequest || *b.Error.Param != "messages[0].role" || *b.Error.Code != CodeInvalidValue || b.Error.Message != `bad role "x"` {
		t.Fatalf("Body() = %+v", b)
	}
	back := ErrorFromBody(400, b)
	if *back != *e {
		t.Fatalf("ErrorFromBody(Body()) = %+v, want %+v", back, e)
	}
	if got := ErrorFromBody(429, ErrorBody{}); got.Type != TypeRateLimit || got.Message == "" {
		t.Fatalf("ErrorFromBody(429, empty) = %+v", got)
	}
	if got := AsError(errors.New("secret internal detail")); got.Status != http.StatusInternalServerError || strings.Contains(got.Message, "secret") {
		t.Fatalf("AsError(plain) = %+v", got)
	}
	wrapped := errors.Join(errors.New("ctx"), Unavailable("loading"))
	if got := AsError(wrapped); got.Status != 503 || got.Type != TypeServiceUnavailable {
		t.Fatalf("AsError(wrapped) = %+v", got)
	}
	for status, typ := range map[int]string{400: TypeInvalidRequest, 401: TypeAuthentication, 403: TypePermission, 404: TypeNotFound, 429: TypeRateLimit, 500: TypeServer, 502: TypeServer, 503: TypeServiceUnavailable} {
		if got := TypeForStatus(status); got != typ {
			t.Errorf("TypeForStatus(%d) = %q, want %q", status, got, typ)
		}
		if status != 502 {
			if got := StatusForType(typ); got != status {
				t.Errorf("StatusForType(%q) = %d, want %d", typ, got, status)
			}
		}
	}
}

func TestCheckContentType(t *testing.T) {
	for ct, ok := range map[string]bool{
		"": true, "application/json": true, "application/json; charset=utf-8": true, "Application/JSON": true,
		"application/vnd.api+json": true, "text/plain": false, "application/x-www-form-urlencoded": false,
		"multipart/form-data; boundary=x": false, "application/jsonx": false, ";;": false,
	} {
		err := CheckContentType(ct)
		if (err == nil) != ok {
			t.Errorf("%q: %v", ct, err)
		}
		var e *Error
		if err != nil && (!errors.As(err, &e) || e.Status != http.StatusUnsupportedMediaType) {
			t.Errorf("%q: %v is not a 415", ct, err)
		}
	}
}
