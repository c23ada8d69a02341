package devices

import (
	"context"
	"slices"
	"sync"
)

// Static is an inventory whose devices are set by the caller: a fake for
// tests of the layers above, and a way to pin what a host advertises.
type Static struct {
	mu      sync.Mutex
	devices []Device
	err     error
}

// NewStatic returns an inventory reporting devs.
func NewStatic(devs ...Device) *Static {
	return &Static{devices: slices.Clone(devs)}
}

// Set replaces the devices (and clears any error set by SetError).
func (s *Static) Set(devs ...Device) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.devices, s.err = slices.Clone(devs), nil
}

// SetError makes Devices fail with err.
func (s *Static) SetError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

// Devices returns a copy of the devices.
func (s *Static) Devices(context.Context) ([]Device, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	return slices.Clone(s.devices), nil
}

// Close does nothing.
func (s *Static) Close() error { return nil }
