// Package gguf reads the header of GGUF files (versions 2 and 3): metadata
// key/values and tensor descriptions, from any io.ReaderAt so that a local
// file and a remote one read through HTTP range requests are handled alike.
// It also estimates the memory a model needs in the engine. Package ggufgen
// writes GGUF files (small ones for tests, random-weight llamas).
package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
)

// Magic is the first four bytes of every GGUF file.
const Magic = "GGUF"

// DefaultAlignment is the tensor data alignment when general.alignment is
// absent.
const DefaultAlignment = 32

// Limits that keep a corrupt or hostile header from making the reader
// allocate without bound. Real models stay far below them (the largest
// tokenizer arrays hold a few hundred thousand entries).
const (
	maxStringLen  = 64 << 20
	maxArrayLen   = 1 << 26
	maxKVCount    = 1 << 20
	maxTensorCnt  = 1 << 22
	maxArrayDepth = 4
)

// MaxDims is the most dimensions a tensor has (GGML_MAX_DIMS).
const MaxDims = 4

// ErrNotGGUF is returned when the input does not start with the GGUF magic.
var ErrNotGGUF = errors.New("not a GGUF file")

// ValueType is the type tag of a metadata value.
type ValueType uint32

// Metadata value types, numbered as in the GGUF specification.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

var valueTypeNames = [...]string{"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array", "uint64", "int64", "float64"}

func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("valuetype(%d)", uint32(t))
}

func (t ValueType) isUnsigned() bool {
	return t == TypeUint8 || t == TypeUint16 || t == TypeUint32 || t == TypeUint64
}

func (t ValueType) isSigned() bool {
	return t == TypeInt8 || t == TypeInt16 || t == TypeInt32 || t == TypeInt64
}

func (t ValueType) isFloat() bool { return t == TypeFloat32 || t == TypeFloat64 }

// Value is one metadata value. Integers are held widened to 64 bits and
// floats to float64; Type keeps the exact type of the file.
type Value struct {
	// Type is the value's type; for arrays, Elem is the element type.
	Type ValueType
	Elem ValueType
	v    any // uint64, int64, float64, bool, string, or a slice of one of them, or []Value
}

// Scalar constructors, used by the writer (package ggufgen).

func Uint8(v uint8) Value     { return Value{Type: TypeUint8, v: uint64(v)} }
func Uint32(v uint32) Value   { return Value{Type: TypeUint32, v: uint64(v)} }
func Uint64(v uint64) Value   { return Value{Type: TypeUint64, v: v} }
func Int32(v int32) Value     { return Value{Type: TypeInt32, v: int64(v)} }
func Int64(v int64) Value     { return Value{Type: TypeInt64, v: v} }
func Float32(v float32) Value { return Value{Type: TypeFloat32, v: float64(v)} }
func Float64(v float64) Value { return Value{Type: TypeFloat64, v: v} }
func Bool(v bool) Value       { return Value{Type: TypeBool, v: v} }
func String(v string) Value   { return Value{Type: TypeString, v: v} }

// Strings is an array of strings.
func Strings(v []string) Value { return Value{Type: TypeArray, Elem: TypeString, v: v} }

// Arrays is an array of arrays.
func Arrays(v []Value) Value { return Value{Type: TypeArray, Elem: TypeArray, v: v} }

// Float32s is an array of float32.
func Float32s(v []float32) Value {
	f := make([]float64, len(v))
	for i, x := range v {
		f[i] = float64(x)
	}
	return Value{Type: TypeArray, Elem: TypeFloat32, v: f}
}

// Int32s is an array of int32.
func Int32s(v []int32) Value {
	n := make([]int64, len(v))
	for i, x := range v {
		n[i] = int64(x)
	}
	return Value{Type: TypeArray, Elem: TypeInt32, v: n}
}

// Uint32s is an array of uint32.
func Uint32s(v []uint32) Value {
	n := make([]uint64, len(v))
	for i, x := range v {
		n[i] = uint64(x)
	}
	return Value{Type: TypeArray, Elem: TypeUint32, v: n}
}

// Uint reports an integer value that is not negative.
func (v Value) Uint() (uint64, bool) {
	switch x := v.v.(type) {
	case uint64:
		return x, true
	case int64:
		if x >= 0 {
			return uint64(x), true
		}
	}
	return 0, false
}

// Int reports an integer value that fits in an int64.
func (v Value) Int() (int64, bool) {
	switch x := v.v.(type) {
	case int64:
		return x, true
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x), true
		}
	}
	return 0, false
}

