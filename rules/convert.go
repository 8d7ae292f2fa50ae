package rules

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/podwall/podwall/policylib"
)

// Arguments arrive as ast values. The type checker only catches what it can
// see statically; values built from data are checked here, and every
// problem is an error naming the argument, never a silent false.

// argName names argument i (0-based) of a built-in in messages.
func argName(i int, name string) string { return fmt.Sprintf("argument %d (%s)", i+1, name) }

func objectArg(args []*ast.Term, i int, name string) (ast.Object, error) {
	if o, ok := args[i].Value.(ast.Object); ok {
		return o, nil
	}
	return nil, fmt.Errorf("%s: want an object, got %s", argName(i, name), ast.ValueName(args[i].Value))
}

func stringArg(args []*ast.Term, i int, name string) (string, error) {
	if s, ok := args[i].Value.(ast.String); ok {
		return string(s), nil
	}
	return "", fmt.Errorf("%s: want a string, got %s", argName(i, name), ast.ValueName(args[i].Value))
}

func directionArg(args []*ast.Term, i int) (policylib.Direction, error) {
	s, err := stringArg(args, i, "direction")
	if err != nil {
		return 0, err
	}
	switch strings.ToLower(s) {
	case "ingress":
		return policylib.Ingress, nil
	case "egress":
		return policylib.Egress, nil
	}
	return 0, fmt.Errorf("%s: %q: want ingress or egress", argName(i, "direction"), s)
}

// decode converts an ast value into a Go value through its JSON form (sets
// become arrays). strict rejects unknown fields: right for podwall's own
// small shapes (selectors, ipBlocks, flows), wrong for Kubernetes objects,
// which may carry fields newer than this build's API types.
func decode(v ast.Value, dst any, strict bool) error {
	x, err := ast.JSON(v)
	if err != nil {
		return err
	}
	b, err := json.Marshal(x)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if strict {
		dec.DisallowUnknownFields()
	}
	return dec.Decode(dst)
}

// policyArg decodes and validates a NetworkPolicy. A policy without
// metadata.name or metadata.namespace (hand-written in Rego) is taken as
// default/unnamed; anything else the API server would reject is an error
// with its field path.
func policyArg(args []*ast.Term, i int) (*networkingv1.NetworkPolicy, error) {
	o, err := objectArg(args, i, "policy")
	if err != nil {
		return nil, err
	}
	var np networkingv1.NetworkPolicy
	if err := decode(o, &np, false); err != nil {
		return nil, fmt.Errorf("%s: not a NetworkPolicy: %w", argName(i, "policy"), err)
	}
	if np.Name == "" {
		np.Name = "unnamed"
	}
	if np.Namespace == "" {
		np.Namespace = "default"
	}
	if errs := policylib.ValidatePolicy(&np); len(errs) > 0 {
		return nil, fmt.Errorf("%s: NetworkPolicy %s/%s is invalid: %w", argName(i, "policy"), np.Namespace, np.Name, errs.ToAggregate())
	}
	return &np, nil
}

func podArg(args []*ast.Term, i int) (*corev1.Pod, error) {
	o, err := objectArg(args, i, "pod")
	if err != nil {
		return nil, err
	}
	var p corev1.Pod
	if err := decode(o, &p, false); err != nil {
		return nil, fmt.Errorf("%s: not a Pod: %w", argName(i, "pod"), err)
	}
	return &p, nil
}

// labelsArg reads an object of string keys and string values.
func labelsArg(args []*ast.Term, i int) (map[string]string, error) {
	o, err := objectArg(args, i, "labels")
	if err != nil {
		return nil, err
	}
	labels := make(map[string]string, o.Len())
	err = o.Iter(func(k, v *ast.Term) error {
		ks, ok := k.Value.(ast.String)
		if !ok {
			return fmt.Errorf("%s: key %v is a %s, want a string", argName(i, "labels"), k, ast.ValueName(k.Value))
		}
		vs, ok := v.Value.(ast.String)
		if !ok {
			return fmt.Errorf("%s: value of %q is a %s, want a string", argName(i, "labels"), string(ks), ast.ValueName(v.Value))
		}
		labels[string(ks)] = string(vs)
		return nil
	})
	return labels, err
}

// snapshotKeys are the fields of a snapshot argument.
var snapshotKeys = []string{"namespaces", "pods", "policies", "nodes", "services"}

