package gateway

import (
	"flag"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
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

// The configured imbalance is how much longer a request may wait at the
// replica that holds its prefix than at the soonest one: with requests
// decoding on a conversation's replica and the others idle, a higher
// setting keeps the conversation there with more of them.
func TestPrefixImbalanceBoundsTheWaitAtTheHolder(t *testing.T) {
	conv := make([]uint64, 8)
	for i := range conv {
		conv[i] = uint64(i + 1)
	}
	for _, tc := range []struct {
		imbalance float64
		// Kept while the n decoding there, plus the one uncached
		// chunk, stay within (1+imbalance) × the 9 chunks it would
		// prefill elsewhere: n + 1 ≤ 9 × (1+imbalance); it leaves at
		// the first n past that.
		leaves int
	}{
		{0, 9},
		{0.5, 13},
		{1.5, 22},
	} {
		cfg := DefaultConfig()
		cfg.AllowAnonymous = true
		cfg.PrefixImbalance = tc.imbalance
		g, err := New(cfg, Options{})
		if err != nil {
			t.Fatal(err)
		}
		rs := reps(4)
		holder := pickOnce(g.balancer, rs, keys(conv...))
		n := 0
		for ; n < 100; n++ {
			r := pickOnce(g.balancer, rs, keys(append(slices.Clone(conv), uint64(100+n))...))
			if r != holder {
				break
			}
			// One more request decoding on the holder.
			_, l, _ := g.balancer.Pick([]Replica{holder}, Prompt{}, nil)
			l.Started()
			defer l.Release()
		}
		if n != tc.leaves {
			t.Errorf("imbalance %v: the conversation left its holder with %d decoding there, want %d", tc.imbalance, n, tc.leaves)
		}
	}
}

func TestPeersFlags(t *testing.T) {
	c := DefaultConfig()
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	c.BindFlags(fs)
	if err := fs.Parse([]string{"--peers= gw-peers:8081 , 10.0.0.7:8081,", "--peer-sync-interval=250ms", "--allow-anonymous"}); err != nil {
		t.Fatal(err)
	}
	if got := c.PeerList(); !slices.Equal(got, []string{"gw-peers:8081", "10.0.0.7:8081"}) {
		t.Errorf("peers %q", got)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("valid peers refused: %v", err)
	}
	if c.PeerAddr != ":8081" || c.PeerSyncInterval != 250*time.Millisecond {
		t.Errorf("peer-addr %q, interval %s", c.PeerAddr, c.PeerSyncInterval)
	}
	for name, tc := range map[string]struct {
		mutate func(*Config)
		want   string
	}{
		"no port":        {func(c *Config) { c.Peers = "gw-peers" }, `"gw-peers" is not host:port`},
		"no host":        {func(c *Config) { c.Peers = ":8081" }, `":8081" is not host:port`},
		"no peer-addr":   {func(c *Config) { c.Peers, c.PeerAddr = "a:1", "" }, "peer-addr is required"},
		"interval 1ms":   {func(c *Config) { c.Peers, c.PeerSyncInterval = "a:1", time.Millisecond }, "at least 10ms"},
		"interval unset": {func(c *Config) { c.Peers, c.PeerSyncInterval = "a:1", 0 }, "at least 10ms"},
	} {
		c := DefaultConfig()
		c.AllowAnonymous = true
		tc.mutate(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
	// Without peers the peer settings are not looked at.
	c = DefaultConfig()
	c.AllowAnonymous, c.PeerAddr, c.PeerSyncInterval = true, "", 0
	if err := c.Validate(); err != nil {
		t.Errorf("no peers: %v", err)
	}
	if PeerLoadTTL(100*time.Millisecond) != DefaultPeerLoadTTL || PeerLoadTTL(5*time.Second) != 15*time.Second {
		t.Errorf("PeerLoadTTL: %s, %s", PeerLoadTTL(100*time.Millisecond), PeerLoadTTL(5*time.Second))
	}
}