// Float reports a float or integer value as a float64.
func (v Value) Float() (float64, bool) {
	switch x := v.v.(type) {
	case float64:
		return x, true
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	}
	return 0, false
}

// Bool reports a bool value.
func (v Value) Bool() (bool, bool) {
	b, ok := v.v.(bool)
	return b, ok
}

// Str reports a string value.
func (v Value) Str() (string, bool) {
	s, ok := v.v.(string)
	return s, ok
}

// Len is the number of elements of an array (0 for scalars).
func (v Value) Len() int {
	switch x := v.v.(type) {
	case []uint64:
		return len(x)
	case []int64:
		return len(x)
	case []float64:
		return len(x)
	case []bool:
		return len(x)
	case []string:
		return len(x)
	case []Value:
		return len(x)
	}
	return 0
}

// Strs reports an array of strings.
func (v Value) Strs() ([]string, bool) {
	s, ok := v.v.([]string)
	return s, ok
}

// Ints reports an array of integers as int64, or a scalar integer as a
// one-element slice (GGUF stores per-layer values either way).
func (v Value) Ints() ([]int64, bool) {
	switch x := v.v.(type) {
	case []int64:
		return x, true
	case []uint64:
		out := make([]int64, len(x))
		for i, u := range x {
			if u > math.MaxInt64 {
				return nil, false
			}
			out[i] = int64(u)
		}
		return out, true
	case []bool:
		out := make([]int64, len(x))
		for i, b := range x {
			if b {
				out[i] = 1
			}
		}
		return out, true
	}
	if n, ok := v.Int(); ok {
		return []int64{n}, true
	}
	return nil, false
}

// Floats reports an array of numbers as float64.
func (v Value) Floats() ([]float64, bool) {
	switch x := v.v.(type) {
	case []float64:
		return x, true
	case []int64:
		out := make([]float64, len(x))
		for i, n := range x {
			out[i] = float64(n)
		}
		return out, true
	case []uint64:
		out := make([]float64, len(x))
		for i, n := range x {
			out[i] = float64(n)
		}
		return out, true
	}
	return nil, false
}

// Any is the value as held: uint64, int64, float64, bool, string, a slice
// of one of those, or []Value for arrays of arrays.
func (v Value) Any() any { return v.v }

// KV is one metadata entry.
type KV struct {
	Key   string
	Value Value
}

// TensorInfo describes one tensor of the file.
type TensorInfo struct {
	Name string
	// Shape lists the dimensions in ggml order: Shape[0] is the row length.
	Shape []uint64
	Type  GGMLType
	// Offset is relative to the start of the tensor data section.
	Offset uint64
	// Size is the tensor's storage in bytes. For a type whose layout is
	// unknown it is derived from the next tensor's offset (an upper bound).
	Size int64
}

// Elements is the number of elements of the tensor.
func (t TensorInfo) Elements() uint64 {
	n := uint64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// File is the parsed header of a GGUF file.
type File struct {
	Version uint32
	KV      []KV
	Tensors []TensorInfo
	// Alignment of the tensor data (general.alignment or 32).
	Alignment uint64
	// DataOffset is the absolute offset of the tensor data section.
	DataOffset int64
	// FileSize is the size of the file when the reader knew it, else 0.
	FileSize int64

	index map[string]int
}

// Sizer is implemented by readers that know their size (io.SectionReader,
// HTTPReaderAt); Read then checks that every tensor lies inside the file.
type Sizer interface{ Size() int64 }

// Open reads the header of the GGUF file at path.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	gf, err := Read(io.NewSectionReader(f, 0, st.Size()))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return gf, nil
}

// Read parses the header of a GGUF file. It reads sequentially through a
// large buffer, so a remote reader sees a few big range requests rather than
// one per field.
func Read(r io.ReaderAt) (*File, error) {
	size := int64(-1)
	if s, ok := r.(Sizer); ok {
		size = s.Size()
	}
	limit := int64(math.MaxInt64)
	if size >= 0 {
		limit = size
	}
	bufSize := 1 << 20
	if size >= 0 && size < int64(bufSize) {
		bufSize = max(int(size), 16)
	}
	p := &parser{r: bufio.NewReaderSize(io.NewSectionReader(r, 0, limit), bufSize)}
	f, err := p.file()
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if size >= 0 {
		f.FileSize = size
	}
	f.fillUnknownSizes()
	if size >= 0 {
		for _, t := range f.Tensors {
			end := f.DataOffset + int64(t.Offset) + t.Size
			if end > size || end < f.DataOffset || t.Size < 0 {
				return nil, fmt.Errorf("tensor %s ends at byte %d, past the end of the file (%d bytes)", t.Name, end, size)
			}
		}
	}
	return f, nil
}

