package rules_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/podwall/podwall/webhook/config"
	"github.com/podwall/podwall/webhook/rules"
)

// evaluator parses a configuration (apiVersion and kind are added) and
// builds its evaluator.
func evaluator(t testing.TB, doc string) *rules.Evaluator {
	t.Helper()
	cfg, err := config.Parse([]byte("apiVersion: podwall.io/v1alpha1\nkind: AdmissionConfiguration\n"+doc), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e, err := rules.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// labelsConfig is a requiredLabels rule for access in {true,false} with
// the given action and default ("" for none).
func labelsConfig(action config.EnforcementAction, def string) string {
	d := ""
	if def != "" {
		d = fmt.Sprintf("\n      default: %q", def)
	}
	return fmt.Sprintf(`rules:
  requiredLabels:
    enforcementAction: %s
    labels:
    - key: access
      allowedValues: ["true", "false"]%s
`, action, d)
}

// denyConfig is a defaultDeny rule for namespaces labelled protected=true.
func denyConfig(action config.EnforcementAction, types string) string {
	return fmt.Sprintf(`rules:
  defaultDeny:
    enforcementAction: %s
    policyTypes: [%s]
    match:
      namespaceSelector: {matchLabels: {protected: "true"}}
`, action, types)
}

// hygieneConfig is a hygiene rule, with defaultDeny (action dryrun, so it
// only defines the protected namespaces) for protected=true namespaces.
func hygieneConfig(action config.EnforcementAction, extra string) string {
	return fmt.Sprintf(`rules:
  defaultDeny:
    enforcementAction: dryrun
    match:
      namespaceSelector: {matchLabels: {protected: "true"}}
  networkPolicyHygiene:
    enforcementAction: %s
%s`, action, extra)
}

var actions = []config.EnforcementAction{config.Deny, config.Warn, config.DryRun}

func namespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func pod(ns, name string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
}

// workloadKinds are the workload kinds, for tests over every one.
var workloadKinds = []string{"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "CronJob"}

// workload builds a workload whose pod template has the labels; its
// selector is app=<name>, which the template always carries.
func workload(kind, ns, name string, labels map[string]string) runtime.Object {
	tl := map[string]string{"app": name}
	for k, v := range labels {
		tl[k] = v
	}
	tmpl := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: tl},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}
	om := metav1.ObjectMeta{Namespace: ns, Name: name}
	switch kind {
	case "Deployment":
		return &appsv1.Deployment{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: kind}, ObjectMeta: om, Spec: appsv1.DeploymentSpec{Selector: sel, Template: tmpl}}
	case "ReplicaSet":
		return &appsv1.ReplicaSet{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: kind}, ObjectMeta: om, Spec: appsv1.ReplicaSetSpec{Selector: sel, Template: tmpl}}
	case "StatefulSet":
		return &appsv1.StatefulSet{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: kind}, ObjectMeta: om, Spec: appsv1.StatefulSetSpec{Selector: sel, Template: tmpl}}
	case "DaemonSet":
		return &appsv1.DaemonSet{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: kind}, ObjectMeta: om, Spec: appsv1.DaemonSetSpec{Selector: sel, Template: tmpl}}
	case "Job":
		tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
		return &batchv1.Job{TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: kind}, ObjectMeta: om, Spec: batchv1.JobSpec{Template: tmpl}}
	case "CronJob":
		tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
		return &batchv1.CronJob{TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: kind}, ObjectMeta: om,
			Spec: batchv1.CronJobSpec{Schedule: "@hourly", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl}}}}
	}
	panic("unknown workload kind " + kind)
}

// templateLabels returns the labels rules apply to: a pod's, or a
// workload's pod template's.
func templateLabels(t testing.TB, obj runtime.Object) map[string]string {
	t.Helper()
	switch o := obj.(type) {
	case *corev1.Pod:
		return o.Labels
	case *appsv1.Deployment:
		return o.Spec.Template.Labels
	case *appsv1.ReplicaSet:
		return o.Spec.Template.Labels
	case *appsv1.StatefulSet:
		return o.Spec.Template.Labels
	case *appsv1.DaemonSet:
		return o.Spec.Template.Labels
	case *batchv1.Job:
		return o.Spec.Template.Labels
	case *batchv1.CronJob:
		return o.Spec.JobTemplate.Spec.Template.Labels
	}
	t.Fatalf("no pod labels in %T", obj)
	return nil
}

// policyYAML parses a NetworkPolicy spec in namespace ns.
func policy(t testing.TB, ns, name, spec string) *networkingv1.NetworkPolicy {
	t.Helper()
	var np networkingv1.NetworkPolicy
	doc := fmt.Sprintf("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: %s, namespace: %s}\nspec:\n%s", name, ns, spec)
	if err := yaml.UnmarshalStrict([]byte(doc), &np); err != nil {
		t.Fatal(err)
	}
	return &np
}

