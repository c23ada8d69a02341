// Package ggufgen writes GGUF files: any metadata and tensors (Write), and
// llama-architecture models with random weights that llama.cpp loads and
// generates from (WriteRandomLlama). Tests and benchmarks use it to build
// models of any shape, and the local stack to serve generated models; the
// reader stays in package gguf.
package ggufgen
