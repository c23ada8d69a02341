package neuronapi

import (
	"errors"
	"reflect"
	"testing"
)

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

// Every field of EngineConfig takes part in Equivalent: setting any one of
// them to a non-default value makes two configurations differ. A new field
// added without a way to set it here fails the test.
func TestEngineConfigEquivalentCoversEveryField(t *testing.T) {
	three := 3
	set := map[string]func(*EngineConfig){
		"ContextLength":  func(e *EngineConfig) { e.ContextLength = 4096 },
		"Parallel":       func(e *EngineConfig) { e.Parallel = 2 },
		"GPULayers":      func(e *EngineConfig) { e.GPULayers = &three },
		"FlashAttention": func(e *EngineConfig) { e.FlashAttention = "disabled" },
		"KVCacheType":    func(e *EngineConfig) { e.KVCacheType = "q4_0" },
		"ChatTemplate":   func(e *EngineConfig) { e.ChatTemplate = "{{ messages }}" },
	}
	typ := reflect.TypeOf(EngineConfig{})
	for i := range typ.NumField() {
		name := typ.Field(i).Name
		f, ok := set[name]
		if !ok {
			t.Errorf("EngineConfig.%s: no case here; add one", name)
			continue
		}
		var e EngineConfig
		f(&e)
		if e.Equivalent(EngineConfig{}) {
			t.Errorf("EngineConfig.%s set: still equivalent to the default", name)
		}
	}
}

func TestEngineConfigNormalizeAndValidate(t *testing.T) {
	minus := -5
	n := EngineConfig{FlashAttention: " Enabled ", KVCacheType: "Q8_0", GPULayers: &minus}.Normalize()
	if n.FlashAttention != "enabled" || n.KVCacheType != "q8_0" || n.GPULayers != nil {
		t.Fatalf("normalized = %+v", n)
	}
	if err := n.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		e     EngineConfig
		field string
	}{
		{EngineConfig{ContextLength: -1}, "engine.contextLength"},
		{EngineConfig{Parallel: 1000}, "engine.parallel"},
		{EngineConfig{FlashAttention: "sometimes"}, "engine.flashAttention"},
		{EngineConfig{KVCacheType: "q2"}, "engine.kvCacheType"},
	} {
		var fe *FieldError
		if err := tc.e.Normalize().Validate(); !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%+v: error %v, want one naming %s", tc.e, err, tc.field)
		}
	}
	// The memory key ignores the chat template only.
	a, b := EngineConfig{ChatTemplate: "x"}, EngineConfig{}
	if a.MemoryKey() != b.MemoryKey() {
		t.Error("the chat template changed the memory key")
	}
	if (EngineConfig{Parallel: 2}).MemoryKey() == b.MemoryKey() {
		t.Error("parallel did not change the memory key")
	}
}
