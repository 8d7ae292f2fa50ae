package rules

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	jsonserializer "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/client-go/kubernetes/scheme"
	sigsjson "sigs.k8s.io/json"

	"github.com/podwall/podwall/policylib"
	"github.com/podwall/podwall/webhook/config"
)

// kind is an object kind some rule can check.
type kind uint8

const (
	kindNone kind = iota
	kindPod
	kindDeployment
	kindReplicaSet
	kindStatefulSet
	kindDaemonSet
	kindJob
	kindCronJob
	kindNetworkPolicy
	numKinds
)

var kindNames = [numKinds]string{
	kindPod:           config.KindPod,
	kindDeployment:    config.KindDeployment,
	kindReplicaSet:    config.KindReplicaSet,
	kindStatefulSet:   config.KindStatefulSet,
	kindDaemonSet:     config.KindDaemonSet,
	kindJob:           config.KindJob,
	kindCronJob:       config.KindCronJob,
	kindNetworkPolicy: config.KindNetworkPolicy,
}

// kindVersions are the group, version and kind each kind is decoded as.
var kindVersions = [numKinds]schema.GroupVersionKind{
	kindPod:           corev1.SchemeGroupVersion.WithKind("Pod"),
	kindDeployment:    appsv1.SchemeGroupVersion.WithKind("Deployment"),
	kindReplicaSet:    appsv1.SchemeGroupVersion.WithKind("ReplicaSet"),
	kindStatefulSet:   appsv1.SchemeGroupVersion.WithKind("StatefulSet"),
	kindDaemonSet:     appsv1.SchemeGroupVersion.WithKind("DaemonSet"),
	kindJob:           batchv1.SchemeGroupVersion.WithKind("Job"),
	kindCronJob:       batchv1.SchemeGroupVersion.WithKind("CronJob"),
	kindNetworkPolicy: networkingv1.SchemeGroupVersion.WithKind("NetworkPolicy"),
}

func (k kind) String() string {
	if k > kindNone && k < numKinds {
		return kindNames[k]
	}
	return "unknown kind"
}

func (k kind) isPodKind() bool { return k >= kindPod && k <= kindCronJob }

func kindByName(name string) kind {
	for k := kindPod; k < numKinds; k++ {
		if kindNames[k] == name {
			return k
		}
	}
	return kindNone
}

// kindOfGK maps a group and kind to a kind, whatever the version, so a
// matched kind in a version podwall does not read is refused rather than
// ignored.
func kindOfGK(group, name string) kind {
	k := kindByName(name)
	if k != kindNone && kindVersions[k].Group == group {
		return k
	}
	return kindNone
}

// kindOfRequest finds the kind from the request, or else from the object.
func kindOfRequest(kindGVK metav1.GroupVersionKind, ext runtime.RawExtension) kind {
	if kindGVK.Kind != "" {
		return kindOfGK(kindGVK.Group, kindGVK.Kind)
	}
	if len(ext.Raw) > 0 {
		if gvk, err := jsonserializer.DefaultMetaFactory.Interpret(ext.Raw); err == nil {
			return kindOfGK(gvk.Group, gvk.Kind)
		}
		return kindNone
	}
	if ext.Object != nil {
		if gvks, _, err := scheme.Scheme.ObjectKinds(ext.Object); err == nil && len(gvks) > 0 {
			return kindOfGK(gvks[0].Group, gvks[0].Kind)
		}
	}
	return kindNone
}

// kindSet is a set of kinds.
type kindSet uint16

func (s kindSet) has(k kind) bool { return s&(1<<k) != 0 }

// deserializer decodes JSON (or YAML) into the versioned types without
// conversion. It is not strict: the API server sends what it stored, and a
// field newer than this build must not make podwall refuse an object.
var deserializer = serializer.NewCodecFactory(scheme.Scheme).UniversalDeserializer()

