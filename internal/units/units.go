// Package units renders quantities the way cortex shows them to people in
// `kubectl get` columns and messages.
package units

import "fmt"

// Bytes renders b in binary units with one decimal, Kubernetes-style
// suffixes: "512", "1.5Ki", "384.0Mi", "14.2Gi".
func Bytes(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit && exp < 4; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ci", float64(b)/float64(div), "KMGTP"[exp])
}

// FreeOfTotal renders "free/total", e.g. "9.8Gi/80.0Gi".
func FreeOfTotal(free, total int64) string {
	return Bytes(free) + "/" + Bytes(total)
}
