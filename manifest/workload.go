package manifest

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/kubernetes/scheme"
)

// FromWorkloadAnnotation is set on every pod WorkloadPods makes, to
// "<Kind>/<name>" of the workload (in the pod's namespace), so findings about
// such a pod can name what a person would have to edit.
const FromWorkloadAnnotation = "podwall.io/from-workload"

// WorkloadPods returns the pods a workload would create, each with the pod
// template's labels, annotations and spec in the workload's namespace:
//
//   - Deployment, ReplicaSet, StatefulSet: "<name>-<i>" for each of
//     spec.replicas (default 1; 0 gives none).
//   - DaemonSet: "<name>-<node>" with spec.nodeName set, for each node the
//     pod could be scheduled on (nodeSelector, required node affinity and
//     NoSchedule/NoExecute taints are honoured); a single unscheduled
//     "<name>-0" when nodes is empty, since the nodes are then unknown.
//   - Job: spec.parallelism pods (default 1), no more than spec.completions.
//   - CronJob: one pod from spec.jobTemplate.
//
// A suspended Job or CronJob creates none. A selector that does not match
// the template's labels is an error, because the API server would refuse the
// workload and no such pods could exist.
func WorkloadPods(obj runtime.Object, nodes []*corev1.Node) ([]*corev1.Pod, error) {
	pods, err := workloadPods(obj, nodes)
	if err != nil && !isNil(obj) {
		kind := kindOf(obj)
		if om, ok := obj.(metav1.Object); ok && workloadKinds[kind] {
			return nil, fmt.Errorf("%s %s/%s: %w", kind, nsOrDefault(om.GetNamespace()), om.GetName(), err)
		}
	}
	return pods, err
}

var workloadKinds = map[string]bool{
	"Deployment": true, "ReplicaSet": true, "StatefulSet": true, "DaemonSet": true, "Job": true, "CronJob": true,
}

// workloadPods leaves naming the workload to its callers: WorkloadPods
// prefixes it, AllPods puts it into an *Error.
func workloadPods(obj runtime.Object, nodes []*corev1.Node) ([]*corev1.Pod, error) {
	if isNil(obj) {
		return nil, errors.New("no workload given")
	}
	switch w := obj.(type) {
	case *appsv1.Deployment:
		return replicated("Deployment", &w.ObjectMeta, w.Spec.Selector, &w.Spec.Template, "spec.replicas", w.Spec.Replicas)
	case *appsv1.ReplicaSet:
		return replicated("ReplicaSet", &w.ObjectMeta, w.Spec.Selector, &w.Spec.Template, "spec.replicas", w.Spec.Replicas)
	case *appsv1.StatefulSet:
		return replicated("StatefulSet", &w.ObjectMeta, w.Spec.Selector, &w.Spec.Template, "spec.replicas", w.Spec.Replicas)
	case *appsv1.DaemonSet:
		return daemonSetPods(w, nodes)
	case *batchv1.Job:
		if ptrOr(w.Spec.Suspend, false) {
			return nil, nil
		}
		n, field := ptrOr(w.Spec.Parallelism, 1), "spec.parallelism"
		if w.Spec.Completions != nil && *w.Spec.Completions < n {
			n, field = *w.Spec.Completions, "spec.completions"
		}
		return replicated("Job", &w.ObjectMeta, w.Spec.Selector, &w.Spec.Template, field, &n)
	case *batchv1.CronJob:
		if ptrOr(w.Spec.Suspend, false) {
			return nil, nil
		}
		one := int32(1)
		return replicated("CronJob", &w.ObjectMeta, w.Spec.JobTemplate.Spec.Selector, &w.Spec.JobTemplate.Spec.Template, "", &one)
	case *unstructured.Unstructured:
		typed, err := typedWorkload(w)
		if err != nil {
			return nil, err
		}
		return workloadPods(typed, nodes)
	default:
		return nil, fmt.Errorf("%s is not a workload kind", kindOf(obj))
	}
}

// typedWorkload lets callers holding unstructured workloads (from a dynamic
// client, say) use WorkloadPods too.
func typedWorkload(u *unstructured.Unstructured) (runtime.Object, error) {
	gvk := u.GroupVersionKind()
	if want, ok := typedKinds[gvk.Kind]; !ok || want != gvk || !workloadKinds[gvk.Kind] {
		return nil, fmt.Errorf("%s %s is not a workload kind", u.GetAPIVersion(), u.GetKind())
	}
	obj, err := scheme.Scheme.New(gvk)
	if err != nil {
		return nil, err
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, obj); err != nil {
		return nil, err
	}
	return obj, nil
}

// MaxPods caps the pods one workload expands to. Past a few thousand
// identical pods nothing changes for reachability, and an absurd count must
// not exhaust memory.
const MaxPods = 10000

