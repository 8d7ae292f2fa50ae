package rules

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/podwall/podwall/policylib"
	"github.com/podwall/podwall/webhook/config"
)

// requiredLabels is the compiled requiredLabels rule.
type requiredLabels struct {
	cfg   *config.RequiredLabelsRule
	match *matcher
}

func newRequiredLabels(r *config.RequiredLabelsRule, exempt map[string]bool) (*requiredLabels, error) {
	m, err := compileMatch(&r.Match, exempt)
	if err != nil {
		return nil, err
	}
	return &requiredLabels{cfg: r, match: m}, nil
}

func (r *requiredLabels) name() string                     { return config.RuleRequiredLabels }
func (r *requiredLabels) action() config.EnforcementAction { return r.cfg.EnforcementAction }
func (r *requiredLabels) matcher() *matcher                { return r.match }

func (r *requiredLabels) applies(k kind, op admissionv1.Operation, mutate bool) bool {
	if !k.isPodKind() {
		return false
	}
	if mutate {
		return op == admissionv1.Create
	}
	return op == admissionv1.Create || op == admissionv1.Update
}

func (r *requiredLabels) evaluate(ev *evaluation) {
	if ev.obj.meta.DeletionTimestamp != nil {
		return // being deleted: only finalizers and the like change now
	}
	if ev.mutate {
		r.addDefaults(ev)
		return
	}
	found := r.check(ev, ev.obj)
	if len(found) > 0 && ev.req.Operation == admissionv1.Update && ev.old != nil {
		tolerate(found, r.check(ev, ev.old))
	}
	ev.res.Violations = append(ev.res.Violations, found...)
}

// check returns a violation for each required label o lacks or has with a
// value that is not allowed.
func (r *requiredLabels) check(ev *evaluation, o *object) []Violation {
	var out []Violation
	for i := range r.cfg.Labels {
		l := &r.cfg.Labels[i]
		v, ok := o.labels[l.Key]
		switch {
		case !ok:
			out = append(out, violation(r, CodeMissingLabel, o.labelField(l.Key),
				fmt.Sprintf("%s: %s %q is required%s; %s", o.name(ev.ns), r.what(o), l.Key, allowed(l), r.selectedBy(ev, l.Key))))
		case !l.Allows(v):
			out = append(out, violation(r, CodeLabelNotAllowed, o.labelField(l.Key),
				fmt.Sprintf("%s: %s %s=%q is not allowed: want one of %s; %s", o.name(ev.ns), r.what(o), l.Key, v, quoteList(l.AllowedValues), r.selectedBy(ev, l.Key))))
		}
	}
	return out
}

func (r *requiredLabels) what(o *object) string {
	if o.kind == kindPod {
		return "label"
	}
	return "pod template label"
}

func allowed(l *config.RequiredLabel) string {
	if len(l.AllowedValues) == 0 {
		return " (any value)"
	}
	return " with one of the values " + quoteList(l.AllowedValues)
}

// selectedBy names the NetworkPolicies of the namespace whose selection
// depends on the label key: those are what a missing or wrong label
// silently changes.
func (r *requiredLabels) selectedBy(ev *evaluation, key string) string {
	var names []string
	for _, np := range ev.c.NetworkPolicies(ev.ns) {
		if np != nil && slices.Contains(policylib.SelectedLabelKeys(np), key) {
			names = append(names, np.Name)
		}
	}
	if len(names) == 0 {
		return fmt.Sprintf("no NetworkPolicy in namespace %s selects on it yet", ev.ns)
	}
	slices.Sort(names)
	return fmt.Sprintf("NetworkPolicies in namespace %s that select on it: %s", ev.ns, strings.Join(names, ", "))
}

// addDefaults patches in the default of every missing label that has one.
func (r *requiredLabels) addDefaults(ev *evaluation) {
	o := ev.obj
	var add []*config.RequiredLabel
	for i := range r.cfg.Labels {
		l := &r.cfg.Labels[i]
		if _, ok := o.labels[l.Key]; !ok && l.Default != nil {
			add = append(add, l)
		}
	}
	if len(add) == 0 {
		return
	}
	set := make(map[string]string, len(add))
	var desc []string
	for _, l := range add {
		set[l.Key] = *l.Default
		desc = append(desc, fmt.Sprintf("%s=%q", l.Key, *l.Default))
	}
	what := fmt.Sprintf("%s %s (the configured default)", r.what(o), strings.Join(desc, ", "))
	if r.cfg.EnforcementAction == config.DryRun {
		for _, l := range add {
			ev.res.add(violation(r, CodeMissingLabel, o.labelField(l.Key),
				fmt.Sprintf("%s: would set missing %s %s=%q (the configured default)", o.name(ev.ns), r.what(o), l.Key, *l.Default)))
		}
		return
	}
	// A workload whose selector needs the label absent (or set otherwise)
	// would no longer select its own pods: leave it to the validating side.
	if o.selector != nil {
		if sel, err := policylib.ParseSelector(o.selector); err == nil {
			after := maps.Clone(o.labels)
			if after == nil {
				after = map[string]string{}
			}
			maps.Copy(after, set)
			if sel.Matches(o.labels) && !sel.Matches(after) {
				ev.res.warn(fmt.Sprintf("%s: not setting %s on %s: spec.selector would no longer match the pod template", r.name(), what, o.name(ev.ns)))
				return
			}
		}
	}
	patches, ok := labelPatches(o, set)
	if !ok {
		return // no template to put labels on: the API server refuses it anyway
	}
	ev.res.Patches = append(ev.res.Patches, patches...)
	ev.res.warn(fmt.Sprintf("%s: set missing %s on %s", r.name(), what, o.name(ev.ns)))
}

// labelPatches returns the JSON patch that adds the labels: one add per
// label into an existing label map, or an add of the whole map (or of the
// metadata holding it) where there is none yet or it is empty (an empty map
// may be absent from the JSON).
func labelPatches(o *object, set map[string]string) ([]jsonpatch.JsonPatchOperation, bool) {
	doc, err := o.json()
	if err != nil || !json.Valid(doc) {
		return nil, false // a patch must apply to the whole document
	}
	if len(o.labels) > 0 {
		keys := slices.Sorted(maps.Keys(set))
		out := make([]jsonpatch.JsonPatchOperation, len(keys))
		for i, k := range keys {
			out[i] = jsonpatch.NewOperation("add", pointer(append(slices.Clone(o.labelsPath), k)...), set[k])
		}
		return out, true
	}
	metaPath := o.labelsPath[:len(o.labelsPath)-1]
	switch {
	case hasObjectAt(doc, metaPath):
		return []jsonpatch.JsonPatchOperation{jsonpatch.NewOperation("add", pointer(o.labelsPath...), set)}, true
	case hasObjectAt(doc, metaPath[:len(metaPath)-1]):
		return []jsonpatch.JsonPatchOperation{jsonpatch.NewOperation("add", pointer(metaPath...), map[string]any{"labels": set})}, true
	}
	return nil, false
}
