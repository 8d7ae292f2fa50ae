package rules_test

import (
	"context"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/podwall/podwall/webhook/config"
	"github.com/podwall/podwall/webhook/rules"
)

// podKindObject builds a Pod or workload of kind with the labels.
func podKindObject(kind, ns, name string, labels map[string]string) runtime.Object {
	if kind == "Pod" {
		return pod(ns, name, labels)
	}
	return workload(kind, ns, name, labels)
}

var podKinds = append([]string{"Pod"}, workloadKinds...)

// TestRequiredLabelsValidate covers every pod kind × action × label state
// on CREATE.
func TestRequiredLabelsValidate(t *testing.T) {
	c := rules.NewMemoryCluster(policy(t, "shop", "access-web", "  podSelector: {matchLabels: {app: web}}\n  ingress: [{from: [{podSelector: {matchLabels: {access: 'true'}}}]}]\n"))
	states := []struct {
		name   string
		labels map[string]string
		code   string // "" when compliant
		field  string
		msg    []string
	}{
		{"compliant true", map[string]string{"access": "true"}, "", "", nil},
		{"compliant false", map[string]string{"access": "false"}, "", "", nil},
		{"missing", nil, rules.CodeMissingLabel, "labels[access]", []string{`"access" is required with one of the values "true", "false"`, "NetworkPolicies in namespace shop that select on it: access-web"}},
		{"not allowed", map[string]string{"access": "maybe"}, rules.CodeLabelNotAllowed, "labels[access]", []string{`access="maybe" is not allowed: want one of "true", "false"`, "access-web"}},
	}
	for _, action := range actions {
		e := evaluator(t, labelsConfig(action, ""))
		for _, kind := range podKinds {
			for _, st := range states {
				t.Run(string(action)+"/"+kind+"/"+st.name, func(t *testing.T) {
					obj := podKindObject(kind, "shop", "x", st.labels)
					r := validate(t, e, c, admissionv1.Create, obj, nil)
					if st.code == "" {
						checkResult(t, r)
						return
					}
					checkResult(t, r, string(action)+" requiredLabels "+st.code)
					v := r.Violations[0]
					wantField := "metadata." + st.field
					if kind != "Pod" {
						wantField = "spec.template.metadata." + st.field
					}
					if kind == "CronJob" {
						wantField = "spec.jobTemplate.spec.template.metadata." + st.field
					}
					if v.Field != wantField {
						t.Errorf("field %q, want %q", v.Field, wantField)
					}
					msgs := append(st.msg, kind+" shop/x: ")
					if kind != "Pod" {
						msgs = append(msgs, "pod template label")
					}
					for _, m := range msgs {
						if !strings.Contains(v.Message, m) {
							t.Errorf("message %q lacks %q", v.Message, m)
						}
					}
					switch action {
					case config.Deny:
						if r.Allowed || r.Message() != v.Message || len(r.Warnings) != 0 {
							t.Errorf("deny: allowed %v, message %q, warnings %q", r.Allowed, r.Message(), r.Warnings)
						}
					case config.Warn:
						if !r.Allowed || len(r.Warnings) != 1 || !strings.HasPrefix(r.Warnings[0], "requiredLabels: "+wantField+": ") {
							t.Errorf("warn: allowed %v, warnings %q", r.Allowed, r.Warnings)
						}
					case config.DryRun:
						if !r.Allowed || len(r.Warnings) != 0 {
							t.Errorf("dryrun: allowed %v, warnings %q", r.Allowed, r.Warnings)
						}
					}
				})
			}
		}
	}
}