// maxTotalPods is the documented limit of pods in one Kubernetes cluster.
const maxTotalPods = 150000

func replicated(kind string, om *metav1.ObjectMeta, sel *metav1.LabelSelector, tmpl *corev1.PodTemplateSpec, field string, replicas *int32) ([]*corev1.Pod, error) {
	if err := checkSelector(sel, tmpl); err != nil {
		return nil, err
	}
	n := ptrOr(replicas, 1)
	if n < 0 {
		return nil, fmt.Errorf("%s is negative (%d)", field, n)
	}
	if n > MaxPods {
		return nil, fmt.Errorf("%s is %d, more than the %d pods a workload may expand to", field, n, MaxPods)
	}
	pods := make([]*corev1.Pod, 0, n)
	for i := range n {
		pods = append(pods, newPod(kind, om, tmpl, om.Name+"-"+strconv.Itoa(int(i))))
	}
	return pods, nil
}

func daemonSetPods(ds *appsv1.DaemonSet, nodes []*corev1.Node) ([]*corev1.Pod, error) {
	const kind = "DaemonSet"
	if err := checkSelector(ds.Spec.Selector, &ds.Spec.Template); err != nil {
		return nil, err
	}
	if len(nodes) == 0 {
		return []*corev1.Pod{newPod(kind, &ds.ObjectMeta, &ds.Spec.Template, ds.Name+"-0")}, nil
	}
	var pods []*corev1.Pod
	for _, node := range nodes {
		ok, err := schedulable(&ds.Spec.Template.Spec, node)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		p := newPod(kind, &ds.ObjectMeta, &ds.Spec.Template, ds.Name+"-"+node.Name)
		p.Spec.NodeName = node.Name
		pods = append(pods, p)
	}
	return pods, nil
}

func checkSelector(sel *metav1.LabelSelector, tmpl *corev1.PodTemplateSpec) error {
	if sel == nil {
		return nil
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return fmt.Errorf("invalid spec.selector: %w", err)
	}
	if !s.Matches(labels.Set(tmpl.Labels)) {
		return fmt.Errorf("spec.selector %q does not match the pod template's labels %q", s.String(), labels.Set(tmpl.Labels).String())
	}
	return nil
}

func newPod(kind string, om *metav1.ObjectMeta, tmpl *corev1.PodTemplateSpec, name string) *corev1.Pod {
	ns := om.Namespace
	if ns == "" {
		ns = metav1NamespaceDefault
	}
	annotations := maps.Clone(tmpl.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[FromWorkloadAnnotation] = kind + "/" + om.Name
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   ns,
			Labels:      maps.Clone(tmpl.Labels),
			Annotations: annotations,
		},
		Spec: *tmpl.Spec.DeepCopy(),
	}
}