const denyIngressSpec = "  podSelector: {}\n  policyTypes: [Ingress]\n"

// request builds an admission request the way the API server sends it:
// objects as JSON, kind, namespace and name filled in.
func request(t testing.TB, op admissionv1.Operation, obj, old runtime.Object) *admissionv1.AdmissionRequest {
	t.Helper()
	req := &admissionv1.AdmissionRequest{UID: "uid", Operation: op}
	for _, o := range []runtime.Object{old, obj} { // obj wins
		if o == nil {
			continue
		}
		gvks, _, err := scheme.Scheme.ObjectKinds(o)
		if err != nil {
			t.Fatal(err)
		}
		req.Kind = metav1.GroupVersionKind{Group: gvks[0].Group, Version: gvks[0].Version, Kind: gvks[0].Kind}
		m, _ := o.(metav1.Object)
		req.Namespace, req.Name = m.GetNamespace(), m.GetName()
	}
	if obj != nil {
		req.Object = runtime.RawExtension{Raw: mustJSON(t, obj)}
	}
	if old != nil {
		req.OldObject = runtime.RawExtension{Raw: mustJSON(t, old)}
	}
	return req
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func validate(t testing.TB, e *rules.Evaluator, c rules.Cluster, op admissionv1.Operation, obj, old runtime.Object) rules.Result {
	t.Helper()
	return e.Validate(context.Background(), request(t, op, obj, old), c)
}

// codes returns "rule/action/code" for every violation.
func codes(r rules.Result) []string {
	var out []string
	for _, v := range r.Violations {
		out = append(out, string(v.Action)+" "+v.Rule+" "+v.Code)
	}
	return out
}

// checkResult checks the invariants of every Result and the expected
// violations ("action rule code", in order).
func checkResult(t testing.TB, r rules.Result, want ...string) {
	t.Helper()
	if got := codes(r); !slices.Equal(got, want) {
		t.Errorf("violations = %q, want %q\n%s", got, want, describe(r))
	}
	checkInvariants(t, r)
}

func checkInvariants(t testing.TB, r rules.Result) {
	t.Helper()
	deny, warn := 0, 0
	for _, v := range r.Violations {
		switch v.Action {
		case config.Deny:
			deny++
		case config.Warn:
			warn++
		case config.DryRun:
		default:
			t.Errorf("violation with action %q", v.Action)
		}
		if v.Message == "" || v.Rule == "" || v.Code == "" {
			t.Errorf("incomplete violation %+v", v)
		}
		if v.Code == rules.CodeInternal {
			t.Errorf("internal error: %s", v.Message)
		}
	}
	if r.Allowed != (deny == 0) {
		t.Errorf("Allowed = %v with %d deny violations", r.Allowed, deny)
	}
	if (r.Message() == "") != r.Allowed {
		t.Errorf("Message() = %q with Allowed %v", r.Message(), r.Allowed)
	}
	if len(r.Warnings) < warn {
		t.Errorf("%d warnings for %d warn violations", len(r.Warnings), warn)
	}
	for _, w := range r.Warnings {
		if strings.ContainsAny(w, "\n\r") {
			t.Errorf("warning spans lines: %q", w)
		}
	}
}

func describe(r rules.Result) string {
	b, _ := json.MarshalIndent(r, "", "  ")
	return string(b)
}

// applyPatches applies a Result's patches to the request's object and
// decodes the outcome into into.
func applyPatches[T any](t testing.TB, req *admissionv1.AdmissionRequest, r rules.Result, into T) T {
	t.Helper()
	doc := req.Object.Raw
	if len(r.Patches) > 0 {
		p, err := jsonpatchapply.DecodePatch(mustJSON(t, r.Patches))
		if err != nil {
			t.Fatal(err)
		}
		if doc, err = p.Apply(doc); err != nil {
			t.Fatalf("patch %s does not apply: %v\nto %s", mustJSON(t, r.Patches), err, req.Object.Raw)
		}
	}
	if err := json.Unmarshal(doc, into); err != nil {
		t.Fatal(err)
	}
	return into
}

func newOf(obj runtime.Object) runtime.Object {
	out, err := scheme.Scheme.New(obj.GetObjectKind().GroupVersionKind())
	if err != nil {
		panic(err)
	}
	return out
}

func corev1ContainerPort(name string, port int32) corev1.ContainerPort {
	return corev1.ContainerPort{Name: name, ContainerPort: port, Protocol: corev1.ProtocolTCP}
}

func service(ns, name string, selector map[string]string, port, target int32) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Selector: selector, Ports: []corev1.ServicePort{{
			Protocol: corev1.ProtocolTCP, Port: port, TargetPort: intstr.FromInt32(target)}}},
	}
}
