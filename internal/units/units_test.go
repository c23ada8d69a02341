package units

import "testing"

func TestBytes(t *testing.T) {
	for _, tc := range []struct {
		in   int64
		want string
	}{
		{0, "0"}, {1023, "1023"}, {1024, "1.0Ki"}, {1536, "1.5Ki"},
		{384 << 20, "384.0Mi"}, {15246700000, "14.2Gi"}, {3 << 40, "3.0Ti"},
	} {
		if got := Bytes(tc.in); got != tc.want {
			t.Errorf("Bytes(%d) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := FreeOfTotal(256<<20, 1<<30); got != "256.0Mi/1.0Gi" {
		t.Errorf("FreeOfTotal = %q", got)
	}
}
