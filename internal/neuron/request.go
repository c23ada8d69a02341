package neuron

import (
	"errors"
	"slices"
	"strings"
	"unicode"

	"github.com/helexa-ai/cortex/internal/chat"
	"github.com/helexa-ai/cortex/internal/neuronapi"
)

// normaliseLoad validates a load request and puts it in canonical form, so
// that equal settings compare equal.
func (r *registry) normaliseLoad(req neuronapi.LoadRequest) (neuronapi.LoadRequest, error) {
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" {
		return req, errInvalid("name", "Missing required parameter: 'name'.")
	}
	if len(req.Name) > 317 || strings.IndexFunc(req.Name, func(c rune) bool { return unicode.IsSpace(c) || unicode.IsControl(c) }) >= 0 {
		return req, errInvalid("name", "Invalid 'name': %q is not a Model key (<namespace>/<name>).", req.Name)
	}
	req.Source.URI = strings.TrimSpace(req.Source.URI)
	req.Source.SHA256 = strings.ToLower(strings.TrimSpace(req.Source.SHA256))
	if _, err := r.res.Parse(req.Source); err != nil {
		return req, errInvalid("source", "Invalid 'source': %s.", err.Error())
	}
	req.Source.ProjectorURI = strings.TrimSpace(req.Source.ProjectorURI)
	req.Source.ProjectorSHA256 = strings.ToLower(strings.TrimSpace(req.Source.ProjectorSHA256))
	if p, ok := req.Source.Projector(); ok {
		if _, err := r.res.Parse(p); err != nil {
			return req, errInvalid("source.projectorUri", "Invalid 'source.projectorUri': %s.", err.Error())
		}
	} else if req.Source.ProjectorSHA256 != "" {
		return req, errInvalid("source.projectorSha256", "Invalid 'source.projectorSha256': set only with 'source.projectorUri'.")
	}
	// The contract's normal form and checks: the manager compares what the
	// neuron echoes back with the same Normalize.
	req.Engine = req.Engine.Normalize()
	e := &req.Engine
	if err := e.Validate(); err != nil {
		var fe *neuronapi.FieldError
		if errors.As(err, &fe) {
			return req, errInvalid(fe.Field, "%s", fe.Message)
		}
		return req, err
	}
	if e.ChatTemplate != "" && e.ChatTemplate != chat.ChatML {
		if _, err := chat.NewTemplate(e.ChatTemplate, chat.SpecialTokens{}); err != nil {
			return req, errInvalid("engine.chatTemplate", "Invalid 'engine.chatTemplate': %s.", err.Error())
		}
	}
	devs := slices.Clone(req.Devices)
	slices.Sort(devs)
	for i, d := range devs {
		if d < 0 || (i > 0 && devs[i-1] == d) {
			return req, errInvalid("devices", "Invalid 'devices': %v must be distinct device indices.", req.Devices)
		}
	}
	req.Devices = devs
	if req.VRAMBytes < 0 {
		return req, errInvalid("vramBytes", "Invalid 'vramBytes': must not be negative.")
	}
	return req, nil
}

// sameLoad reports whether a load request asks for what m already is.
func sameLoad(m *model, req neuronapi.LoadRequest) bool {
	a, b := m.req, req
	if a.Source != b.Source || !a.Engine.Equivalent(b.Engine) {
		return false
	}
	// Devices matter only when the new request names them.
	return len(b.Devices) == 0 || slices.Equal(b.Devices, m.devices) || (len(m.devices) == 0 && slices.Equal(a.Devices, b.Devices))
}
