package gateway

import (
	"io"
	"net/http"

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
	if err != nil || resp.StatusCode != http.StatusUnauthorized || tok == "" || req.GetBody == nil {
		return resp, err
	}
	alt := g.tokens.Fallback(tok)
	if alt == "" {
		return resp, nil
	}
	body, err := req.GetBody()
	if err != nil {
		return resp, nil //nolint:nilerr // the first answer stands
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	_ = resp.Body.Close()
	retry := req.Clone(req.Context())
	retry.Body = body
	retry.Header.Set("Authorization", "Bearer "+alt)
	g.keyMetrics.tokenRetries.Inc()
	return g.upstream.Do(retry)
}

// newNeuronTokens reads the neuron token, from a file re-read while the
// gateway runs so that rotating its Secret needs no restart.
func newNeuronTokens(cfg Config) (*neuronapi.TokenSource, error) {
	return neuronapi.NewTokenSource(cfg.NeuronTokenFile, cfg.NeuronToken, neuronapi.TokenOptions{
		Recheck: cfg.NeuronTokenRecheck, Grace: cfg.NeuronTokenGrace,
	})
}
