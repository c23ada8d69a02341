package llamacpp

// This file holds the package's //export functions, which cgo.go's C
// trampolines call; cgo forbids definitions in the preamble of such a
// file, so it only includes.

/*
#include <stdbool.h>
#include <stdint.h>
*/
import "C"

import (
	"context"
	"log/slog"
	"runtime/cgo"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// ggml log levels.
const (
	ggmlLogDebug = 1
	ggmlLogInfo  = 2
	ggmlLogWarn  = 3
	ggmlLogError = 4
	ggmlLogCont  = 5
)

var (
	logger   atomic.Pointer[slog.Logger]
	logMu    sync.Mutex
	logLine  strings.Builder
	logLevel int
	// logTap, when set, sees every complete llama.cpp log line; tests use it
	// to read llama.cpp's own memory accounting.
	logTap atomic.Pointer[func(string)]
)

func currentLogger() *slog.Logger {
	if l := logger.Load(); l != nil {
		return l
	}
	return slog.Default()
}

// cortexLlamaLog receives llama.cpp and ggml log output, which arrives in
// pieces (a line may be continued with level CONT), and forwards whole
// lines to slog: errors as warnings (the engine returns the error itself),
// everything else at debug level.
//
//export cortexLlamaLog
func cortexLlamaLog(level C.int, text *C.char, _ unsafe.Pointer) {
	s := C.GoString(text)
	logMu.Lock()
	defer logMu.Unlock()
	if int(level) != ggmlLogCont {
		logLevel = int(level)
	}
	for s != "" {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			logLine.WriteString(s)
			return
		}
		logLine.WriteString(s[:i])
		emitLogLine(logLine.String(), logLevel)
		logLine.Reset()
		s = s[i+1:]
	}
}

func emitLogLine(line string, level int) {
	if line == "" {
		return
	}
	if tap := logTap.Load(); tap != nil {
		(*tap)(line)
	}
	l := currentLogger()
	lvl := slog.LevelDebug
	if level == ggmlLogError {
		lvl = slog.LevelWarn
	}
	if l.Enabled(context.Background(), lvl) {
		l.Log(context.Background(), lvl, "llama.cpp", "line", line)
	}
}

// cortexLoadProgress receives llama.cpp's model loading progress for the
// function behind handle (loadCModel). The callback runs inside llama.cpp,
// and a Go panic cannot unwind through C frames, so none escapes; loading
// always continues.
//
//export cortexLoadProgress
func cortexLoadProgress(progress C.float, handle C.uintptr_t) (cont C.bool) {
	// Set first: a recovered panic returns what the result holds.
	cont = true
	defer func() {
		if r := recover(); r != nil {
			currentLogger().Warn("Load progress callback panicked", "panic", r)
		}
	}()
	if f, ok := cgo.Handle(handle).Value().(func(float32)); ok {
		f(float32(progress))
	}
	return cont
}
