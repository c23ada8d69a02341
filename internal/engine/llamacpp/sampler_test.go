package llamacpp

import (
	"math"
	"slices"
	"testing"

	"github.com/helexa-ai/cortex/internal/engine"
)

func ids(c []candidate) []int32 {
	out := make([]int32, len(c))
	for i, x := range c {
		out[i] = x.id
	}
	return out
}

func TestCandidates(t *testing.T) {
	logits := []float32{1, 5, 3, negInf, 4, 2}
	tests := []struct {
		name string
		p    engine.Sampling
		want []int32 // sorted by decreasing logit when cut
	}{
		{"top-k", engine.Sampling{TopK: 2}, []int32{1, 4}},
		{"top-k larger than vocab", engine.Sampling{TopK: 10}, []int32{0, 1, 2, 4, 5}},
		// softmax of 5,4,3,2,1: 0.636, 0.234, 0.086, ...
		{"top-p", engine.Sampling{TopP: 0.8}, []int32{1, 4}},
		{"top-p tiny keeps one", engine.Sampling{TopP: 0.01}, []int32{1}},
		// min-p 0.3: keep p >= 0.3·p_max, i.e. logit >= 5 + ln 0.3 = 3.80.
		{"min-p", engine.Sampling{MinP: 0.3}, []int32{1, 4}},
		{"min-p then top-p", engine.Sampling{MinP: 0.1, TopP: 0.5}, []int32{1}},
		{"top-k then top-p renormalised", engine.Sampling{TopK: 3, TopP: 0.7}, []int32{1, 4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSampler(tc.p, 100, nil)
			got := ids(s.candidates(logits))
			if tc.p.TopK >= len(logits) {
				slices.Sort(got) // not cut, so not sorted
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("candidates = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestArgmax(t *testing.T) {
	if tok, err := argmax([]float32{1, 3, 3, 2}); err != nil || tok != 1 {
		t.Errorf("argmax = %d, %v; want the first of the ties", tok, err)
	}
	if _, err := argmax([]float32{negInf, negInf}); err == nil {
		t.Error("all-masked logits gave a token")
	}
}

func TestPenalties(t *testing.T) {
	p := engine.Sampling{RepeatPenalty: 2, RepeatLastN: 2, PresencePenalty: 0.5, FrequencyPenalty: 0.25}
	s := newSampler(p, 100, []int{0, 1, 2}) // window keeps prompt tokens 1 and 2
	s.accept(3)                             // window now 2, 3; token 3 generated once
	s.accept(3)                             // window 3, 3; token 3 generated twice
	l := []float32{4, 4, -4, 4, 4}
	s.applyPenalties(l)
	// Token 3: repeat 4/2 = 2, then 2 - (2·0.25 + 0.5) = 1.
	want := []float32{4, 4, -4, 1, 4}
	if !slices.Equal(l, want) {
		t.Errorf("penalised = %v, want %v", l, want)
	}
	s2 := newSampler(engine.Sampling{RepeatPenalty: 2, RepeatLastN: 3}, 100, []int{0, 1, 2})
	l2 := []float32{4, -4, 4, 4}
	s2.applyPenalties(l2)
	if want := []float32{2, -8, 2, 4}; !slices.Equal(l2, want) {
		t.Errorf("repeat penalty = %v, want %v", l2, want)
	}
}

func TestGreedyIgnoresSeed(t *testing.T) {
	logits := []float32{0.1, 0.3, 0.2}
	for seed := uint32(0); seed < 5; seed++ {
		s := newSampler(engine.Sampling{Seed: &seed}, 10, nil)
		if tok, _ := s.sample(logits, nil); tok != 1 {
			t.Fatalf("greedy picked %d", tok)
		}
	}
}

// At temperature 1 the draws follow the softmax.
func TestSamplingDistribution(t *testing.T) {
	logits := []float32{0, float32(math.Log(3))} // p = 0.25, 0.75
	seed := uint32(42)
	s := newSampler(engine.Sampling{Temperature: 1, Seed: &seed}, 10, nil)
	counts := [2]int{}
	const n = 20000
	for i := 0; i < n; i++ {
		tok, err := s.sample(logits, nil)
		if err != nil {
			t.Fatal(err)
		}
		counts[tok]++
	}
	if f := float64(counts[1]) / n; math.Abs(f-0.75) > 0.02 {
		t.Errorf("token 1 drawn %.3f of the time, want 0.75", f)
	}
	// A low temperature sharpens the distribution.
	s = newSampler(engine.Sampling{Temperature: 0.1, Seed: &seed}, 10, nil)
	counts = [2]int{}
	for i := 0; i < 2000; i++ {
		tok, _ := s.sample(logits, nil)
		counts[tok]++
	}
	if counts[0] > 20 {
		t.Errorf("temperature 0.1 drew the unlikely token %d times", counts[0])
	}
}

func TestLogprobsFor(t *testing.T) {
	logits := []float32{0, float32(math.Log(3)), negInf}
	piece := func(t int) []byte { return []byte{'a' + byte(t)} }
	lp := logprobsFor(logits, 0, 2, piece)
	if math.Abs(float64(lp.Logprob)-math.Log(0.25)) > 1e-6 || lp.Token != "a" {
		t.Errorf("logprob = %+v", lp)
	}
	if len(lp.Top) != 2 || lp.Top[0].Token != "b" || math.Abs(float64(lp.Top[0].Logprob)-math.Log(0.75)) > 1e-6 {
		t.Errorf("top = %+v", lp.Top)
	}
}
