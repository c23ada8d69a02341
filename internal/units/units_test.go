package units

import (
	"math"
	"testing"
)

func TestBytes(t *testing.T) {
	for _, tc := range []struct {
		in        int64
		want, iec string
	}{
		{0, "0", "0 B"},
		{-5, "-5", "-5 B"},
		{1023, "1023", "1023 B"},
		{1024, "1.0Ki", "1.0 KiB"},
		{1536, "1.5Ki", "1.5 KiB"},
		{1<<20 - 1, "1024.0Ki", "1024.0 KiB"}, // rounds up without changing unit
		{384 << 20, "384.0Mi", "384.0 MiB"},
		{3435973837, "3.2Gi", "3.2 GiB"},
		{15246700000, "14.2Gi", "14.2 GiB"},
		{3 << 40, "3.0Ti", "3.0 TiB"},
		{1 << 50, "1.0Pi", "1.0 PiB"},
		{math.MaxInt64, "8.0Ei", "8.0 EiB"},
	} {
		if got := Bytes(tc.in); got != tc.want {
			t.Errorf("Bytes(%d) = %q, want %q", tc.in, got, tc.want)
		}
		if got := IECBytes(tc.in); got != tc.iec {
			t.Errorf("IECBytes(%d) = %q, want %q", tc.in, got, tc.iec)
		}
	}
	if got := FreeOfTotal(256<<20, 1<<30); got != "256.0Mi/1.0Gi" {
		t.Errorf("FreeOfTotal = %q", got)
	}
}
