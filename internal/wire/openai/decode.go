package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// DefaultBodyLimit is the request body size DecodeJSON callers use unless
// configured otherwise: long agent histories with images run to megabytes.
const DefaultBodyLimit = 32 << 20

// DecodeJSON reads one JSON object from r into v, reading at most limit
// bytes. Unknown fields are ignored, so newer clients keep working; a known
// field of the wrong type is a 400 *Error whose Param is the field's path
// (e.g. "messages[2].content"), a body over limit is a 413. The error is
// always an *Error, ready to render.
func DecodeJSON(r io.Reader, limit int64, v any) error {
	if limit <= 0 {
		limit = DefaultBodyLimit
	}
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return InvalidRequest("", CodeInvalidJSON, "Could not read the request body: %v.", err)
	}
	if int64(len(data)) > limit {
		return RequestTooLarge(limit)
	}
	return DecodeJSONBytes(data, v)
}

// CheckContentType accepts the Content-Type of a JSON request body:
// application/json or any +json type, with any parameters, or none at all
// (clients that set no header still send JSON). Anything else (a form, a
// multipart upload, plain text) is a 415 *Error that says what to send,
// rather than a confusing JSON syntax error.
func CheckContentType(header string) error {
	if strings.TrimSpace(header) == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(header)
	if err == nil && (mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))) {
		return nil
	}
	return NewError(http.StatusUnsupportedMediaType, TypeInvalidRequest, CodeUnsupportedMediaType, "",
		"Unsupported Content-Type %q: send the request body as JSON with Content-Type: application/json.", header)
}

// DecodeJSONBytes is DecodeJSON for a body already in memory. Invalid
// UTF-8 is rejected rather than silently replaced: the text would reach the
// model altered.
func DecodeJSONBytes(data []byte, v any) error {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return InvalidRequest("", CodeInvalidJSON, "The request body is empty; expected a JSON object.")
	}
	if !utf8.Valid(trimmed) {
		return InvalidRequest("", CodeInvalidJSON, "The request body is not valid UTF-8 (at byte %d).", invalidUTF8At(data))
	}
	if trimmed[0] != '{' {
		if !json.Valid(trimmed) {
			return invalidJSON(trimmed)
		}
		return InvalidRequest("", CodeInvalidType, "The request body must be a JSON object, but got %s.", jsonKind(trimmed))
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if err := dec.Decode(v); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) || errors.Is(err, io.ErrUnexpectedEOF) {
			return invalidJSON(trimmed)
		}
		t := reflect.TypeOf(v)
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if path, msg, ok := locate(t, trimmed, ""); ok {
			code := CodeInvalidType
			if strings.HasPrefix(msg, "Invalid value") {
				code = CodeInvalidValue
			}
			return InvalidRequest(path, code, "%s", msg)
		}
		return InvalidRequest("", CodeInvalidValue, "The request body could not be decoded: %v.", err)
	}
	if len(bytes.TrimSpace(trimmed[dec.InputOffset():])) > 0 {
		return InvalidRequest("", CodeInvalidJSON, "The request body has data after its JSON object.")
	}
	if key, ok := duplicateKey(trimmed); ok {
		return InvalidRequest("", CodeInvalidJSON, "The request body has the key %q twice in one object.", key)
	}
	return nil
}

// duplicateKey finds a key that appears twice in one object of data, which
// must be valid JSON. encoding/json keeps the last value silently, another
// parser the first; a request whose meaning depends on the parser is
// refused. Objects with few keys are checked by a scan, large ones through
// a set, so a hostile object with many keys costs linear time.
func duplicateKey(data []byte) (string, bool) {
	type frame struct {
		object    bool
		expectKey bool
		start     int // index of the frame's first key in keys
		set       map[string]struct{}
	}
	const scanKeys = 16
	var stack []frame
	var keys []string
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '{':
			stack = append(stack, frame{object: true, expectKey: true, start: len(keys)})
		case '[':
			stack = append(stack, frame{start: len(keys)})
		case '}', ']':
			if len(stack) > 0 {
				keys = keys[:stack[len(stack)-1].start]
				stack = stack[:len(stack)-1]
			}
		case ',':
			if len(stack) > 0 && stack[len(stack)-1].object {
				stack[len(stack)-1].expectKey = true
			}
		case '"':
			end, escaped := i+1, false
			for ; end < len(data) && data[end] != '"'; end++ {
				if data[end] == '\\' {
					escaped = true
					end++
				}
			}
			raw := data[i : end+1]
			i = end
			if len(stack) == 0 || !stack[len(stack)-1].expectKey {
				continue
			}
			f := &stack[len(stack)-1]
			f.expectKey = false
			key := string(raw[1 : len(raw)-1])
			if escaped {
				_ = json.Unmarshal(raw, &key)
			}
			if f.set != nil {
				if _, dup := f.set[key]; dup {
					return key, true
				}
				f.set[key] = struct{}{}
				continue
			}
			for _, k := range keys[f.start:] {
				if k == key {
					return key, true
				}
			}
			keys = append(keys, key)
			if len(keys)-f.start > scanKeys {
				f.set = make(map[string]struct{}, 2*scanKeys)
				for _, k := range keys[f.start:] {
					f.set[k] = struct{}{}
				}
				keys = keys[:f.start]
			}
		}
	}
	return "", false
}