func TestRequiredLabelsDetails(t *testing.T) {
	e := evaluator(t, `rules:
  requiredLabels:
    labels:
    - key: access
      allowedValues: ["true", "false"]
    - key: example.com/team
`)
	// No NetworkPolicy selects on the labels; a label with no allowed
	// values needs only to be present; each missing label is one violation.
	r := validate(t, e, nil, admissionv1.Create, pod("shop", "p", nil), nil)
	checkResult(t, r, "deny requiredLabels missing-label", "deny requiredLabels missing-label")
	if v := r.Violations[1]; v.Field != "metadata.labels[example.com/team]" || !strings.Contains(v.Message, `"example.com/team" is required (any value); no NetworkPolicy in namespace shop selects on it yet`) {
		t.Errorf("violation %+v", v)
	}
	checkResult(t, validate(t, e, nil, admissionv1.Create, pod("shop", "p", map[string]string{"access": "true", "example.com/team": "anything"}), nil))

	// UPDATE: only violations the update introduces are denied.
	good := pod("shop", "p", map[string]string{"access": "true", "example.com/team": "a"})
	bad := pod("shop", "p", map[string]string{"example.com/team": "a"})
	r = validate(t, e, nil, admissionv1.Update, bad, good)
	checkResult(t, r, "deny requiredLabels missing-label")
	r = validate(t, e, nil, admissionv1.Update, bad, bad)
	checkResult(t, r, "warn requiredLabels missing-label")
	if !strings.Contains(r.Violations[0].Message, "tolerated") || len(r.Warnings) != 1 {
		t.Errorf("tolerated update: %s", describe(r))
	}
	// An UPDATE of an object being deleted (finalizers) is left alone.
	deleting := bad.DeepCopy()
	now := metav1.Now()
	deleting.DeletionTimestamp = &now
	checkResult(t, validate(t, e, nil, admissionv1.Update, deleting, good))
	// DELETE is never checked.
	checkResult(t, validate(t, e, nil, admissionv1.Delete, nil, bad))
	// Typed objects (no raw bytes) are read too, and not modified.
	req := &admissionv1.AdmissionRequest{Operation: admissionv1.Create, Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: "shop", Object: runtime.RawExtension{Object: bad}}
	checkResult(t, e.Validate(context.Background(), req, nil), "deny requiredLabels missing-label")
}

// TestMutate applies the patches to every pod kind in every label state.
func TestMutate(t *testing.T) {
	states := []struct {
		name   string
		labels map[string]string // nil for pods: no labels at all
		want   string            // access value after mutation; "" for absent
		patch  bool
	}{
		{"missing", nil, "false", true},
		{"missing among others", map[string]string{"team": "a"}, "false", true},
		{"present", map[string]string{"access": "true"}, "true", false},
		{"not allowed is not overwritten", map[string]string{"access": "maybe"}, "maybe", false},
	}
	for _, action := range actions {
		e := evaluator(t, labelsConfig(action, "false"))
		for _, kind := range podKinds {
			for _, st := range states {
				t.Run(string(action)+"/"+kind+"/"+st.name, func(t *testing.T) {
					obj := podKindObject(kind, "shop", "x", st.labels)
					req := request(t, admissionv1.Create, obj, nil)
					r := e.Mutate(context.Background(), req, nil)
					if !r.Allowed {
						t.Fatal("Mutate denied")
					}
					checkInvariants(t, r)
					wantPatch := st.patch && action != config.DryRun
					if (len(r.Patches) > 0) != wantPatch {
						t.Fatalf("patches %s, want some: %v", mustJSON(t, r.Patches), wantPatch)
					}
					got := templateLabels(t, applyPatches(t, req, r, newOf(obj)))
					want := st.want
					if !wantPatch && st.patch {
						want = "" // dryrun: unchanged
					}
					if got["access"] != want || (want == "" && len(got) != len(templateLabels(t, obj))) {
						t.Errorf("labels after patch %v, want access=%q", got, want)
					}
					for k, v := range templateLabels(t, obj) {
						if got[k] != v {
							t.Errorf("patch lost label %s=%s: %v", k, v, got)
						}
					}
					switch {
					case wantPatch && (len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], `set missing`) || len(r.Violations) != 0):
						t.Errorf("patched: warnings %q, violations %v", r.Warnings, codes(r))
					case !wantPatch && st.patch:
						checkResult(t, r, "dryrun requiredLabels missing-label")
						if len(r.Warnings) != 0 || !strings.Contains(r.Violations[0].Message, "would set") {
							t.Errorf("dryrun: %s", describe(r))
						}
					case !st.patch && (len(r.Warnings)+len(r.Violations) != 0):
						t.Errorf("nothing to do, yet %s", describe(r))
					}
					// After mutation the validating side has nothing to say
					// about a missing label.
					if wantPatch {
						patched := applyPatches(t, req, r, newOf(obj))
						checkResult(t, validate(t, e, nil, admissionv1.Create, patched, nil))
					}
				})
			}
		}
	}
}