type parser struct {
	r   *bufio.Reader
	off int64
	buf [8]byte
}

func (p *parser) read(n int) ([]byte, error) {
	if _, err := io.ReadFull(p.r, p.buf[:n]); err != nil {
		return nil, err
	}
	p.off += int64(n)
	return p.buf[:n], nil
}

func (p *parser) u32() (uint32, error) {
	b, err := p.read(4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (p *parser) u64() (uint64, error) {
	b, err := p.read(8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

func (p *parser) str() (string, error) {
	n, err := p.u64()
	if err != nil {
		return "", err
	}
	if n > maxStringLen {
		return "", fmt.Errorf("string of %d bytes at offset %d is too long", n, p.off-8)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(p.r, b); err != nil {
		return "", err
	}
	p.off += int64(n)
	return string(b), nil
}

func (p *parser) file() (*File, error) {
	b, err := p.read(4)
	if err != nil {
		return nil, err
	}
	if string(b) != Magic {
		return nil, ErrNotGGUF
	}
	f := &File{Alignment: DefaultAlignment}
	if f.Version, err = p.u32(); err != nil {
		return nil, err
	}
	switch {
	case f.Version == 2 || f.Version == 3:
	case f.Version&0xffff == 0 && f.Version != 0:
		return nil, fmt.Errorf("big-endian GGUF files are not supported")
	default:
		return nil, fmt.Errorf("unsupported GGUF version %d", f.Version)
	}
	nTensors, err := p.u64()
	if err != nil {
		return nil, err
	}
	nKV, err := p.u64()
	if err != nil {
		return nil, err
	}
	if nTensors > maxTensorCnt {
		return nil, fmt.Errorf("tensor count %d is implausible", nTensors)
	}
	if nKV > maxKVCount {
		return nil, fmt.Errorf("metadata count %d is implausible", nKV)
	}
	// Capacity is bounded as for arrays: a bogus count fails at EOF
	// instead of allocating up front.
	f.index = make(map[string]int, min(nKV, 1<<10))
	f.KV = make([]KV, 0, min(nKV, 1<<10))
	for i := uint64(0); i < nKV; i++ {
		key, err := p.str()
		if err != nil {
			return nil, fmt.Errorf("reading metadata key %d: %w", i, err)
		}
		t, err := p.u32()
		if err != nil {
			return nil, err
		}
		v, err := p.value(ValueType(t), 0)
		if err != nil {
			return nil, fmt.Errorf("reading metadata %s: %w", key, err)
		}
		if _, dup := f.index[key]; dup {
			return nil, fmt.Errorf("duplicate metadata key %s", key)
		}
		f.index[key] = len(f.KV)
		f.KV = append(f.KV, KV{Key: key, Value: v})
	}
	if v, ok := f.Get("general.alignment"); ok {
		a, ok := v.Uint()
		if !ok || a == 0 || a&(a-1) != 0 || a > 1<<20 {
			return nil, fmt.Errorf("general.alignment %v is not a power of two", v.Any())
		}
		f.Alignment = a
	}
	f.Tensors = make([]TensorInfo, 0, min(nTensors, 1<<16))
	for i := uint64(0); i < nTensors; i++ {
		t, err := p.tensorInfo()
		if err != nil {
			return nil, fmt.Errorf("reading tensor info %d: %w", i, err)
		}
		if t.Offset%f.Alignment != 0 {
			return nil, fmt.Errorf("tensor %s offset %d is not aligned to %d", t.Name, t.Offset, f.Alignment)
		}
		f.Tensors = append(f.Tensors, t)
	}
	f.DataOffset = alignUp(p.off, int64(f.Alignment))
	return f, nil
}

func (p *parser) tensorInfo() (TensorInfo, error) {
	var t TensorInfo
	var err error
	if t.Name, err = p.str(); err != nil {
		return t, err
	}
	nd, err := p.u32()
	if err != nil {
		return t, err
	}
	if nd > MaxDims {
		return t, fmt.Errorf("tensor %s has %d dimensions", t.Name, nd)
	}
	t.Shape = make([]uint64, nd)
	for i := range t.Shape {
		if t.Shape[i], err = p.u64(); err != nil {
			return t, err
		}
	}
	typ, err := p.u32()
	if err != nil {
		return t, err
	}
	t.Type = GGMLType(typ)
	if t.Offset, err = p.u64(); err != nil {
		return t, err
	}
	if t.Type.Known() {
		if t.Size, err = t.Type.TensorBytes(t.Shape); err != nil {
			return t, fmt.Errorf("tensor %s: %w", t.Name, err)
		}
	} else {
		t.Size = -1
	}
	return t, nil
}

// fillUnknownSizes bounds the size of tensors of unknown type by the offset
// of the tensor that follows them in the data section. The offsets are
// sorted once, so a header with many such tensors costs n log n, not n².
func (f *File) fillUnknownSizes() {
	var offsets []uint64
	for i := range f.Tensors {
		t := &f.Tensors[i]
		if t.Size >= 0 {
			continue
		}
		if offsets == nil {
			offsets = make([]uint64, len(f.Tensors))
			for j, o := range f.Tensors {
				offsets[j] = o.Offset
			}
			slices.Sort(offsets)
		}
		j, found := slices.BinarySearch(offsets, t.Offset)
		for found && j < len(offsets) && offsets[j] == t.Offset {
			j++
		}
		switch {
		case j < len(offsets):
			t.Size = int64(offsets[j] - t.Offset)
		case f.FileSize > 0:
			t.Size = f.FileSize - f.DataOffset - int64(t.Offset)
		default:
			t.Size = 0
		}
	}
}

func (p *parser) value(t ValueType, depth int) (Value, error) {
	v := Value{Type: t}
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		b, err := p.read(1)
		if err != nil {
			return v, err
		}
		switch t {
		case TypeUint8:
			v.v = uint64(b[0])
		case TypeInt8:
			v.v = int64(int8(b[0]))
		default:
			v.v = b[0] != 0
		}
	case TypeUint16, TypeInt16:
		b, err := p.read(2)
		if err != nil {
			return v, err
		}
		u := binary.LittleEndian.Uint16(b)
		if t == TypeUint16 {
			v.v = uint64(u)
		} else {
			v.v = int64(int16(u))
		}
	case TypeUint32, TypeInt32, TypeFloat32:
		u, err := p.u32()
		if err != nil {
			return v, err
		}
		switch t {
		case TypeUint32:
			v.v = uint64(u)
		case TypeInt32:
			v.v = int64(int32(u))
		default:
			v.v = float64(math.Float32frombits(u))
		}
	case TypeUint64, TypeInt64, TypeFloat64:
		u, err := p.u64()
		if err != nil {
			return v, err
		}
		switch t {
		case TypeUint64:
			v.v = u
		case TypeInt64:
			v.v = int64(u)
		default:
			v.v = math.Float64frombits(u)
		}
	case TypeString:
		s, err := p.str()
		if err != nil {
			return v, err
		}
		v.v = s
	case TypeArray:
		return p.array(depth)
	default:
		return v, fmt.Errorf("unknown value type %d at offset %d", uint32(t), p.off)
	}
	return v, nil
}

func (p *parser) array(depth int) (Value, error) {
	et, err := p.u32()
	if err != nil {
		return Value{}, err
	}
	n, err := p.u64()
	if err != nil {
		return Value{}, err
	}
	if n > maxArrayLen {
		return Value{}, fmt.Errorf("array of %d elements is too long", n)
	}
	if depth >= maxArrayDepth {
		return Value{}, fmt.Errorf("arrays nested too deep")
	}
	elem := ValueType(et)
	v := Value{Type: TypeArray, Elem: elem}
	// Capacity is bounded so that a bogus count fails at EOF instead of
	// allocating gigabytes up front.
	c := int(min(n, 1<<16))
	switch {
	case elem.isUnsigned():
		a := make([]uint64, 0, c)
		for i := uint64(0); i < n; i++ {
			e, err := p.value(elem, depth+1)
			if err != nil {
				return v, err
			}
			a = append(a, e.v.(uint64))
		}
		v.v = a
	case elem.isSigned():
		a := make([]int64, 0, c)
		for i := uint64(0); i < n; i++ {
			e, err := p.value(elem, depth+1)
			if err != nil {
				return v, err
			}
			a = append(a, e.v.(int64))
		}
		v.v = a
	case elem.isFloat():
		a := make([]float64, 0, c)
		for i := uint64(0); i < n; i++ {
			e, err := p.value(elem, depth+1)
			if err != nil {
				return v, err
			}
			a = append(a, e.v.(float64))
		}
		v.v = a
	case elem == TypeBool:
		a := make([]bool, 0, c)
		for i := uint64(0); i < n; i++ {
			e, err := p.value(elem, depth+1)
			if err != nil {
				return v, err
			}
			a = append(a, e.v.(bool))
		}
		v.v = a
	case elem == TypeString:
		a := make([]string, 0, c)
		for i := uint64(0); i < n; i++ {
			s, err := p.str()
			if err != nil {
				return v, err
			}
			a = append(a, s)
		}
		v.v = a
	case elem == TypeArray:
		a := make([]Value, 0, c)
		for i := uint64(0); i < n; i++ {
			e, err := p.array(depth + 1)
			if err != nil {
				return v, err
			}
			a = append(a, e)
		}
		v.v = a
	default:
		return v, fmt.Errorf("unknown array element type %d", et)
	}
	return v, nil
}

func alignUp(n, a int64) int64 { return (n + a - 1) / a * a }

// Get returns the value of a metadata key.
func (f *File) Get(key string) (Value, bool) {
	if f.index == nil {
		f.reindex()
	}
	i, ok := f.index[key]
	if !ok {
		return Value{}, false
	}
	return f.KV[i].Value, true
}

func (f *File) reindex() {
	f.index = make(map[string]int, len(f.KV))
	for i, kv := range f.KV {
		f.index[kv.Key] = i
	}
}

// String returns a string metadata value.
func (f *File) String(key string) (string, bool) {
	v, ok := f.Get(key)
	if !ok {
		return "", false
	}
	return v.Str()
}

// Uint returns a non-negative integer metadata value.
func (f *File) Uint(key string) (uint64, bool) {
	v, ok := f.Get(key)
	if !ok {
		return 0, false
	}
	return v.Uint()
}

// Int returns an integer metadata value.
func (f *File) Int(key string) (int64, bool) {
	v, ok := f.Get(key)
	if !ok {
		return 0, false
	}
	return v.Int()
}

// Float returns a numeric metadata value as a float64.
func (f *File) Float(key string) (float64, bool) {
	v, ok := f.Get(key)
	if !ok {
		return 0, false
	}
	return v.Float()
}

// Bool returns a bool metadata value.
func (f *File) Bool(key string) (bool, bool) {
	v, ok := f.Get(key)
	if !ok {
		return false, false
	}
	return v.Bool()
}

// Strings returns a string-array metadata value.
func (f *File) Strings(key string) ([]string, bool) {
	v, ok := f.Get(key)
	if !ok {
		return nil, false
	}
	return v.Strs()
}

// Ints returns an integer array (or a scalar as a one-element array).
func (f *File) Ints(key string) ([]int64, bool) {
	v, ok := f.Get(key)
	if !ok {
		return nil, false
	}
	return v.Ints()
}

// Architecture is general.architecture ("llama", "qwen2", …).
func (f *File) Architecture() string {
	s, _ := f.String("general.architecture")
	return s
}

// ArchUint reads "<architecture>.<suffix>", e.g. ArchUint("block_count").
func (f *File) ArchUint(suffix string) (uint64, bool) {
	return f.Uint(f.Architecture() + "." + suffix)
}

// Tensor returns the tensor with the given name.
func (f *File) Tensor(name string) (TensorInfo, bool) {
	for _, t := range f.Tensors {
		if t.Name == name {
			return t, true
		}
	}
	return TensorInfo{}, false
}

// WeightsBytes is the total size of all tensors.
func (f *File) WeightsBytes() int64 {
	var n int64
	for _, t := range f.Tensors {
		n += t.Size
	}
	return n
}

// Parameters is the total number of tensor elements.
func (f *File) Parameters() uint64 {
	var n uint64
	for _, t := range f.Tensors {
		n += t.Elements()
	}
	return n
}

// VocabSize is the number of tokens of the tokenizer, or the architecture's
// vocab_size, or the row count of token_embd.weight.
func (f *File) VocabSize() int {
	if v, ok := f.Get("tokenizer.ggml.tokens"); ok && v.Len() > 0 {
		return v.Len()
	}
	if n, ok := f.ArchUint("vocab_size"); ok {
		return int(n)
	}
	if t, ok := f.Tensor("token_embd.weight"); ok && len(t.Shape) == 2 {
		return int(t.Shape[1])
	}
	return 0
}
