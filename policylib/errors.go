package policylib

import (
	"errors"
	"strings"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// PolicyError is a NetworkPolicy the API server would reject. Errs carry
// the field paths.
type PolicyError struct {
	Policy types.NamespacedName
	Errs   field.ErrorList
}

func (e *PolicyError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, fe := range e.Errs {
		msgs[i] = fe.Error()
	}
	return "NetworkPolicy " + e.Policy.String() + ": " + strings.Join(msgs, "; ")
}

// Unwrap returns the individual field errors.
func (e *PolicyError) Unwrap() []error {
	out := make([]error, len(e.Errs))
	for i, fe := range e.Errs {
		out[i] = fe
	}
	return out
}

// ErrUnknownEndpoint is returned (wrapped, naming the endpoint) when a flow
// names a pod, node or Service the engine does not know.
var ErrUnknownEndpoint = errors.New("unknown endpoint")

// ErrNodeWithoutAddress is returned, with [ErrUnknownEndpoint], for a node
// the engine holds but that has no InternalIP or ExternalIP to be a flow end.
var ErrNodeWithoutAddress = errors.New("no InternalIP or ExternalIP address in status.addresses")
