// Package realengine tests the neuron with the real llama.cpp engine: the
// HTTP server in process on loopback with stories260K and generated llama
// models, the neuron binary as a real process, and a benchmark of the HTTP
// path against the engine called directly. It holds only tests; they link
// llama.cpp (build with CGO_CPPFLAGS=-I<repo>/hack/include).
package realengine
