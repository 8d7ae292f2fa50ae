package policylib

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Selector is a compiled label selector with exactly the semantics of
// k8s.io/apimachinery's label selectors: requirements are ANDed, NotIn and
// DoesNotExist match a missing key, and a selector with no requirements
// matches everything. The zero Selector matches everything.
type Selector struct {
	reqs []requirement
}

type selectorOp uint8

const (
	opIn selectorOp = iota
	opNotIn
	opExists
	opDoesNotExist
)

type requirement struct {
	key    string
	op     selectorOp
	values []string // sorted, deduplicated; only for In and NotIn
}

// ParseSelector validates a metav1.LabelSelector as the API server does and
// compiles it. A nil selector compiles to one that matches everything; callers
// for whom nil means something else (a peer's omitted namespaceSelector)
// handle nil before calling.
func ParseSelector(ls *metav1.LabelSelector) (Selector, error) {
	if errs := validateSelector(ls, nil); len(errs) > 0 {
		return Selector{}, errs.ToAggregate()
	}
	return compileSelector(ls), nil
}

// MustParseSelector is ParseSelector that panics on error.
func MustParseSelector(ls *metav1.LabelSelector) Selector {
	s, err := ParseSelector(ls)
	if err != nil {
		panic(err)
	}
	return s
}

func validateSelector(ls *metav1.LabelSelector, path *field.Path) field.ErrorList {
	return metav1validation.ValidateLabelSelector(ls, metav1validation.LabelSelectorValidationOptions{}, path)
}

// compileSelector assumes ls has been validated.
func compileSelector(ls *metav1.LabelSelector) Selector {
	if ls == nil {
		return Selector{}
	}
	var s Selector
	keys := make([]string, 0, len(ls.MatchLabels))
	for k := range ls.MatchLabels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s.reqs = append(s.reqs, requirement{key: k, op: opIn, values: []string{ls.MatchLabels[k]}})
	}
	for _, e := range ls.MatchExpressions {
		r := requirement{key: e.Key}
		switch e.Operator {
		case metav1.LabelSelectorOpIn:
			r.op = opIn
		case metav1.LabelSelectorOpNotIn:
			r.op = opNotIn
		case metav1.LabelSelectorOpExists:
			r.op = opExists
		case metav1.LabelSelectorOpDoesNotExist:
			r.op = opDoesNotExist
		}
		if r.op == opIn || r.op == opNotIn {
			r.values = slices.Clone(e.Values)
			slices.Sort(r.values)
			r.values = slices.Compact(r.values)
		}
		s.reqs = append(s.reqs, r)
	}
	return s
}

// Matches reports whether the label set satisfies every requirement. It does
// not allocate.
func (s Selector) Matches(labels map[string]string) bool {
	for i := range s.reqs {
		r := &s.reqs[i]
		v, ok := labels[r.key]
		switch r.op {
		case opIn:
			if !ok || !r.has(v) {
				return false
			}
		case opNotIn:
			if ok && r.has(v) {
				return false
			}
		case opExists:
			if !ok {
				return false
			}
		case opDoesNotExist:
			if ok {
				return false
			}
		}
	}
	return true
}

func (r *requirement) has(v string) bool {
	for _, x := range r.values {
		if x == v {
			return true
		}
	}
	return false
}

// Empty reports whether the selector has no requirements, so it matches
// every label set.
func (s Selector) Empty() bool { return len(s.reqs) == 0 }

// String renders the selector in kubectl's syntax ("app=web,tier notin (db)"),
// or "(all)" when it is empty.
func (s Selector) String() string {
	if s.Empty() {
		return "(all)"
	}
	parts := make([]string, len(s.reqs))
	for i, r := range s.reqs {
		switch {
		case r.op == opIn && len(r.values) == 1:
			parts[i] = r.key + "=" + r.values[0]
		case r.op == opIn:
			parts[i] = fmt.Sprintf("%s in (%s)", r.key, strings.Join(r.values, ","))
		case r.op == opNotIn:
			parts[i] = fmt.Sprintf("%s notin (%s)", r.key, strings.Join(r.values, ","))
		case r.op == opExists:
			parts[i] = r.key
		case r.op == opDoesNotExist:
			parts[i] = "!" + r.key
		}
	}
	return strings.Join(parts, ",")
}