// The JSON paths of the labels the requiredLabels rule checks.
var (
	podLabelsPath      = []string{"metadata", "labels"}
	templateLabelsPath = []string{"spec", "template", "metadata", "labels"}
	cronJobLabelsPath  = []string{"spec", "jobTemplate", "spec", "template", "metadata", "labels"}
)

// labelField renders the field path of one label, as in
// "spec.template.metadata.labels[access]".
func (o *object) labelField(key string) string {
	return strings.Join(o.labelsPath, ".") + "[" + key + "]"
}

// decodeRaw decodes JSON into a new object of the scheme's type for want,
// as the scheme's JSON serializer does (case-sensitive field names, ints
// kept as ints) without first parsing the document once more for its
// apiVersion and kind: the request says what to expect, and a document
// that says otherwise is decoded as what it says and then refused. Other
// encodings (YAML) go through the scheme's universal deserializer.
//
// A Pod is decoded down to the metadata the rules read: a pod's spec is
// most of its bytes and no rule looks at it, and the API server has
// decoded the whole object before admission anyway.
func decodeRaw(raw []byte, want schema.GroupVersionKind) (runtime.Object, error) {
	if t := bytes.TrimLeft(raw, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		obj, _, err := deserializer.Decode(raw, &want, nil)
		return obj, err
	}
	var obj runtime.Object
	if want == kindVersions[kindPod] {
		pm, err := decodePodMetadata(raw)
		if err != nil {
			return nil, err
		}
		obj = &corev1.Pod{TypeMeta: pm.TypeMeta, ObjectMeta: metav1.ObjectMeta{
			Name: pm.Metadata.Name, GenerateName: pm.Metadata.GenerateName, Namespace: pm.Metadata.Namespace,
			Labels: pm.Metadata.Labels, DeletionTimestamp: pm.Metadata.DeletionTimestamp,
		}}
	} else {
		var err error
		if obj, err = scheme.Scheme.New(want); err != nil {
			return nil, err
		}
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, obj); err != nil {
			return nil, err
		}
	}
	gvk := obj.GetObjectKind().GroupVersionKind()
	if gvk.Empty() {
		obj.GetObjectKind().SetGroupVersionKind(want)
		return obj, nil
	}
	if gvk != want {
		// Decode as what the document says, so the error can name it.
		obj, _, err := deserializer.Decode(raw, &want, nil)
		return obj, err
	}
	return obj, nil
}

// decodePodMetadata reads apiVersion, kind and metadata from a Pod's JSON
// and stops there: the API server writes them first, so the spec and
// status, most of the bytes, are not even scanned (nor checked: the API
// server wrote them; whoever patches the object checks it whole). Field
// names are case-sensitive, as for the scheme's serializer.
func decodePodMetadata(raw []byte) (podMetadata, error) {
	var pm podMetadata
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil {
		return pm, err
	} else if tok != json.Delim('{') {
		return pm, fmt.Errorf("want a JSON object, got %v", tok)
	}
	var seen uint8
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return pm, err
		}
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return pm, err
		}
		var into any
		switch tok {
		case "apiVersion":
			into, seen = &pm.APIVersion, seen|1
		case "kind":
			into, seen = &pm.Kind, seen|2
		case "metadata":
			into, seen = &pm.Metadata, seen|4
		default:
			continue
		}
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(value, into); err != nil {
			return pm, fmt.Errorf("%s: %w", tok, err)
		}
		if seen == 7 {
			return pm, nil // the rest is not read, so not checked either
		}
	}
	if tok, err := dec.Token(); err != nil {
		return pm, err
	} else if tok != json.Delim('}') {
		return pm, fmt.Errorf("want the end of the object, got %v", tok)
	}
	return pm, nil
}

// podMetadata is the part of a Pod the rules read.
type podMetadata struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        struct {
		Name              string            `json:"name,omitempty"`
		GenerateName      string            `json:"generateName,omitempty"`
		Namespace         string            `json:"namespace,omitempty"`
		Labels            map[string]string `json:"labels,omitempty"`
		DeletionTimestamp *metav1.Time      `json:"deletionTimestamp,omitempty"`
	} `json:"metadata"`
}

