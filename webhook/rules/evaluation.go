package rules

import (
	"context"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podwall/podwall/webhook/config"
)

// rule is one compiled rule.
type rule interface {
	name() string
	action() config.EnforcementAction
	matcher() *matcher
	// applies reports whether the rule looks at this kind and operation,
	// on the mutating or the validating side.
	applies(k kind, op admissionv1.Operation, mutate bool) bool
	evaluate(ev *evaluation)
}

// evaluation is the state of one request's evaluation.
type evaluation struct {
	e      *Evaluator
	ctx    context.Context
	req    *admissionv1.AdmissionRequest
	c      Cluster
	mutate bool
	res    *Result

	kind     kind
	ns       string
	obj, old *object // old: UPDATE and DELETE, when sent and decodable

	nsObj    *corev1.Namespace
	nsLabels map[string]string
	nsLooked bool
}

func (ev *evaluation) run() {
	req := ev.req
	if req.SubResource != "" {
		return // status, scale, eviction, ...: nothing the rules look at
	}
	op := req.Operation
	if op != admissionv1.Create && op != admissionv1.Update && op != admissionv1.Delete {
		return
	}
	ext := req.Object
	if op == admissionv1.Delete {
		ext = req.OldObject
	}
	ev.kind = kindOfRequest(req.Kind, ext)
	if ev.kind == kindNone {
		return
	}
	ev.ns = req.Namespace
	var rules [3]rule
	cands := rules[:0]
	for _, r := range ev.e.allRules() {
		if r != nil && r.matcher().kinds.has(ev.kind) && r.applies(ev.kind, op, ev.mutate) &&
			(ev.ns == "" || r.matcher().namespaceAllowed(ev.ns)) {
			cands = append(cands, r)
		}
	}
	if len(cands) == 0 {
		return
	}
	if err := ev.ctx.Err(); err != nil {
		ev.failAll(cands, CodeCancelled, "podwall: evaluation cancelled: "+err.Error())
		return
	}

	if op != admissionv1.Delete {
		obj, err := decodeObject(req.Object, ev.kind)
		if err != nil {
			ev.failAll(cands, CodeUndecodable, "podwall: "+err.Error())
			return
		}
		obj.requestName = req.Name
		ev.obj = obj
	}
	if op != admissionv1.Create && (len(req.OldObject.Raw) > 0 || req.OldObject.Object != nil) {
		// An old object that cannot be read only costs what the rules
		// compare against it; they fall back on the cluster.
		if ev.old, _ = decodeObject(req.OldObject, ev.kind); ev.old != nil {
			ev.old.requestName = req.Name
		}
	}
	if ev.ns == "" {
		switch {
		case ev.obj != nil && ev.obj.meta.Namespace != "":
			ev.ns = ev.obj.meta.Namespace
		case ev.old != nil && ev.old.meta.Namespace != "":
			ev.ns = ev.old.meta.Namespace
		default:
			ev.ns = metav1.NamespaceDefault
		}
	}
	if ev.old == nil && op != admissionv1.Create && ev.kind == kindNetworkPolicy {
		// Older API servers send no oldObject on DELETE (and one that
		// cannot be read is as good as none): the cluster still has it.
		for _, np := range ev.c.NetworkPolicies(ev.ns) {
			if np != nil && np.Name == req.Name {
				ev.old = &object{kind: kindNetworkPolicy, typed: np, meta: &np.ObjectMeta, policy: np}
			}
		}
	}
	for _, r := range cands {
		m := r.matcher()
		if !m.namespaceAllowed(ev.ns) || !m.matchObject(ev.obj, ev.old) {
			continue
		}
		if m.nsSel != nil && !m.nsSel.Matches(ev.namespaceLabels()) {
			continue
		}
		r.evaluate(ev)
	}
}

func (e *Evaluator) allRules() [3]rule {
	var out [3]rule
	if e.labels != nil {
		out[0] = e.labels
	}
	if e.deny != nil {
		out[1] = e.deny
	}
	if e.hygiene != nil {
		out[2] = e.hygiene
	}
	return out
}

// failAll records a problem that keeps every candidate rule from judging
// the request, with the strongest of their actions: a request a deny rule
// would have checked is refused rather than let through unchecked.
func (ev *evaluation) failAll(cands []rule, code, msg string) {
	if ev.mutate {
		return // the validating side reports it
	}
	var action config.EnforcementAction
	var names []string
	for _, r := range cands {
		action = strongest(action, r.action())
		names = append(names, r.name())
	}
	ev.res.add(Violation{Rule: RulePodwall, Action: action, Code: code,
		Message: msg + " (checked by " + strings.Join(names, ", ") + ")"})
}

// namespace returns the namespace object, when the cluster knows it.
func (ev *evaluation) namespace() *corev1.Namespace {
	ev.lookNamespace()
	return ev.nsObj
}

// namespaceLabels returns the labels of the request's namespace, with its
// name label; a namespace the cluster does not know has only that.
func (ev *evaluation) namespaceLabels() map[string]string {
	ev.lookNamespace()
	return ev.nsLabels
}

func (ev *evaluation) lookNamespace() {
	if ev.nsLooked {
		return
	}
	ev.nsLooked = true
	if ns, ok := ev.c.Namespace(ev.ns); ok && ns != nil {
		ev.nsObj = ns
	}
	ev.nsLabels = namespaceLabels(ev.ns, ev.nsObj)
}

// violation fills in a rule's name and action.
func violation(r rule, code, field, msg string) Violation {
	return Violation{Rule: r.name(), Action: r.action(), Code: code, Field: field, Message: msg}
}

// tolerate downgrades the deny violations of an UPDATE that the old object
// already had (same code and field) to warnings: an update must not be
// refused for what it did not introduce, or existing objects could not be
// managed at all.
func tolerate(found, before []Violation) {
	for i := range found {
		if found[i].Action != config.Deny {
			continue
		}
		for _, b := range before {
			if b.Code == found[i].Code && b.Field == found[i].Field {
				found[i].Action = config.Warn
				first, rest, more := strings.Cut(found[i].Message, "\n")
				found[i].Message = first + " (tolerated: the object was already like this before this update)"
				if more {
					found[i].Message += "\n" + rest
				}
				break
			}
		}
	}
}

// quoteList renders values as "a", "b".
func quoteList(values []string) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = `"` + v + `"`
	}
	return strings.Join(q, ", ")
}
