// The llama.cpp and ggml headers of the pinned github.com/ollama/ollama
// module, reached through the link hack/llama-headers.sh makes under
// _pinned/ (cgo.go's #cgo lines name it). Every cgo file of this package
// includes this header first.
#ifndef CORTEX_PINNED_H
#define CORTEX_PINNED_H

#if !__has_include(<llama.h>) || !__has_include(<ggml-backend.h>)
#error "the pinned llama.cpp headers are not linked: run 'make llama-headers' (hack/llama-headers.sh). If go.mod pins a new github.com/ollama/ollama, follow 'Upgrading llama.cpp' in docs/development.md."
#else
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <ggml.h>
#include <ggml-backend.h>
#include <llama.h>
#endif

#endif
