package policylib

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/types"
)

// Pods returns the pods that can be flow ends, sorted by namespace and
// name: every pod the engine holds (it drops finished ones, which take no
// traffic), host-network pods included.
func (e *Engine) Pods() []types.NamespacedName { return sortedKeys(e, e.podByKey) }

// Policies returns the NetworkPolicies the engine holds, sorted by
// namespace and name (SetPolicy refuses invalid ones).
func (e *Engine) Policies() []types.NamespacedName { return sortedKeys(e, e.policies) }

// Services returns the Services the engine holds, sorted by namespace and
// name.
func (e *Engine) Services() []types.NamespacedName { return sortedKeys(e, e.services) }

// sortedKeys returns one of the engine's maps' names, sorted by namespace
// and name.
func sortedKeys[V any](e *Engine, m map[types.NamespacedName]V) []types.NamespacedName {
	e.mu.RLock()
	out := slices.Collect(maps.Keys(m))
	e.mu.RUnlock()
	slices.SortFunc(out, func(a, b types.NamespacedName) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	return out
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
