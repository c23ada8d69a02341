package neuron

import (
	"github.com/go-logr/logr"

	"github.com/helexa-ai/cortex/internal/neuronapi"
)

// newTokenSource is the token the neuron's API requires: a fixed value or
// a file it re-reads when it changes (a rotated Secret), accepting the
// previous token for grace after a change so that a manager or gateway
// that has not yet seen the new Secret is not refused meanwhile.
func newTokenSource(log logr.Logger, cfg Config) (*neuronapi.TokenSource, error) {
	return neuronapi.NewTokenSource(cfg.TokenFile, cfg.Token, neuronapi.TokenOptions{
		Recheck: cfg.TokenRecheck, Grace: cfg.TokenGrace, Log: log,
	})
}