// object is a decoded object with what the rules need of it.
type object struct {
	kind  kind
	typed runtime.Object
	raw   []byte // the JSON sent, when it was sent as bytes
	meta  *metav1.ObjectMeta
	// requestName is the request's name, which names the object in
	// messages when its metadata gives no name.
	requestName string

	// Pod kinds: the labels the requiredLabels rule applies to (the pod's,
	// or the pod template's), their JSON path, and the workload's selector.
	labels     map[string]string
	labelsPath []string
	selector   *metav1.LabelSelector

	policy *networkingv1.NetworkPolicy // kindNetworkPolicy only
}

// decodeObject decodes one object of a request as kind k.
func decodeObject(ext runtime.RawExtension, k kind) (*object, error) {
	want := kindVersions[k]
	var obj runtime.Object
	switch {
	case len(ext.Raw) > 0:
		o, err := decodeRaw(ext.Raw, want)
		if err != nil {
			return nil, fmt.Errorf("cannot decode the %s %s: %s", want.GroupVersion(), want.Kind, oneLine(err.Error()))
		}
		obj = o
	case ext.Object != nil:
		obj = ext.Object
	default:
		return nil, fmt.Errorf("the request carries no %s object", want.Kind)
	}
	o := &object{kind: k, typed: obj, raw: ext.Raw}
	var tmpl *corev1.PodTemplateSpec
	labelsPath := templateLabelsPath
	switch x := obj.(type) {
	case *corev1.Pod:
		if k == kindPod && x != nil {
			o.meta, o.labels, o.labelsPath = &x.ObjectMeta, x.Labels, podLabelsPath
		}
	case *appsv1.Deployment:
		if k == kindDeployment && x != nil {
			o.meta, tmpl, o.selector = &x.ObjectMeta, &x.Spec.Template, x.Spec.Selector
		}
	case *appsv1.ReplicaSet:
		if k == kindReplicaSet && x != nil {
			o.meta, tmpl, o.selector = &x.ObjectMeta, &x.Spec.Template, x.Spec.Selector
		}
	case *appsv1.StatefulSet:
		if k == kindStatefulSet && x != nil {
			o.meta, tmpl, o.selector = &x.ObjectMeta, &x.Spec.Template, x.Spec.Selector
		}
	case *appsv1.DaemonSet:
		if k == kindDaemonSet && x != nil {
			o.meta, tmpl, o.selector = &x.ObjectMeta, &x.Spec.Template, x.Spec.Selector
		}
	case *batchv1.Job:
		if k == kindJob && x != nil {
			o.meta, tmpl, o.selector = &x.ObjectMeta, &x.Spec.Template, x.Spec.Selector
		}
	case *batchv1.CronJob:
		if k == kindCronJob && x != nil {
			o.meta, tmpl, o.selector = &x.ObjectMeta, &x.Spec.JobTemplate.Spec.Template, x.Spec.JobTemplate.Spec.Selector
			labelsPath = cronJobLabelsPath
		}
	case *networkingv1.NetworkPolicy:
		if k == kindNetworkPolicy && x != nil {
			o.meta, o.policy = &x.ObjectMeta, x
		}
	}
	if o.meta == nil {
		got := fmt.Sprintf("%T", obj)
		if gvks, _, err := scheme.Scheme.ObjectKinds(obj); err == nil && len(gvks) > 0 {
			got = gvks[0].GroupVersion().String() + " " + gvks[0].Kind
		}
		return nil, fmt.Errorf("the request is for a %s %s, but the object is a %s", want.GroupVersion(), want.Kind, got)
	}
	if tmpl != nil {
		o.labels, o.labelsPath = tmpl.Labels, labelsPath
	}
	return o, nil
}