func TestMutateShapes(t *testing.T) {
	e := evaluator(t, `rules:
  requiredLabels:
    labels:
    - {key: access, allowedValues: ["true", "false"], default: "false"}
    - {key: example.com/tier, default: "web"}
    - {key: owner}
`)
	mutate := func(t *testing.T, raw string, kind metav1.GroupVersionKind) (rules.Result, map[string]any) {
		t.Helper()
		req := &admissionv1.AdmissionRequest{Operation: admissionv1.Create, Kind: kind, Namespace: "shop", Object: runtime.RawExtension{Raw: []byte(raw)}}
		r := e.Mutate(context.Background(), req, nil)
		checkInvariants(t, r)
		var out map[string]any
		applyPatches(t, req, r, &out)
		return r, out
	}
	podKind := metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	labelsOf := func(m map[string]any, path ...string) map[string]any {
		var cur any = m
		for _, p := range path {
			cur = cur.(map[string]any)[p]
		}
		return cur.(map[string]any)
	}
	// A key with "/" is escaped in the JSON pointer; labels with
	// no default are left for validation.
	r, out := mutate(t, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"a":"b"}}}`, podKind)
	if l := labelsOf(out, "metadata", "labels"); l["access"] != "false" || l["example.com/tier"] != "web" || l["a"] != "b" || len(l) != 3 {
		t.Errorf("labels %v (patches %s)", l, mustJSON(t, r.Patches))
	}
	if r.Patches[1].Path != "/metadata/labels/example.com~1tier" {
		t.Errorf("escaped path %q", r.Patches[1].Path)
	}
	// No labels, null labels, empty labels.
	for _, meta := range []string{`{"name":"p"}`, `{"name":"p","labels":null}`, `{"name":"p","labels":{}}`} {
		_, out := mutate(t, `{"apiVersion":"v1","kind":"Pod","metadata":`+meta+`}`, podKind)
		if l := labelsOf(out, "metadata", "labels"); l["access"] != "false" || len(l) != 2 {
			t.Errorf("%s: labels %v", meta, l)
		}
	}
	// A template without metadata gets one; the rest of the template stays.
	_, out = mutate(t, `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"template":{"spec":{"containers":[{"name":"c","image":"i"}]}}}}`,
		metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"})
	if l := labelsOf(out, "spec", "template", "metadata", "labels"); l["access"] != "false" {
		t.Errorf("template labels %v", l)
	}
	if _, ok := labelsOf(out, "spec", "template", "spec")["containers"]; !ok {
		t.Error("template spec lost")
	}
	// A template with null metadata.
	_, out = mutate(t, `{"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"d"},"spec":{"schedule":"@daily","jobTemplate":{"spec":{"template":{"metadata":null}}}}}`,
		metav1.GroupVersionKind{Group: "batch", Version: "v1", Kind: "CronJob"})
	if l := labelsOf(out, "spec", "jobTemplate", "spec", "template", "metadata", "labels"); l["access"] != "false" {
		t.Errorf("cronjob template labels %v", l)
	}
	// No template at all: nothing to patch (the API server refuses it).
	r, _ = mutate(t, `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"}}`, metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"})
	if len(r.Patches) != 0 {
		t.Errorf("patched a workload without template: %s", mustJSON(t, r.Patches))
	}
	// A workload whose selector needs the label absent is not patched.
	dep := workload("Deployment", "shop", "d", nil).(*appsv1.Deployment)
	dep.Spec.Selector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "access", Operator: metav1.LabelSelectorOpDoesNotExist}}
	r = e.Mutate(context.Background(), request(t, admissionv1.Create, dep, nil), nil)
	if len(r.Patches) != 0 || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "spec.selector would no longer match") {
		t.Errorf("selector conflict: %s", describe(r))
	}
	// UPDATE and DELETE are not mutated; neither are exempt namespaces.
	for _, req := range []*admissionv1.AdmissionRequest{
		request(t, admissionv1.Update, pod("shop", "p", nil), pod("shop", "p", nil)),
		request(t, admissionv1.Delete, nil, pod("shop", "p", nil)),
		request(t, admissionv1.Create, pod("kube-system", "p", nil), nil),
	} {
		if r := e.Mutate(context.Background(), req, nil); len(r.Patches) != 0 || !r.Allowed {
			t.Errorf("%s %s: %s", req.Operation, req.Namespace, describe(r))
		}
	}
}
