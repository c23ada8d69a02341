package gguf

import (
	"fmt"
	"math"
)

// GGMLType is the element type of a tensor, numbered as in ggml.h.
type GGMLType uint32

// The ggml tensor types. Numbers 4, 5, 31–33 and 36–38 were used by formats
// ggml removed; files carrying them are read but their sizes are unknown.
const (
	TypeF32     GGMLType = 0
	TypeF16     GGMLType = 1
	TypeQ4_0    GGMLType = 2
	TypeQ4_1    GGMLType = 3
	TypeQ5_0    GGMLType = 6
	TypeQ5_1    GGMLType = 7
	TypeQ8_0    GGMLType = 8
	TypeQ8_1    GGMLType = 9
	TypeQ2_K    GGMLType = 10
	TypeQ3_K    GGMLType = 11
	TypeQ4_K    GGMLType = 12
	TypeQ5_K    GGMLType = 13
	TypeQ6_K    GGMLType = 14
	TypeQ8_K    GGMLType = 15
	TypeIQ2_XXS GGMLType = 16
	TypeIQ2_XS  GGMLType = 17
	TypeIQ3_XXS GGMLType = 18
	TypeIQ1_S   GGMLType = 19
	TypeIQ4_NL  GGMLType = 20
	TypeIQ3_S   GGMLType = 21
	TypeIQ2_S   GGMLType = 22
	TypeIQ4_XS  GGMLType = 23
	TypeI8      GGMLType = 24
	TypeI16     GGMLType = 25
	TypeI32     GGMLType = 26
	TypeI64     GGMLType = 27
	TypeF64     GGMLType = 28
	TypeIQ1_M   GGMLType = 29
	TypeBF16    GGMLType = 30
	TypeTQ1_0   GGMLType = 34
	TypeTQ2_0   GGMLType = 35
	TypeMXFP4   GGMLType = 39
)

// typeTraits is the storage layout of one ggml type: blockSize elements are
// stored in typeSize bytes. The quantised block sizes were checked against
// sizeof(block_*) of the ggml revision the engine builds.
type typeTraits struct {
	name      string
	blockSize int64
	typeSize  int64
}

var traits = map[GGMLType]typeTraits{
	TypeF32:     {"F32", 1, 4},
	TypeF16:     {"F16", 1, 2},
	TypeQ4_0:    {"Q4_0", 32, 18},
	TypeQ4_1:    {"Q4_1", 32, 20},
	TypeQ5_0:    {"Q5_0", 32, 22},
	TypeQ5_1:    {"Q5_1", 32, 24},
	TypeQ8_0:    {"Q8_0", 32, 34},
	TypeQ8_1:    {"Q8_1", 32, 36},
	TypeQ2_K:    {"Q2_K", 256, 84},
	TypeQ3_K:    {"Q3_K", 256, 110},
	TypeQ4_K:    {"Q4_K", 256, 144},
	TypeQ5_K:    {"Q5_K", 256, 176},
	TypeQ6_K:    {"Q6_K", 256, 210},
	TypeQ8_K:    {"Q8_K", 256, 292},
	TypeIQ2_XXS: {"IQ2_XXS", 256, 66},
	TypeIQ2_XS:  {"IQ2_XS", 256, 74},
	TypeIQ3_XXS: {"IQ3_XXS", 256, 98},
	TypeIQ1_S:   {"IQ1_S", 256, 50},
	TypeIQ4_NL:  {"IQ4_NL", 32, 18},
	TypeIQ3_S:   {"IQ3_S", 256, 110},
	TypeIQ2_S:   {"IQ2_S", 256, 82},
	TypeIQ4_XS:  {"IQ4_XS", 256, 136},
	TypeI8:      {"I8", 1, 1},
	TypeI16:     {"I16", 1, 2},
	TypeI32:     {"I32", 1, 4},
	TypeI64:     {"I64", 1, 8},
	TypeF64:     {"F64", 1, 8},
	TypeIQ1_M:   {"IQ1_M", 256, 56},
	TypeBF16:    {"BF16", 1, 2},
	TypeTQ1_0:   {"TQ1_0", 256, 54},
	TypeTQ2_0:   {"TQ2_0", 256, 66},
	TypeMXFP4:   {"MXFP4", 32, 17},
}

// String is the name ggml uses for the type ("Q4_K"), or "type(N)".
func (t GGMLType) String() string {
	if tr, ok := traits[t]; ok {
		return tr.name
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// Known reports whether the type's storage layout is known.
func (t GGMLType) Known() bool {
	_, ok := traits[t]
	return ok
}

// BlockSize is the number of elements in one block (1 for plain types).
func (t GGMLType) BlockSize() int64 { return traits[t].blockSize }

// TypeSize is the number of bytes of one block.
func (t GGMLType) TypeSize() int64 { return traits[t].typeSize }

// ParseGGMLType returns the type whose name is s (case-insensitive).
func ParseGGMLType(s string) (GGMLType, error) {
	for t, tr := range traits {
		if equalFold(tr.name, s) {
			return t, nil
		}
	}
	return 0, fmt.Errorf("unknown ggml type %q", s)
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := a[i], b[i]
		if 'A' <= ca && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if 'A' <= cb && cb <= 'Z' {
			cb += 'a' - 'A'
		}
		if ca != cb {
			return false
		}
	}
	return true
}

// TensorBytes is the storage size of a tensor of the given shape. The first
// dimension (the row) must be a whole number of blocks, as ggml requires.
func (t GGMLType) TensorBytes(shape []uint64) (int64, error) {
	tr, ok := traits[t]
	if !ok {
		return 0, fmt.Errorf("size of ggml type %s is unknown", t)
	}
	n := uint64(1)
	for _, d := range shape {
		if d != 0 && n > math.MaxInt64/d {
			return 0, fmt.Errorf("tensor shape %v overflows", shape)
		}
		n *= d
	}
	if len(shape) > 0 && shape[0]%uint64(tr.blockSize) != 0 {
		return 0, fmt.Errorf("row of %d elements is not a whole number of %s blocks of %d", shape[0], t, tr.blockSize)
	}
	blocks := n / uint64(tr.blockSize)
	if blocks > math.MaxInt64/uint64(tr.typeSize) {
		return 0, fmt.Errorf("tensor shape %v overflows", shape)
	}
	return int64(blocks) * tr.typeSize, nil
}

// bytesPerElement is the average storage per element, for estimates.
func (t GGMLType) bytesPerElement() float64 {
	tr, ok := traits[t]
	if !ok {
		return 2
	}
	return float64(tr.typeSize) / float64(tr.blockSize)
}
