package gateway

import (
	"flag"
	"math"
	"strings"
	"testing"
)

func TestPrefixImbalanceFlag(t *testing.T) {
	parse := func(t *testing.T, args ...string) Config {
		t.Helper()
		c := DefaultConfig()
		fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
		c.BindFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := parse(t); c.PrefixImbalance != DefaultPrefixImbalance {
		t.Errorf("default %v, want %v", c.PrefixImbalance, DefaultPrefixImbalance)
	}
	if c := parse(t, "--prefix-imbalance=0.8"); c.PrefixImbalance != 0.8 {
		t.Errorf("flag gave %v", c.PrefixImbalance)
	}
	t.Setenv("CORTEX_PREFIX_IMBALANCE", "0.2")
	if c := parse(t); c.PrefixImbalance != 0.2 {
		t.Errorf("environment gave %v", c.PrefixImbalance)
	}
	for _, bad := range []float64{-0.1, 11, math.NaN(), math.Inf(1)} {
		c := DefaultConfig()
		c.PrefixImbalance = bad
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "prefix-imbalance") {
			t.Errorf("%v: %v", bad, err)
		}
	}
}

// The configured imbalance is the bound the balancer keeps replicas under
// when one hot prompt is held open 40 times on 4 replicas (the overflow
// becomes the prefix's last server in turn): a higher setting lets the
// busiest replica carry more.
func TestPrefixImbalanceBoundsTheHotReplica(t *testing.T) {
	prev := 0
	for _, tc := range []struct {
		imbalance float64
		bound     int // ⌈(1 + imbalance) × 40 ÷ 4⌉
	}{
		// 0: the even share, as for prompts without a known prefix.
		{0, 10},
		{0.5, 15},
		{1, 20},
	} {
		cfg := DefaultConfig()
		cfg.AllowAnonymous = true
		cfg.PrefixImbalance = tc.imbalance
		g, err := New(cfg, Options{})
		if err != nil {
			t.Fatal(err)
		}
		rs := reps(4)
		counts := map[string]int{}
		var releases []func()
		for range 40 {
			r, rel, _ := g.balancer.Pick(rs, []uint64{42}, nil)
			counts[r.Node]++
			releases = append(releases, rel)
		}
		for _, rel := range releases {
			rel()
		}
		top := 0
		for _, c := range counts {
			top = max(top, c)
		}
		if top > tc.bound || top <= prev {
			t.Errorf("imbalance %v: loads %v, busiest %d, want more than %d (the lower setting's) and at most %d", tc.imbalance, counts, top, prev, tc.bound)
		}
		prev = top
	}
}
