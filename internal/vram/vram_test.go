package vram

import (
	"slices"
	"testing"
)

func TestShares(t *testing.T) {
	for _, tc := range []struct {
		name string
		need Need
		free []int64
		want []int64
		ok   bool
	}{
		{"one device", Need{Split: 10, Each: 2}, []int64{12}, []int64{12}, true},
		{"one device, short by one", Need{Split: 10, Each: 2}, []int64{11}, []int64{12}, false},
		{"even split, Each on both", Need{Split: 16, Each: 1}, []int64{9, 9}, []int64{9, 9}, true},
		// Split + Each = 170 is below the free sum (176), but the replica
		// holds Each on both devices (180): counting Each once would wrongly
		// say it fits
		{"Each counted on every device", Need{Split: 160, Each: 10}, []int64{88, 88}, []int64{90, 90}, false},
		{"in proportion to free", Need{Split: 30, Each: 0}, []int64{20, 10}, []int64{20, 10}, true},
		{"rounding goes to the last", Need{Split: 10, Each: 0}, []int64{10, 10, 10}, []int64{3, 3, 4}, true},
		{"four devices", Need{Split: 30, Each: 1}, []int64{10, 10, 10, 10}, []int64{8, 8, 8, 10}, true},
		{"no free memory", Need{Split: 1}, []int64{0, 0}, nil, false},
		{"no devices", Need{Split: 1}, nil, nil, false},
	} {
		got, ok := Shares(tc.need, tc.free)
		if ok != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("%s: Shares(%+v, %v) = %v %v, want %v %v", tc.name, tc.need, tc.free, got, ok, tc.want, tc.ok)
		}
		if Fits(tc.need, tc.free) != tc.ok {
			t.Errorf("%s: Fits disagrees with Shares", tc.name)
		}
		var sum int64
		for _, s := range got {
			sum += s
		}
		if got != nil && sum != tc.need.Total(len(tc.free)) {
			t.Errorf("%s: shares sum to %d, want %d", tc.name, sum, tc.need.Total(len(tc.free)))
		}
	}
}
