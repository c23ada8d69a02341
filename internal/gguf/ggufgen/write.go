package ggufgen

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/helexa-ai/cortex/internal/gguf"
)

// Tensor is one tensor to write. Fill must write exactly the tensor's
// byte size (Type.TensorBytes(Shape)).
type Tensor struct {
	Name  string
	Shape []uint64
	Type  gguf.GGMLType
	Fill  func(w io.Writer) error
}

// Write writes a GGUF v3 file with the given metadata and tensors. The
// tensor data section is aligned to general.alignment when present, else to
// 32 bytes.
func Write(w io.Writer, kvs []gguf.KV, tensors []Tensor) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	cw := &countWriter{w: bw}
	align := uint64(gguf.DefaultAlignment)
	for _, kv := range kvs {
		if kv.Key == "general.alignment" {
			a, ok := kv.Value.Uint()
			if !ok || a == 0 || a&(a-1) != 0 {
				return fmt.Errorf("general.alignment must be a power of two")
			}
			align = a
		}
	}
	cw.bytes([]byte(gguf.Magic))
	cw.u32(3)
	cw.u64(uint64(len(tensors)))
	cw.u64(uint64(len(kvs)))
	for _, kv := range kvs {
		cw.str(kv.Key)
		cw.u32(uint32(kv.Value.Type))
		if err := cw.value(kv.Value); err != nil {
			return fmt.Errorf("writing %s: %w", kv.Key, err)
		}
	}
	sizes := make([]int64, len(tensors))
	var off uint64
	for i, t := range tensors {
		if len(t.Shape) == 0 || len(t.Shape) > gguf.MaxDims {
			return fmt.Errorf("tensor %s: %d dimensions", t.Name, len(t.Shape))
		}
		n, err := t.Type.TensorBytes(t.Shape)
		if err != nil {
			return fmt.Errorf("tensor %s: %w", t.Name, err)
		}
		sizes[i] = n
		cw.str(t.Name)
		cw.u32(uint32(len(t.Shape)))
		for _, d := range t.Shape {
			cw.u64(d)
		}
		cw.u32(uint32(t.Type))
		cw.u64(off)
		off += uint64(alignUp(n, int64(align)))
	}
	cw.pad(align)
	for i, t := range tensors {
		start := cw.n
		if t.Fill != nil {
			if err := t.Fill(cw); err != nil {
				return fmt.Errorf("tensor %s: %w", t.Name, err)
			}
		} else {
			cw.zeros(sizes[i])
		}
		if cw.err != nil {
			return cw.err
		}
		if got := cw.n - start; got != sizes[i] {
			return fmt.Errorf("tensor %s: wrote %d bytes, want %d", t.Name, got, sizes[i])
		}
		cw.pad(align)
	}
	if cw.err != nil {
		return cw.err
	}
	return bw.Flush()
}

type countWriter struct {
	w   io.Writer
	n   int64
	err error
	b   [8]byte
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}

func (c *countWriter) bytes(p []byte) { _, _ = c.Write(p) }

func (c *countWriter) u8(v uint8) { c.b[0] = v; c.bytes(c.b[:1]) }
func (c *countWriter) u16(v uint16) {
	binary.LittleEndian.PutUint16(c.b[:], v)
	c.bytes(c.b[:2])
}
func (c *countWriter) u32(v uint32) {
	binary.LittleEndian.PutUint32(c.b[:], v)
	c.bytes(c.b[:4])
}
func (c *countWriter) u64(v uint64) {
	binary.LittleEndian.PutUint64(c.b[:], v)
	c.bytes(c.b[:8])
}
func (c *countWriter) str(s string) { c.u64(uint64(len(s))); c.bytes([]byte(s)) }

func (c *countWriter) zeros(n int64) {
	var z [4096]byte
	for n > 0 {
		k := min(n, int64(len(z)))
		c.bytes(z[:k])
		n -= k
	}
}

func alignUp(n, a int64) int64 { return (n + a - 1) / a * a }

func (c *countWriter) pad(align uint64) {
	c.zeros(alignUp(c.n, int64(align)) - c.n)
}

var errValueMismatch = errors.New("value does not match its type")

func (c *countWriter) value(v gguf.Value) error {
	if v.Type == gguf.TypeArray {
		c.u32(uint32(v.Elem))
		c.u64(uint64(v.Len()))
		switch a := v.Any().(type) {
		case []uint64:
			for _, x := range a {
				if err := c.scalar(v.Elem, x); err != nil {
					return err
				}
			}
		case []int64:
			for _, x := range a {
				if err := c.scalar(v.Elem, x); err != nil {
					return err
				}
			}
		case []float64:
			for _, x := range a {
				if err := c.scalar(v.Elem, x); err != nil {
					return err
				}
			}
		case []bool:
			for _, x := range a {
				if err := c.scalar(v.Elem, x); err != nil {
					return err
				}
			}
		case []string:
			if v.Elem != gguf.TypeString {
				return errValueMismatch
			}
			for _, x := range a {
				c.str(x)
			}
		case []gguf.Value:
			if v.Elem != gguf.TypeArray {
				return errValueMismatch
			}
			for _, x := range a {
				if err := c.value(x); err != nil {
					return err
				}
			}
		default:
			return errValueMismatch
		}
		return nil
	}
	return c.scalar(v.Type, v.Any())
}

func (c *countWriter) scalar(t gguf.ValueType, x any) error {
	switch t {
	case gguf.TypeString:
		s, ok := x.(string)
		if !ok {
			return errValueMismatch
		}
		c.str(s)
		return nil
	case gguf.TypeBool:
		b, ok := x.(bool)
		if !ok {
			return errValueMismatch
		}
		if b {
			c.u8(1)
		} else {
			c.u8(0)
		}
		return nil
	case gguf.TypeFloat32, gguf.TypeFloat64:
		f, ok := x.(float64)
		if !ok {
			return errValueMismatch
		}
		if t == gguf.TypeFloat32 {
			c.u32(math.Float32bits(float32(f)))
		} else {
			c.u64(math.Float64bits(f))
		}
		return nil
	}
	var u uint64
	switch n := x.(type) {
	case uint64:
		u = n
	case int64:
		u = uint64(n)
	default:
		return errValueMismatch
	}
	switch t {
	case gguf.TypeUint8, gguf.TypeInt8:
		c.u8(uint8(u))
	case gguf.TypeUint16, gguf.TypeInt16:
		c.u16(uint16(u))
	case gguf.TypeUint32, gguf.TypeInt32:
		c.u32(uint32(u))
	case gguf.TypeUint64, gguf.TypeInt64:
		c.u64(u)
	default:
		return fmt.Errorf("unknown value type %d", t)
	}
	return nil
}