// daemonTolerations are added to every DaemonSet pod by its controller, so
// node conditions never keep a DaemonSet off a node.
var daemonTolerations = []corev1.Toleration{
	{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
	{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
	{Key: "node.kubernetes.io/disk-pressure", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	{Key: "node.kubernetes.io/memory-pressure", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	{Key: "node.kubernetes.io/pid-pressure", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	{Key: "node.kubernetes.io/unschedulable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	{Key: "node.kubernetes.io/network-unavailable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
}

// schedulable applies the hard constraints a DaemonSet pod honours. A pod
// placed on a node it could never run on would give it an address, and so
// reachability, that does not exist.
func schedulable(spec *corev1.PodSpec, node *corev1.Node) (bool, error) {
	for k, v := range spec.NodeSelector {
		if got, ok := node.Labels[k]; !ok || got != v {
			return false, nil
		}
	}
	if a := spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		ok, err := matchesNodeSelector(a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution, node)
		if err != nil || !ok {
			return false, err
		}
	}
	for _, taint := range node.Spec.Taints {
		if taint.Effect != corev1.TaintEffectNoSchedule && taint.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		if !tolerated(spec.Tolerations, taint) && !tolerated(daemonTolerations, taint) {
			return false, nil
		}
	}
	return true, nil
}

// matchesNodeSelector ORs the terms; an empty term matches nothing, as in
// the scheduler.
func matchesNodeSelector(ns *corev1.NodeSelector, node *corev1.Node) (bool, error) {
	for _, term := range ns.NodeSelectorTerms {
		if len(term.MatchExpressions) == 0 && len(term.MatchFields) == 0 {
			continue
		}
		ok, err := matchesTerm(term, node)
		if err != nil {
			return false, err
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}

var nodeSelectorOps = map[corev1.NodeSelectorOperator]selection.Operator{
	corev1.NodeSelectorOpIn:           selection.In,
	corev1.NodeSelectorOpNotIn:        selection.NotIn,
	corev1.NodeSelectorOpExists:       selection.Exists,
	corev1.NodeSelectorOpDoesNotExist: selection.DoesNotExist,
	corev1.NodeSelectorOpGt:           selection.GreaterThan,
	corev1.NodeSelectorOpLt:           selection.LessThan,
}

func matchesTerm(term corev1.NodeSelectorTerm, node *corev1.Node) (bool, error) {
	for _, e := range term.MatchExpressions {
		op, ok := nodeSelectorOps[e.Operator]
		if !ok {
			return false, fmt.Errorf("node affinity: unknown operator %q", e.Operator)
		}
		req, err := labels.NewRequirement(e.Key, op, e.Values)
		if err != nil {
			return false, fmt.Errorf("node affinity: %w", err)
		}
		if !req.Matches(labels.Set(node.Labels)) {
			return false, nil
		}
	}
	for _, f := range term.MatchFields {
		if f.Key != "metadata.name" {
			return false, fmt.Errorf("node affinity: unsupported field %q in matchFields", f.Key)
		}
		switch f.Operator {
		case corev1.NodeSelectorOpIn:
			if !slices.Contains(f.Values, node.Name) {
				return false, nil
			}
		case corev1.NodeSelectorOpNotIn:
			if slices.Contains(f.Values, node.Name) {
				return false, nil
			}
		default:
			return false, fmt.Errorf("node affinity: unsupported operator %q in matchFields", f.Operator)
		}
	}
	return true, nil
}

func tolerated(tolerations []corev1.Toleration, taint corev1.Taint) bool {
	for _, t := range tolerations {
		if t.Effect != "" && t.Effect != taint.Effect {
			continue
		}
		if t.Key != "" && t.Key != taint.Key {
			continue
		}
		switch t.Operator {
		case corev1.TolerationOpExists:
			return true
		case "", corev1.TolerationOpEqual:
			if t.Value == taint.Value {
				return true
			}
		case corev1.TolerationOpLt, corev1.TolerationOpGt:
			want, err1 := strconv.ParseInt(t.Value, 10, 64)
			got, err2 := strconv.ParseInt(taint.Value, 10, 64)
			if err1 == nil && err2 == nil && (t.Operator == corev1.TolerationOpLt && got < want || t.Operator == corev1.TolerationOpGt && got > want) {
				return true
			}
		}
	}
	return false
}

// AllPods returns the Pods followed by the pods of every workload (nodes for
// DaemonSets are the Set's Nodes). Two pods with the same namespace/name are
// an error naming both sources, since one would hide the other.
func (s *Set) AllPods() ([]*corev1.Pod, error) {
	if s == nil {
		return nil, nil
	}
	type origin struct {
		what string
		src  Source
	}
	seen := map[string]origin{}
	var out []*corev1.Pod
	nsName := func(p *corev1.Pod) string {
		ns := p.Namespace
		if ns == "" {
			ns = metav1NamespaceDefault
		}
		return ns + "/" + p.Name
	}
	for _, p := range s.Pods {
		src, _ := s.SourceOf(p)
		k := nsName(p)
		if prev, dup := seen[k]; dup {
			return nil, &Error{Source: src, Kind: "Pod", Namespace: p.Namespace, Name: p.Name,
				Err: fmt.Errorf("duplicate pod: already defined in %s", prev.src)}
		}
		seen[k] = origin{"Pod " + k, src}
		out = append(out, p)
	}
	for _, w := range s.Workloads {
		pods, err := workloadPods(w.Obj, s.Nodes)
		if err != nil {
			return nil, workloadError(w, err)
		}
		if len(out)+len(pods) > maxTotalPods {
			return nil, workloadError(w, fmt.Errorf("more than %d pods in all, beyond any Kubernetes cluster", maxTotalPods))
		}
		for _, p := range pods {
			k := nsName(p)
			if prev, dup := seen[k]; dup {
				return nil, workloadError(w, fmt.Errorf("its pod %s clashes with %s from %s", k, prev.what, prev.src))
			}
			seen[k] = origin{"a pod of " + p.Annotations[FromWorkloadAnnotation], w.Source}
			out = append(out, p)
		}
	}
	return out, nil
}

func workloadError(w Object, err error) error {
	if isNil(w.Obj) {
		return &Error{Source: w.Source, Err: err}
	}
	e := &Error{Source: w.Source, Kind: kindOf(w.Obj), Err: err}
	if om, ok := w.Obj.(metav1.Object); ok {
		e.Namespace, e.Name = om.GetNamespace(), om.GetName()
	}
	return e
}

func nsOrDefault(ns string) string {
	if ns == "" {
		return metav1NamespaceDefault
	}
	return ns
}

func isNil(obj runtime.Object) bool {
	v := reflect.ValueOf(obj)
	return obj == nil || v.Kind() == reflect.Pointer && v.IsNil()
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}
