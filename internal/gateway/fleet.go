package gateway

import (
	"maps"
	"net/http"
	"slices"

	"github.com/labstack/echo/v4"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/fleet"
	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// FleetReport computes the fleet's health from the catalog: the body of
// GET /health. The routable and eligible nodes of each Model come from the
// catalog's own routing and placement rules, so /health says exactly what
// routing does.
func (c *Catalog) FleetReport() fleet.Report {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.fleetReport(nil)
}

// fleetReport builds the report; extra are Models the catalog does not
// route (terminating ones), listed without locations. c.mu is held.
func (c *Catalog) fleetReport(extra []*cortexv1.Model) fleet.Report {
	inputs := make([]fleet.ModelInput, 0, len(c.models)+len(extra))
	names := slices.Sorted(maps.Keys(c.nodes)) // so each Model's eligible list comes sorted
	for _, e := range c.models {
		in := fleet.ModelInput{Model: e.model}
		for _, r := range e.replicas {
			in.Routable = append(in.Routable, r.Node)
		}
		for _, name := range names {
			if c.nodes[name].placeable(name, e.model) {
				in.Eligible = append(in.Eligible, name)
			}
		}
		inputs = append(inputs, in)
	}
	for _, m := range extra {
		inputs = append(inputs, fleet.ModelInput{Model: m})
	}
	return fleet.Build(inputs, slices.Collect(maps.Values(c.nodeObjects)))
}

// Evaluate computes the report for Models and NeuronNodes listed from the
// cluster, with the gateway's rules: what `cortex status` shows when it
// reads the cluster itself. It keeps pointers into the slices and never
// changes them.
func Evaluate(models []cortexv1.Model, nodes []cortexv1.NeuronNode) fleet.Report {
	c := NewCatalog()
	for i := range nodes {
		c.UpsertNode(&nodes[i])
	}
	var terminating []*cortexv1.Model
	for i := range models {
		if !models[i].DeletionTimestamp.IsZero() {
			terminating = append(terminating, &models[i])
			continue
		}
		c.UpsertModel(&models[i])
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.fleetReport(terminating)
}

// health answers GET /health. Until the cache has synced the gateway knows
// nothing, and an empty fleet would read as degraded: 503 instead.
func (g *Gateway) health(c echo.Context) error {
	select {
	case <-g.ready:
	default:
		return openai.Unavailable("the gateway's cache has not synced yet")
	}
	return c.JSON(http.StatusOK, g.catalog.FleetReport())
}

// modelEntry is a /v1/models entry with the Model's locations: a
// top-level field, which the OpenAI SDKs keep as an extra property of the
// model object.
type modelEntry struct {
	openai.ModelObject
	Locations []fleet.Location `json:"locations"`
}

// modelList is GET /v1/models with locations.
type modelList struct {
	Object string       `json:"object"` // list
	Data   []modelEntry `json:"data"`
}

// locationsByKey indexes the report's locations by Model key.
func locationsByKey(r fleet.Report) map[string][]fleet.Location {
	out := make(map[string][]fleet.Location, len(r.Models))
	for _, m := range r.Models {
		out[m.Model] = m.Locations
	}
	return out
}

func withLocations(objs []openai.ModelObject, locs []fleet.Location) []modelEntry {
	if locs == nil {
		locs = []fleet.Location{}
	}
	out := make([]modelEntry, 0, len(objs))
	for _, o := range objs {
		out = append(out, modelEntry{ModelObject: o, Locations: locs})
	}
	return out
}