// invalidUTF8At is the offset of the first byte of data that does not
// start a valid UTF-8 sequence.
func invalidUTF8At(data []byte) int {
	for i := 0; i < len(data); {
		r, n := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(data)
}

func invalidJSON(data []byte) *Error {
	var v any
	err := json.Unmarshal(data, &v)
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return InvalidRequest("", CodeInvalidJSON,
			"The request body is not valid JSON: %s (at byte %d).", syn.Error(), syn.Offset)
	}
	return InvalidRequest("", CodeInvalidJSON, "The request body is not valid JSON: it ends early.")
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// locate finds the first place in raw that does not fit type t, walking the
// struct, slice and map structure the way encoding/json does, so an error can
// name the field by its full path with list indices (encoding/json reports
// neither the indices nor the path of errors from custom unmarshalers). It
// runs only after a decode already failed.
func locate(t reflect.Type, raw []byte, path string) (string, string, bool) {
	probe := reflect.New(t)
	err := json.Unmarshal(raw, probe.Interface())
	if err == nil {
		return "", "", false
	}
	if t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) {
		if t.Kind() == reflect.Pointer && isNull(raw) {
			return "", "", false
		}
		if p, msg, ok := locateCustom(t, raw, path); ok {
			return p, msg, true
		}
		return path, fmt.Sprintf("Invalid value for '%s': %s.", orBody(path), strings.TrimSuffix(unwrapJSONErr(err), ".")), true
	}
	switch t.Kind() {
	case reflect.Pointer:
		if isNull(raw) {
			return "", "", false
		}
		return locate(t.Elem(), raw, path)
	case reflect.Struct:
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			return path, typeMessage(path, "an object", raw), true
		}
		if p, msg, ok := locateFields(t, m, path); ok {
			return p, msg, true
		}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			break
		}
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) != nil {
			return path, typeMessage(path, "an array", raw), true
		}
		for i, item := range items {
			if p, msg, ok := locate(t.Elem(), item, path+"["+strconv.Itoa(i)+"]"); ok {
				return p, msg, true
			}
		}
	case reflect.Map:
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			return path, typeMessage(path, "an object", raw), true
		}
		for k, item := range m {
			if p, msg, ok := locate(t.Elem(), item, joinPath(path, k)); ok {
				return p, msg, true
			}
		}
	case reflect.String:
		return path, typeMessage(path, "a string", raw), true
	case reflect.Bool:
		return path, typeMessage(path, "a boolean", raw), true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return path, typeMessage(path, "an integer", raw), true
	case reflect.Float32, reflect.Float64:
		return path, typeMessage(path, "a number", raw), true
	}
	return path, fmt.Sprintf("Invalid value for '%s': %s.", orBody(path), strings.TrimSuffix(unwrapJSONErr(err), ".")), true
}

// locateCustom looks inside a type with its own UnmarshalJSON, so errors
// deep in a union (string-or-list content, items decoded by type) still
// name their field: a JSON array is checked against the struct's untagged
// slice field (the union's list form), an object against its tagged fields.
func locateCustom(t reflect.Type, raw []byte, path string) (string, string, bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return "", "", false
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", "", false
	}
	switch raw[0] {
	case '[':
		for i := range t.NumField() {
			f := t.Field(i)
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if !f.IsExported() || f.Tag.Get("json") != "" || ft.Kind() != reflect.Slice || ft.Elem().Kind() == reflect.Uint8 {
				continue
			}
			var items []json.RawMessage
			if json.Unmarshal(raw, &items) != nil {
				return "", "", false
			}
			for j, item := range items {
				if p, msg, ok := locate(ft.Elem(), item, path+"["+strconv.Itoa(j)+"]"); ok {
					return p, msg, true
				}
			}
			return "", "", false
		}
	case '{':
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			return "", "", false
		}
		return locateFields(t, m, path)
	}
	return "", "", false
}

// locateFields checks the JSON members that map to t's fields, embedded
// structs included.
func locateFields(t reflect.Type, m map[string]json.RawMessage, path string) (string, string, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				if p, msg, ok := locateFields(ft, m, path); ok {
					return p, msg, true
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		raw, ok := m[name]
		if !ok {
			for k, v := range m {
				if strings.EqualFold(k, name) {
					raw, ok = v, true
					break
				}
			}
		}
		if !ok {
			continue
		}
		if p, msg, found := locate(f.Type, raw, joinPath(path, name)); found {
			return p, msg, true
		}
	}
	return "", "", false
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func orBody(path string) string {
	if path == "" {
		return "body"
	}
	return path
}

func typeMessage(path, want string, raw []byte) string {
	return fmt.Sprintf("Invalid type for '%s': expected %s, but got %s instead.", orBody(path), want, jsonKind(raw))
}

func unwrapJSONErr(err error) string {
	return strings.TrimPrefix(err.Error(), "json: ")
}

func isNull(raw []byte) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

// jsonKind names the JSON type of raw the way error messages say it.
func jsonKind(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		if bytes.ContainsAny(raw, ".eE") {
			return "a number"
		}
		return "an integer"
	}
}