// decodeSnapshot reads {namespaces, pods, policies, nodes, services}, each
// an optional array (or set) of Kubernetes objects.
func decodeSnapshot(o ast.Object, arg string) (policylib.Snapshot, error) {
	var s policylib.Snapshot
	err := o.Iter(func(k, v *ast.Term) error {
		ks, _ := k.Value.(ast.String)
		key := string(ks)
		var elems []*ast.Term
		switch x := v.Value.(type) {
		case *ast.Array:
			x.Foreach(func(t *ast.Term) { elems = append(elems, t) })
		case ast.Set:
			x.Sorted().Foreach(func(t *ast.Term) { elems = append(elems, t) })
		case ast.Null:
		default:
			return fmt.Errorf("%s: %v: want an array of objects, got %s", arg, k, ast.ValueName(v.Value))
		}
		each := func(into func(i int, t *ast.Term) error) error {
			for i, t := range elems {
				if _, ok := t.Value.(ast.Object); !ok {
					return fmt.Errorf("%s: %s[%d]: want an object, got %s", arg, key, i, ast.ValueName(t.Value))
				}
				if err := into(i, t); err != nil {
					return fmt.Errorf("%s: %s[%d]: %w", arg, key, i, err)
				}
			}
			return nil
		}
		switch key {
		case "namespaces":
			return each(func(_ int, t *ast.Term) error {
				x, err := decodeObject[corev1.Namespace](key, t.Value)
				s.Namespaces = append(s.Namespaces, x)
				return err
			})
		case "pods":
			return each(func(_ int, t *ast.Term) error {
				x, err := decodeObject[corev1.Pod](key, t.Value)
				s.Pods = append(s.Pods, x)
				return err
			})
		case "policies":
			return each(func(_ int, t *ast.Term) error {
				x, err := decodeObject[networkingv1.NetworkPolicy](key, t.Value)
				s.Policies = append(s.Policies, x)
				return err
			})
		case "nodes":
			return each(func(_ int, t *ast.Term) error {
				x, err := decodeObject[corev1.Node](key, t.Value)
				s.Nodes = append(s.Nodes, x)
				return err
			})
		case "services":
			return each(func(_ int, t *ast.Term) error {
				x, err := decodeObject[corev1.Service](key, t.Value)
				s.Services = append(s.Services, x)
				return err
			})
		}
		return fmt.Errorf("%s: unknown field %v: want %s", arg, k, strings.Join(snapshotKeys, ", "))
	})
	return s, err
}

// ---- decoded Kubernetes objects, across queries ----

// Snapshots are made of the objects in data.kubernetes, which the store
// hands out as the same ast values query after query, and a snapshot
// with the request's change in it differs from the cluster's by one
// object. Decoding an object through JSON costs far more than building an
// engine from it, so decoded objects are kept, keyed by their ast value
// (its hash, then equality), and handed out as deep copies, so that no
// engine shares an object with another.

// kubeObject is a Kubernetes API type podwall.decide and podwall.lint
// decode.
type kubeObject[T any] interface {
	*T
	DeepCopy() *T
}

type decodedEntry struct {
	src ast.Value
	obj any // a pristine *T, never handed out
}

// maxDecoded bounds the cache: past it, the cache starts over.
const maxDecoded = 8192

var decodedObjects struct {
	sync.Mutex
	m map[decodedKey][]decodedEntry
	n int
}

type decodedKey struct {
	kind string
	hash int
}

// decodeObject decodes v as a T (non-strict, as decode does), from the
// cache when v was decoded before.
func decodeObject[T any, PT kubeObject[T]](kind string, v ast.Value) (*T, error) {
	key := decodedKey{kind: kind, hash: v.Hash()}
	decodedObjects.Lock()
	for _, e := range decodedObjects.m[key] {
		if sameValue(e.src, v) {
			obj := e.obj.(*T)
			decodedObjects.Unlock()
			return PT(obj).DeepCopy(), nil
		}
	}
	decodedObjects.Unlock()
	x := new(T)
	if err := decode(v, x, false); err != nil {
		return x, err
	}
	kept := PT(x).DeepCopy()
	decodedObjects.Lock()
	if decodedObjects.m == nil || decodedObjects.n >= maxDecoded {
		decodedObjects.m, decodedObjects.n = map[decodedKey][]decodedEntry{}, 0
	}
	decodedObjects.m[key] = append(decodedObjects.m[key], decodedEntry{src: v, obj: kept})
	decodedObjects.n++
	decodedObjects.Unlock()
	return x, nil
}

// ---- a per-query cache of values compiled from arguments ----

// cacheKey files compiled values by the kind of value and the hash of the
// ast value they were compiled from; entries are checked for equality, so
// a hash collision costs a compare, never a wrong answer.
type cacheKey struct {
	kind string
	hash int
}

type cacheEntry[T any] struct {
	src ast.Value
	val T
	err error // build's refusal is kept too: the same value fails the same way
}

// cached returns the value compiled from v by build, compiling it at most
// once per query (bctx.Cache lives for one query). A refusal is kept too.
func cached[T any](bctx topdown.BuiltinContext, kind string, v ast.Value, build func() (T, error)) (T, error) {
	if bctx.Cache == nil {
		return build()
	}
	key := cacheKey{kind: kind, hash: v.Hash()}
	var entries []cacheEntry[T]
	if x, ok := bctx.Cache.Get(key); ok {
		entries = x.([]cacheEntry[T])
		for _, e := range entries {
			if sameValue(e.src, v) {
				return e.val, e.err
			}
		}
	}
	val, err := build()
	bctx.Cache.Put(key, append(entries, cacheEntry[T]{src: v, val: val, err: err}))
	return val, err
}

// sameValue is ast equality with a fast path for the same object, which is
// what a rule passing one snapshot to many calls gives.
func sameValue(a, b ast.Value) bool {
	if ao, ok := a.(ast.Object); ok {
		if bo, ok := b.(ast.Object); ok && ao == bo {
			return true
		}
	}
	return a.Compare(b) == 0
}
