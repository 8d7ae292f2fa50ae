package manifest

import (
	"fmt"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
)

// Source says where an object came from, for error messages and findings.
type Source struct {
	File string // path as given (cleaned) or as found under a given directory; "<stdin>" for Stdin
	Doc  int    // 1-based document index in the file; 0 when a message concerns the whole file
}

// String gives "file#doc", or just the file when no document is meant, so
// every message that points into a file looks the same whatever the file holds.
func (s Source) String() string {
	if s.Doc <= 0 {
		return s.File
	}
	return s.File + "#" + strconv.Itoa(s.Doc)
}

// Object is one decoded object with its origin.
type Object struct {
	Obj    runtime.Object
	Source Source
}

// Set is what a load produced, grouped by kind, each group in input order.
// Namespaced objects of built-in kinds without metadata.namespace get
// "default" (as kubectl does), written into the object itself so that every
// consumer agrees on it.
type Set struct {
	Namespaces      []*corev1.Namespace
	Nodes           []*corev1.Node
	Pods            []*corev1.Pod
	Services        []*corev1.Service
	NetworkPolicies []*networkingv1.NetworkPolicy
	// Workloads holds *appsv1.Deployment, *appsv1.ReplicaSet,
	// *appsv1.StatefulSet, *appsv1.DaemonSet, *batchv1.Job and *batchv1.CronJob.
	Workloads []Object
	// Others holds every other kind as *unstructured.Unstructured. Built-in
	// kinds among them were still decoded strictly, so typos there fail too,
	// and a kind the core, apps, batch, extensions or networking.k8s.io
	// version named does not have (a misspelt kind) is an error, not an
	// Other.
	Others []Object

	index map[objKey]located
}

// objKey identifies an object the way the API server does. The group is part
// of it so that two unrelated CRDs sharing a kind name do not collide.
type objKey struct {
	Group, Kind, Namespace, Name string
}

// located is a Source plus the position inside a List document, which only
// error messages need: two items of one List share a Source.
type located struct {
	src  Source
	item string
}

func (l located) String() string {
	if l.item == "" {
		return l.src.String()
	}
	return l.src.String() + " " + l.item
}

// SourceOf returns where obj was loaded from. A pod made by WorkloadPods
// resolves to its workload's source through the FromWorkloadAnnotation, so
// findings about expanded pods can still point at a file.
func (s *Set) SourceOf(obj runtime.Object) (Source, bool) {
	if s == nil || isNil(obj) {
		return Source{}, false
	}
	k, err := keyOf(obj)
	if err != nil {
		return Source{}, false
	}
	if l, ok := s.index[k]; ok {
		return l.src, true
	}
	if pod, ok := obj.(*corev1.Pod); ok {
		kind, name, ok := strings.Cut(pod.Annotations[FromWorkloadAnnotation], "/")
		if !ok {
			return Source{}, false
		}
		ns := pod.Namespace
		if ns == "" {
			ns = metav1NamespaceDefault
		}
		for _, group := range []string{appsv1.GroupName, batchv1.GroupName} {
			if l, ok := s.index[objKey{Group: group, Kind: kind, Namespace: ns, Name: name}]; ok {
				return l.src, true
			}
		}
	}
	return Source{}, false
}

// Objects returns every object in the set with its source, grouped in the
// order of the Set's fields.
func (s *Set) Objects() []Object {
	if s == nil {
		return nil
	}
	var out []Object
	s.each(func(obj runtime.Object, src Source) {
		out = append(out, Object{Obj: obj, Source: src})
	})
	return out
}

// Len returns the number of objects in the set.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.Namespaces) + len(s.Nodes) + len(s.Pods) + len(s.Services) +
		len(s.NetworkPolicies) + len(s.Workloads) + len(s.Others)
}

func (s *Set) each(fn func(runtime.Object, Source)) {
	src := func(obj runtime.Object) Source {
		src, _ := s.SourceOf(obj)
		return src
	}
	for _, o := range s.Namespaces {
		fn(o, src(o))
	}
	for _, o := range s.Nodes {
		fn(o, src(o))
	}
	for _, o := range s.Pods {
		fn(o, src(o))
	}
	for _, o := range s.Services {
		fn(o, src(o))
	}
	for _, o := range s.NetworkPolicies {
		fn(o, src(o))
	}
	for _, o := range s.Workloads {
		fn(o.Obj, o.Source)
	}
	for _, o := range s.Others {
		fn(o.Obj, o.Source)
	}
}

