package policylib

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/types"
)

// Pods returns the pods that can be flow ends, sorted by namespace and
// name: every pod the engine holds (it drops finished ones, which take no
// traffic), host-network pods included.
func (e *Engine) Pods() []types.NamespacedName {
	e.mu.RLock()
	out := make([]types.NamespacedName, 0, len(e.podByKey))
	for k := range e.podByKey {
		out = append(out, k)
	}
	e.mu.RUnlock()
	sortNames(out)
	return out
}

// Policies returns the NetworkPolicies the engine holds, sorted by
// namespace and name (SetPolicy refuses invalid ones).
func (e *Engine) Policies() []types.NamespacedName {
	e.mu.RLock()
	out := make([]types.NamespacedName, 0, len(e.policies))
	for k := range e.policies {
		out = append(out, k)
	}
	e.mu.RUnlock()
	sortNames(out)
	return out
}

// Services returns the Services the engine holds, sorted by namespace and
// name.
func (e *Engine) Services() []types.NamespacedName {
	e.mu.RLock()
	out := make([]types.NamespacedName, 0, len(e.services))
	for k := range e.services {
		out = append(out, k)
	}
	e.mu.RUnlock()
	sortNames(out)
	return out
}

func sortNames(names []types.NamespacedName) {
	slices.SortFunc(names, func(a, b types.NamespacedName) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
}

// Nodes returns the names of the nodes that can be flow ends (those with an
// InternalIP or ExternalIP), sorted.
func (e *Engine) Nodes() []string {
	e.mu.RLock()
	var out []string
	for name, n := range e.nodes {
		if len(n.addrs) > 0 {
			out = append(out, name)
		}
	}
	e.mu.RUnlock()
	slices.Sort(out)
	return out
}

// CheckEndpoint reports whether ep can be a flow end, with the reason it
// cannot (wrapping [ErrUnknownEndpoint]) otherwise: a pod or node the engine
// does not hold, a node without an address, an invalid address.
func (e *Engine) CheckEndpoint(ep Endpoint) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	_, err := e.resolve(ep)
	return err
}

// nodeEndpointError explains why a node cannot be a flow end.
func nodeEndpointError(name string, known bool) error {
	if known {
		return fmt.Errorf("node %s: %w: %w", name, ErrNodeWithoutAddress, ErrUnknownEndpoint)
	}
	return fmt.Errorf("node %s: %w", name, ErrUnknownEndpoint)
}