// name renders "Kind namespace/name" for messages: the object's name, else
// the request's, else a name still to be generated as its prefix followed
// by "*", else "(unnamed)" (the Rego rules' lib.name, in the same order).
func (o *object) name(ns string) string {
	n := o.meta.Name
	switch {
	case n != "":
	case o.requestName != "":
		n = o.requestName
	case o.meta.GenerateName != "":
		n = o.meta.GenerateName + "*"
	default:
		n = "(unnamed)"
	}
	return o.kind.String() + " " + ns + "/" + n
}

// json returns the object as JSON: the bytes sent, or the typed object
// encoded.
func (o *object) json() ([]byte, error) {
	if len(o.raw) > 0 {
		return o.raw, nil
	}
	return json.Marshal(o.typed)
}

// hasObjectAt reports whether the JSON document holds an object (not null,
// not another type) at path.
func hasObjectAt(doc []byte, path []string) bool {
	cur := doc
	for _, key := range path {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(cur, &m); err != nil || m == nil {
			return false
		}
		next, ok := m[key]
		if !ok {
			return false
		}
		cur = next
	}
	t := bytes.TrimSpace(cur)
	return len(t) > 0 && t[0] == '{'
}

// pointer renders a JSON pointer (RFC 6901) for path.
func pointer(path ...string) string {
	var b strings.Builder
	for _, p := range path {
		b.WriteByte('/')
		b.WriteString(pointerEscaper.Replace(p))
	}
	return b.String()
}

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// matcher is a compiled config.Match plus the global exemptions.
type matcher struct {
	kinds    kindSet
	only     map[string]bool // nil: every namespace
	excluded map[string]bool
	exempt   map[string]bool
	nsSel    *policylib.Selector // nil: every namespace
	objSel   *policylib.Selector // nil: every object
}

func compileMatch(m *config.Match, exempt map[string]bool) (*matcher, error) {
	out := &matcher{exempt: exempt, excluded: map[string]bool{}}
	for _, name := range m.Kinds {
		k := kindByName(name)
		if k == kindNone {
			return nil, fmt.Errorf("unknown kind %q", name)
		}
		out.kinds |= 1 << k
	}
	if len(m.Namespaces) > 0 {
		out.only = map[string]bool{}
		for _, ns := range m.Namespaces {
			out.only[ns] = true
		}
	}
	for _, ns := range m.ExcludedNamespaces {
		out.excluded[ns] = true
	}
	var err error
	if out.nsSel, err = compileSelector(m.NamespaceSelector); err != nil {
		return nil, fmt.Errorf("namespaceSelector: %w", err)
	}
	if out.objSel, err = compileSelector(m.ObjectSelector); err != nil {
		return nil, fmt.Errorf("objectSelector: %w", err)
	}
	return out, nil
}

func compileSelector(ls *metav1.LabelSelector) (*policylib.Selector, error) {
	if ls == nil {
		return nil, nil
	}
	s, err := policylib.ParseSelector(ls)
	if err != nil {
		return nil, err
	}
	if s.Empty() {
		return nil, nil
	}
	return &s, nil
}

// namespaceAllowed applies what needs no labels: exemptions and the list
// of namespaces.
func (m *matcher) namespaceAllowed(ns string) bool {
	if m.exempt[ns] || m.excluded[ns] {
		return false
	}
	return m.only == nil || m.only[ns]
}

// matchNamespace applies every namespace condition.
func (m *matcher) matchNamespace(ns string, labels map[string]string) bool {
	return m.namespaceAllowed(ns) && (m.nsSel == nil || m.nsSel.Matches(labels))
}

// matchObject reports whether the object selector matches the labels of
// any of the given object versions (the new and the old on UPDATE).
func (m *matcher) matchObject(objs ...*object) bool {
	if m.objSel == nil {
		return true
	}
	for _, o := range objs {
		if o != nil && m.objSel.Matches(o.meta.Labels) {
			return true
		}
	}
	return false
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