// Merge adds o's objects to s. An object already in s (same group, kind,
// namespace and name) is an error naming both sources, and then s is left
// unchanged so a failed reload cannot leave a half-merged view behind.
func (s *Set) Merge(o *Set) error {
	if o == nil {
		return nil
	}
	s.reindex()
	type pending struct {
		obj runtime.Object
		key objKey
		loc located
	}
	var add []pending
	seen := map[objKey]located{}
	var err error
	o.each(func(obj runtime.Object, src Source) {
		if err != nil {
			return
		}
		k, kerr := keyOf(obj)
		if kerr != nil {
			err = &Error{Source: src, Err: kerr}
			return
		}
		loc := located{src: src}
		if l, ok := o.index[k]; ok {
			loc = l
		}
		prev, dup := s.index[k]
		if !dup {
			prev, dup = seen[k]
		}
		if dup {
			err = duplicateError(k, prev, loc)
			return
		}
		seen[k] = loc
		add = append(add, pending{obj, k, loc})
	})
	if err != nil {
		return err
	}
	for _, p := range add {
		s.put(p.obj, p.key, p.loc)
	}
	return nil
}

// add puts one freshly decoded object into s, refusing a duplicate.
func (s *Set) add(obj runtime.Object, loc located) error {
	k, err := keyOf(obj)
	if err != nil {
		return err
	}
	if s.index == nil {
		s.index = map[objKey]located{}
	}
	if prev, ok := s.index[k]; ok {
		return duplicateError(k, prev, loc)
	}
	s.put(obj, k, loc)
	return nil
}

func (s *Set) put(obj runtime.Object, k objKey, loc located) {
	if s.index == nil {
		s.index = map[objKey]located{}
	}
	s.index[k] = loc
	switch o := obj.(type) {
	case *corev1.Namespace:
		s.Namespaces = append(s.Namespaces, o)
	case *corev1.Node:
		s.Nodes = append(s.Nodes, o)
	case *corev1.Pod:
		s.Pods = append(s.Pods, o)
	case *corev1.Service:
		s.Services = append(s.Services, o)
	case *networkingv1.NetworkPolicy:
		s.NetworkPolicies = append(s.NetworkPolicies, o)
	case *appsv1.Deployment, *appsv1.ReplicaSet, *appsv1.StatefulSet, *appsv1.DaemonSet, *batchv1.Job, *batchv1.CronJob:
		s.Workloads = append(s.Workloads, Object{Obj: obj, Source: loc.src})
	default:
		s.Others = append(s.Others, Object{Obj: obj, Source: loc.src})
	}
}

// reindex covers Sets assembled by hand (or appended to by callers), whose
// objects the index does not know yet, so Merge still sees every duplicate.
func (s *Set) reindex() {
	if s.index != nil && len(s.index) == s.Len() {
		return
	}
	old := s.index
	s.index = make(map[objKey]located, s.Len())
	s.each(func(obj runtime.Object, src Source) {
		k, err := keyOf(obj)
		if err != nil {
			return
		}
		if l, ok := old[k]; ok {
			s.index[k] = l
			return
		}
		s.index[k] = located{src: src}
	})
}

func duplicateError(k objKey, first, second located) error {
	return &Error{
		Source:    second.src,
		Item:      second.item,
		Kind:      k.Kind,
		Namespace: k.Namespace,
		Name:      k.Name,
		Err:       fmt.Errorf("duplicate object: already defined in %s", first),
	}
}

// keyOf falls back on the Go type when TypeMeta is empty, because objects
// built in code (rather than decoded) usually leave it unset.
func keyOf(obj runtime.Object) (objKey, error) {
	gvk := obj.GetObjectKind().GroupVersionKind()
	if gvk.Kind == "" {
		gvks, _, err := scheme.Scheme.ObjectKinds(obj)
		if err != nil || len(gvks) == 0 {
			return objKey{}, fmt.Errorf("cannot tell the kind of %T", obj)
		}
		gvk = gvks[0]
	}
	acc, err := meta.Accessor(obj)
	if err != nil {
		return objKey{}, err
	}
	ns := acc.GetNamespace()
	if ns == "" && isNamespaced(gvk) {
		ns = metav1NamespaceDefault
	}
	return objKey{Group: gvk.Group, Kind: gvk.Kind, Namespace: ns, Name: acc.GetName()}, nil
}

const metav1NamespaceDefault = "default"

// legacyGroups are the built-in groups that once served the kinds this
// package types; a manifest using an old version of one of them is refused
// rather than filed under Others, where callers would silently ignore it.
var legacyGroups = map[string]bool{
	"": true, "apps": true, "extensions": true, "batch": true, "networking.k8s.io": true,
}

