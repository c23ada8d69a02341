package neuronapi

import "testing"

func TestEngineConfigEquivalent(t *testing.T) {
	ten, all := 10, -1
	for _, tc := range []struct {
		a, b EngineConfig
		want bool
	}{
		{EngineConfig{}, EngineConfig{FlashAttention: "auto", KVCacheType: "f16"}, true},
		{EngineConfig{FlashAttention: "Enabled"}, EngineConfig{FlashAttention: "enabled"}, true},
		{EngineConfig{GPULayers: &all}, EngineConfig{}, true},
		{EngineConfig{GPULayers: &ten}, EngineConfig{}, false},
		{EngineConfig{Parallel: 4}, EngineConfig{Parallel: 8}, false},
		{EngineConfig{ContextLength: 4096}, EngineConfig{}, false},
		{EngineConfig{ChatTemplate: "chatml"}, EngineConfig{}, false},
		{EngineConfig{KVCacheType: "q8_0"}, EngineConfig{}, false},
	} {
		if got := tc.a.Equivalent(tc.b); got != tc.want {
			t.Errorf("%+v ≡ %+v = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
