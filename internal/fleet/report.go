// Package fleet is the fleet's health report: the document the gateway
// answers on GET /health and `cortex status -o json` prints, and the pure
// rules that compute it from Models and NeuronNodes.
//
// The rules, in one place:
//
//   - A NeuronNode is healthy while its Ready condition is True.
//   - A Model is served from its routable replicas (Ready replicas on Ready
//     nodes with an endpoint; the gateway decides which, see ModelInput).
//   - Every replica that cannot serve is listed as unservable with its
//     node: LoadFailed (the replica failed to load) or NodeNotReady (the
//     replica sits on a node that is not Ready or no longer exists).
//   - A Model with no routable replica that cannot get one is listed once,
//     without a node, and is down: LoadFailed (phase Failed), Unschedulable
//     (the manager found no node with room: Scheduled is False), or
//     NoEligibleNode (no Ready, uncordoned node matches its placement). A
//     Model that is Idle, Pending or Loading with an eligible node is not
//     down: its next request loads it.
//   - A Model that serves but cannot place every wanted replica
//     (Scheduled False) is listed once, without a node, as Unschedulable.
//
// The fleet is degraded when it cannot answer some request it should: no
// NeuronNode is healthy (including none at all), or some Model is down. It
// is impaired when everything can still be served but with less than it
// should have: a NeuronNode is not healthy, or something is unservable. It
// is ok otherwise. Terminating Models count for nothing.
package fleet

import (
	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
)

// Status is the fleet's overall state.
type Status string

const (
	// StatusOK: every node healthy, every Model servable everywhere it is
	// placed.
	StatusOK Status = "ok"
	// StatusImpaired: everything can be served, with less redundancy or
	// capacity than wanted.
	StatusImpaired Status = "impaired"
	// StatusDegraded: some Model (or, with no healthy node, everything)
	// cannot be served.
	StatusDegraded Status = "degraded"
)

// Reasons an unservable entry gives.
const (
	// ReasonLoadFailed: a replica failed to load, or every attempt did.
	ReasonLoadFailed = "LoadFailed"
	// ReasonNodeNotReady: a replica sits on a node that is not Ready.
	ReasonNodeNotReady = "NodeNotReady"
	// ReasonUnschedulable: the manager cannot place a wanted replica.
	ReasonUnschedulable = "Unschedulable"
	// ReasonNoEligibleNode: no Ready, uncordoned node matches the Model's
	// placement.
	ReasonNoEligibleNode = "NoEligibleNode"
)

// StatePlaceable is the location state of an eligible node that holds no
// replica: a replica could be loaded there (memory permitting). The other
// states are the replica states (Ready, Loading, Unloading, Failed).
const StatePlaceable = "Placeable"

// Report is the fleet's health.
type Report struct {
	// Status is ok, impaired or degraded.
	Status Status `json:"status"`
	// Nodes counts healthy and all NeuronNodes.
	Nodes NodeCount `json:"nodes"`
	// Unservable lists what cannot serve, and why.
	Unservable []Unservable `json:"unservable"`
	// Neurons describes every NeuronNode, sorted by name.
	Neurons []Node `json:"neurons"`
	// Models describes every Model, sorted by key.
	Models []Model `json:"models"`
}

// NodeCount counts NeuronNodes.
type NodeCount struct {
	Healthy int `json:"healthy"`
	Total   int `json:"total"`
}

// Unservable is one Model (on one node, or everywhere) that cannot serve.
type Unservable struct {
	// Model is the Model key, "<namespace>/<name>".
	Model string `json:"model"`
	// Node is the NeuronNode concerned; empty when the Model as a whole
	// cannot be served.
	Node string `json:"node,omitempty"`
	// Reason is one of the Reason constants.
	Reason string `json:"reason"`
	// Detail says what happened, for people.
	Detail string `json:"detail"`
}

// Node is one NeuronNode.
type Node struct {
	Name  string `json:"name"`
	Ready bool   `json:"ready"`
	// Reason is the Ready condition's reason when the node is not Ready,
	// or HeartbeatLate when it is Ready without a fresh heartbeat (its
	// neuron answers the manager but cannot reach the API server).
	Reason   string `json:"reason,omitempty"`
	Cordoned bool   `json:"cordoned,omitempty"`
	// GPUs counts the GPUs (a CPU-only host has 0).
	GPUs int `json:"gpus"`
	// MemoryFreeBytes and MemoryTotalBytes sum the node's devices (host
	// memory on a CPU-only host).
	MemoryFreeBytes  int64 `json:"memory_free_bytes"`
	MemoryTotalBytes int64 `json:"memory_total_bytes"`
	// Models are the Model keys the neuron holds, in any state.
	Models []string `json:"models"`
}

// Model is one Model.
type Model struct {
	// Model is the key, "<namespace>/<name>".
	Model string `json:"model"`
	// Names are the served names, canonical first.
	Names []string `json:"names"`
	Phase string   `json:"phase"`
	// Ready counts routable replicas; Desired is what the manager wants.
	Ready   int   `json:"ready"`
	Desired int32 `json:"desired"`
	// Locations say where the Model is loaded or could be.
	Locations []Location `json:"locations"`
}

// Location is one node a Model is on, or could be loaded on.
type Location struct {
	Node string `json:"node"`
	// State is the replica's state (Ready, Loading, Unloading, Failed), or
	// Placeable for an eligible node without a replica.
	State string `json:"state"`
	// NodeReady is the node's Ready condition: a Ready replica on a node
	// that is not Ready does not serve.
	NodeReady bool   `json:"node_ready"`
	Memory    Memory `json:"memory"`
}

// Memory is what a location holds or needs, and what its node has.
type Memory struct {
	// ModelBytes is what the replica holds, or, on a Placeable node, what
	// one replica needs (0 while unknown).
	ModelBytes int64 `json:"model_bytes"`
	// FreeBytes and TotalBytes are the node's, summed over its devices.
	FreeBytes  int64 `json:"free_bytes"`
	TotalBytes int64 `json:"total_bytes"`
}

// ModelInput is one Model with the facts only the gateway's routing rules
// decide, so that the gateway and the CLI cannot drift apart.
type ModelInput struct {
	Model *cortexv1.Model
	// Routable are the nodes whose replica the gateway would route to.
	Routable []string
	// Eligible are the nodes a new replica could be placed on, memory aside.
	Eligible []string
}
