// Package version holds the build's version, set at link time by the
// Makefile (-X github.com/helexa-ai/cortex/internal/version.Version=…).
package version

import "runtime/debug"

// Version is the cortex release or git description of this build.
var Version = "dev"

// String returns Version, falling back to the module version recorded by
// the Go toolchain when the binary was built without the Makefile.
func String() string {
	if Version != "dev" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return Version
}
