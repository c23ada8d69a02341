// Package units renders quantities the way cortex shows them to people in
// `kubectl get` columns and messages.
package units

import (
	"fmt"
	"strconv"
)

// prefixes are the binary prefixes after Ki; an int64 ends in the exbibytes.
const prefixes = "KMGTPE"

// scale divides b by the largest power of 1024 that leaves at least 1 and
// returns the quotient and the prefix letter of that power; ok is false for
// less than 1 KiB, which is written in plain bytes.
func scale(b int64) (v float64, prefix byte, ok bool) {
	const unit = 1024
	if b < unit {
		return 0, 0, false
	}
	v = float64(b) / unit
	i := 0
	for v >= unit && i < len(prefixes)-1 {
		v /= unit
		i++
	}
	return v, prefixes[i], true
}

// Bytes renders b in binary units with one decimal, Kubernetes-style
// suffixes, for columns: "512", "1.5Ki", "384.0Mi", "14.2Gi".
func Bytes(b int64) string {
	v, p, ok := scale(b)
	if !ok {
		return strconv.FormatInt(b, 10)
	}
	return fmt.Sprintf("%.1f%ci", v, p)
}

// IECBytes renders b in binary units with one decimal and IEC symbols, for
// messages: "512 B", "1.5 KiB", "14.2 GiB".
func IECBytes(b int64) string {
	v, p, ok := scale(b)
	if !ok {
		return strconv.FormatInt(b, 10) + " B"
	}
	return fmt.Sprintf("%.1f %ciB", v, p)
}

// FreeOfTotal renders "free/total", e.g. "9.8Gi/80.0Gi".
func FreeOfTotal(free, total int64) string {
	return Bytes(free) + "/" + Bytes(total)
}
