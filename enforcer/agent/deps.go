package agent

import (
	"cmp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/types"

	"github.com/podwall/podwall/enforcer"
	"github.com/podwall/podwall/policylib"
)

// The agent recompiles only the local pods a change can affect (see
// enforcer.Compiler). A local pod's rules (policylib's PodRules) depend on
// the pod itself, on the policies that isolate it, which are all in its
// namespace, and, through those policies' peers, on other pods and on
// namespaces' labels. Which policies a pod or a namespace can affect is
// policylib's to say (Engine.PoliciesDependingOnPod and
// PoliciesDependingOnNamespace), as it alone decides what a peer matches.
// So:
//
//   - a policy change makes stale the local pods of its namespace;
//   - a pod change makes stale the pod itself and the local pods isolated
//     by a policy the engine names for the pod before or after the change;
//   - a namespace relabel makes stale the local pods isolated by a policy
//     the engine names for the namespace before or after;
//   - a node change affects no pod's rules, only the ruleset's node
//     addresses when it is this node.
//
// Asking before the change catches the policies the pod or namespace
// leaves, asking after those it joins. A change the engine already holds
// (Engine.HoldsPod, HoldsNamespace: a status update, an informer's resync)
// marks nothing. A missed dependency would leave a pod with stale rules
// until the next periodic resync, which recompiles every pod.

// dependents is what a pod or namespace change is asked about, before and
// after: PoliciesDependingOnPod or PoliciesDependingOnNamespace.
type dependents func() []types.NamespacedName

// invalidateDependents applies change to the engine between two questions
// to it and marks stale the local pods isolated by a policy named by
// either, returning how many it marked. Both answers are sorted. A change
// that reports it was refused (the engine keeps what it had) marks none.
func invalidateDependents(c *enforcer.Compiler, ask dependents, change func() bool) int {
	before := ask()
	if !change() {
		return 0
	}
	after := ask()
	if len(before) == 0 && len(after) == 0 {
		return 0 // skip the walk over the local pods
	}
	return c.InvalidateIsolatedBy(func(pol types.NamespacedName) bool {
		return named(before, pol) || named(after, pol)
	})
}

// named reports whether a sorted list of policy names holds pol.
func named(list []types.NamespacedName, pol types.NamespacedName) bool {
	_, ok := slices.BinarySearchFunc(list, pol, func(a, b types.NamespacedName) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	return ok
}

// podDependents asks the engine which policies pod k can affect.
func podDependents(e *policylib.Engine, k types.NamespacedName) dependents {
	return func() []types.NamespacedName { return e.PoliciesDependingOnPod(k.Namespace, k.Name) }
}

// namespaceDependents asks the engine which policies namespace name's
// labels can affect.
func namespaceDependents(e *policylib.Engine, name string) dependents {
	return func() []types.NamespacedName { return e.PoliciesDependingOnNamespace(name) }
}
