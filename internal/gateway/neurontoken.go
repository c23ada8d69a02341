package gateway

import (
	"io"
	"net/http"
	"slices"

	"github.com/helexa-ai/cortex/internal/neuronapi"
)

// doNeuron sends one request to a neuron with the current neuron token.
// A 401 means the token rotated and this gateway and that neuron have not
// both seen it yet (the kubelet updates each pod's Secret volume on its
// own schedule): the request is sent once more with the token's fallback
// (the file's newer token, or the previous one within its grace), before
// any byte reached the client, so the retry is invisible to it.
func (g *Gateway) doNeuron(req *http.Request) (*http.Response, error) {
	tok := g.tokens.Token()
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := g.upstream.Do(req) //nolint:bodyclose // the caller closes it
	// Up to two retries: the neuron may adopt the new token between the
	// first answer and the retry (then the previous token the retry
	// carries is refused, and the current one is good).
	tried := []string{tok}
	for range 2 {
		if err != nil || resp.StatusCode != http.StatusUnauthorized || tok == "" || req.GetBody == nil {
			return resp, err
		}
		alt := g.tokens.Fallback(tried[len(tried)-1])
		if alt == "" || slices.Contains(tried[1:], alt) {
			return resp, nil
		}
		body, berr := req.GetBody()
		if berr != nil {
			return resp, nil //nolint:nilerr // the last answer stands
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		_ = resp.Body.Close()
		retry := req.Clone(req.Context())
		retry.Body = body
		retry.Header.Set("Authorization", "Bearer "+alt)
		g.keyMetrics.tokenRetries.Inc()
		tried = append(tried, alt)
		resp, err = g.upstream.Do(retry) //nolint:bodyclose // the caller closes it
	}
	return resp, err
}

// newNeuronTokens reads the neuron token, from a file re-read while the
// gateway runs so that rotating its Secret needs no restart.
func newNeuronTokens(cfg Config) (*neuronapi.TokenSource, error) {
	return neuronapi.NewTokenSource(cfg.NeuronTokenFile, cfg.NeuronToken, neuronapi.TokenOptions{
		Recheck: cfg.NeuronTokenRecheck, Grace: cfg.NeuronTokenGrace,
	})
}