var typedKinds = map[string]schema.GroupVersionKind{
	"Namespace":     corev1.SchemeGroupVersion.WithKind("Namespace"),
	"Node":          corev1.SchemeGroupVersion.WithKind("Node"),
	"Pod":           corev1.SchemeGroupVersion.WithKind("Pod"),
	"Service":       corev1.SchemeGroupVersion.WithKind("Service"),
	"NetworkPolicy": networkingv1.SchemeGroupVersion.WithKind("NetworkPolicy"),
	"Deployment":    appsv1.SchemeGroupVersion.WithKind("Deployment"),
	"ReplicaSet":    appsv1.SchemeGroupVersion.WithKind("ReplicaSet"),
	"StatefulSet":   appsv1.SchemeGroupVersion.WithKind("StatefulSet"),
	"DaemonSet":     appsv1.SchemeGroupVersion.WithKind("DaemonSet"),
	"Job":           batchv1.SchemeGroupVersion.WithKind("Job"),
	"CronJob":       batchv1.SchemeGroupVersion.WithKind("CronJob"),
}

// unsupportedVersion reports whether gvk is an outdated or misplaced spelling
// of a kind this package types (extensions/v1beta1 NetworkPolicy, v1 Deployment).
func unsupportedVersion(gvk schema.GroupVersionKind) (schema.GroupVersionKind, bool) {
	want, ok := typedKinds[gvk.Kind]
	if !ok || !legacyGroups[gvk.Group] || gvk == want {
		return schema.GroupVersionKind{}, false
	}
	return want, true
}

// unknownBuiltinKind reports whether gvk names a version of one of the
// built-in groups of the kinds this package types, but a kind that version
// does not have: a misspelling (NetworkPolcy) that would otherwise be filed
// under Others and silently ignored. Other groups may be anyone's CRDs.
// What a version has is what the Kubernetes API this build links knows: a
// kind added to one of these groups later is refused until podwall links
// a newer one.
func unknownBuiltinKind(gvk schema.GroupVersionKind) bool {
	return legacyGroups[gvk.Group] && scheme.Scheme.IsVersionRegistered(gvk.GroupVersion()) && !scheme.Scheme.Recognizes(gvk)
}

// isNamespaced can only answer for kinds compiled into the scheme; custom
// kinds are left as written because their scope lives in a CRD we may not have.
func isNamespaced(gvk schema.GroupVersionKind) bool {
	if !scheme.Scheme.Recognizes(gvk) {
		return false
	}
	return !clusterScoped[gvk.GroupKind()]
}

var clusterScoped = map[schema.GroupKind]bool{}

func init() {
	for group, kinds := range map[string][]string{
		"":                             {"Namespace", "Node", "PersistentVolume", "ComponentStatus"},
		"rbac.authorization.k8s.io":    {"ClusterRole", "ClusterRoleBinding"},
		"storage.k8s.io":               {"StorageClass", "CSIDriver", "CSINode", "VolumeAttachment", "VolumeAttributesClass"},
		"admissionregistration.k8s.io": {"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"},
		"scheduling.k8s.io":            {"PriorityClass"},
		"node.k8s.io":                  {"RuntimeClass"},
		"networking.k8s.io":            {"IngressClass", "IPAddress", "ServiceCIDR"},
		"certificates.k8s.io":          {"CertificateSigningRequest", "ClusterTrustBundle"},
		"flowcontrol.apiserver.k8s.io": {"FlowSchema", "PriorityLevelConfiguration"},
		"resource.k8s.io":              {"DeviceClass", "ResourceSlice", "DeviceTaintRule"},
		"authentication.k8s.io":        {"TokenReview", "SelfSubjectReview"},
		"authorization.k8s.io":         {"SubjectAccessReview", "SelfSubjectAccessReview", "SelfSubjectRulesReview"},
		"storagemigration.k8s.io":      {"StorageVersionMigration"},
		"internal.apiserver.k8s.io":    {"StorageVersion"},
		"policy":                       {"PodSecurityPolicy"},
	} {
		for _, k := range kinds {
			clusterScoped[schema.GroupKind{Group: group, Kind: k}] = true
		}
	}
}

// kindOf names an object's kind for messages, whether or not TypeMeta is set.
func kindOf(obj runtime.Object) string {
	if k := obj.GetObjectKind().GroupVersionKind().Kind; k != "" {
		return k
	}
	if u, ok := obj.(*unstructured.Unstructured); ok {
		return u.GetKind()
	}
	if gvks, _, err := scheme.Scheme.ObjectKinds(obj); err == nil && len(gvks) > 0 {
		return gvks[0].Kind
	}
	return fmt.Sprintf("%T", obj)
}
