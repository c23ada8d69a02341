package neuron

import (
	"errors"
	"maps"
	"strings"
	"testing"
)

func TestPlace(t *testing.T) {
	const gi = int64(1 << 30)
	gpus := []devMem{
		{Index: 0, Kind: "cuda", Total: 24 * gi, Free: 4 * gi},
		{Index: 1, Kind: "cuda", Total: 24 * gi, Free: 10 * gi},
		{Index: 2, Kind: "cuda", Total: 24 * gi, Free: 6 * gi},
	}
	tests := []struct {
		name      string
		need      need
		devs      []devMem
		requested []int
		want      map[int]int64
		wantErr   string
	}{
		{name: "fits on the emptiest device", need: need{Split: 5 * gi, Each: gi}, devs: gpus, want: map[int]int64{1: 6 * gi}},
		{name: "exactly fits", need: need{Split: 9 * gi, Each: gi}, devs: gpus, want: map[int]int64{1: 10 * gi}},
		{
			name: "spans the two freest devices in proportion", need: need{Split: 12 * gi, Each: gi}, devs: gpus,
			want: map[int]int64{1: 12*gi*10/16 + gi, 2: 12*gi - 12*gi*10/16 + gi},
		},
		{name: "too big for everything", need: need{Split: 30 * gi, Each: gi}, devs: gpus, wantErr: "needs 33.0 GiB, device 1 has 10.0 GiB free, device 2 has 6.0 GiB free, device 0 has 4.0 GiB free"},
		{name: "requested device", need: need{Split: 2 * gi, Each: gi}, devs: gpus, requested: []int{0}, want: map[int]int64{0: 3 * gi}},
		{name: "requested device too small", need: need{Split: 4 * gi, Each: gi}, devs: gpus, requested: []int{0}, wantErr: "needs 5.0 GiB, device 0 has 4.0 GiB free"},
		{name: "requested pair", need: need{Split: 8 * gi}, devs: gpus, requested: []int{0, 2}, want: map[int]int64{0: 8 * gi * 4 / 10, 2: 8*gi - 8*gi*4/10}},
		{name: "requested device absent", need: need{Split: gi}, devs: gpus, requested: []int{7}, wantErr: "device 7 does not exist"},
		{name: "no devices", need: need{Split: gi}, wantErr: "no device"},
		{name: "full device", need: need{Split: 1}, devs: []devMem{{Index: 0, Kind: "cpu", Total: gi, Free: 0}}, wantErr: "needs 1 B, device 0 has 0 B free"},
		{name: "cpu host", need: need{Split: 100 << 20, Each: 20 << 20}, devs: []devMem{{Index: 0, Kind: "cpu", Total: gi, Free: gi}}, want: map[int]int64{0: 120 << 20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := place(tt.need, tt.devs, tt.requested)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				// Only a lack of memory is a shortfall: the load answers
				// it with insufficient_memory, the rest as bad requests.
				var sf *shortfallError
				if got, want := errors.As(err, &sf), strings.HasPrefix(tt.wantErr, "needs "); got != want {
					t.Fatalf("errors.As(%v, *shortfallError) = %v, want %v", err, got, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			var sum int64
			for _, b := range got {
				sum += b
			}
			if sum != tt.need.Total(len(got)) {
				t.Fatalf("reserved %d in all, need %d", sum, tt.need.Total(len(got)))
			}
		})
	}
}

func TestLabelValue(t *testing.T) {
	for in, want := range map[string]string{
		"NVIDIA H100 80GB HBM3": "NVIDIA-H100-80GB-HBM3",
		"  -weird/name!  ":      "weird-name",
		strings.Repeat("a", 70): strings.Repeat("a", 63),
		"cpu":                   "cpu",
	} {
		if got := labelValue(in); got != want {
			t.Errorf("labelValue(%q) = %q, want %q", in, got, want)
		}
	}
}
