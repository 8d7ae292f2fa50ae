package rules

import (
	"fmt"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/podwall/podwall/policylib"
	"github.com/podwall/podwall/webhook/config"
)

// defaultDeny is the compiled defaultDeny rule.
type defaultDeny struct {
	cfg   *config.DefaultDenyRule
	match *matcher
	dirs  []policylib.Direction
	names []string // the policy types, as Kubernetes spells them
}

func newDefaultDeny(r *config.DefaultDenyRule, m *matcher) *defaultDeny {
	d := &defaultDeny{cfg: r, match: m}
	for _, t := range r.PolicyTypes {
		if t == networkingv1.PolicyTypeEgress {
			d.dirs = append(d.dirs, policylib.Egress)
		} else {
			d.dirs = append(d.dirs, policylib.Ingress)
		}
		d.names = append(d.names, string(t))
	}
	return d
}

func (r *defaultDeny) name() string                     { return config.RuleDefaultDeny }
func (r *defaultDeny) action() config.EnforcementAction { return r.cfg.EnforcementAction }
func (r *defaultDeny) matcher() *matcher                { return r.match }

func (r *defaultDeny) applies(k kind, op admissionv1.Operation, mutate bool) bool {
	switch {
	case mutate:
		return false
	case k.isPodKind():
		return op == admissionv1.Create
	case k == kindNetworkPolicy:
		return op == admissionv1.Update || op == admissionv1.Delete
	}
	return false
}

func (r *defaultDeny) evaluate(ev *evaluation) {
	if ev.kind == kindNetworkPolicy {
		r.protectLast(ev)
		return
	}
	policies := ev.c.NetworkPolicies(ev.ns)
	var missing []string
	for i, dir := range r.dirs {
		if !hasDefaultDeny(policies, dir, "") {
			missing = append(missing, r.names[i])
		}
	}
	if len(missing) == 0 {
		return
	}
	np := r.cfg.Policy(ev.ns)
	msg := fmt.Sprintf("namespace %s has no default-deny NetworkPolicy for %s, which podwall requires before %s can be created: apply NetworkPolicy %s/%s first",
		ev.ns, strings.Join(missing, " and "), ev.obj.name(ev.ns), np.Namespace, np.Name)
	if r.cfg.Generate {
		msg += " (rules.defaultDeny.generate is on: podwall's controller creates it, retry shortly)"
	}
	if y, err := yaml.Marshal(np); err == nil {
		msg += ":\n" + string(y)
	}
	ev.res.add(violation(r, CodeMissingDefaultDeny, "", strings.TrimRight(msg, "\n")))
}

// protectLast refuses the DELETE, or the UPDATE that weakens it, of the
// last default-deny NetworkPolicy of a direction in the namespace.
func (r *defaultDeny) protectLast(ev *evaluation) {
	if ns := ev.namespace(); ns != nil && (ns.DeletionTimestamp != nil || ns.Status.Phase == corev1.NamespaceTerminating) {
		return // the namespace is going away with everything in it
	}
	if ev.old == nil {
		return // nothing known to protect
	}
	old := ev.old.policy
	policies := ev.c.NetworkPolicies(ev.ns)
	del := ev.req.Operation == admissionv1.Delete
	if !del && ev.obj != nil && ev.obj.meta.DeletionTimestamp != nil {
		return // finalizers being removed from a policy already being deleted
	}
	var lost []string
	for i, dir := range r.dirs {
		if !policylib.IsDefaultDeny(old, dir) {
			continue
		}
		if !del && policylib.IsDefaultDeny(ev.obj.policy, dir) {
			continue
		}
		if hasDefaultDeny(policies, dir, old.Name) {
			continue
		}
		lost = append(lost, r.names[i])
	}
	if len(lost) == 0 {
		return
	}
	dirs := strings.Join(lost, " and ")
	what := "deleting it would open every pod no other policy isolates: add another default-deny NetworkPolicy first"
	if !del {
		what = fmt.Sprintf("this update stops it denying %s by default (that takes podSelector {}, %s in policyTypes and no %s rules), which would open every pod no other policy isolates: keep it a default deny, or add another default-deny NetworkPolicy first",
			dirs, dirs, dirs)
	}
	ev.res.add(violation(r, CodeLastDefaultDeny, "",
		fmt.Sprintf("NetworkPolicy %s/%s is the last default deny for %s in namespace %s, which podwall protects; %s", ev.ns, old.Name, dirs, ev.ns, what)))
}

// hasDefaultDeny reports whether a policy other than except denies dir by
// default. Policies with rules in dir cannot, so policylib is asked only
// about the others.
func hasDefaultDeny(policies []*networkingv1.NetworkPolicy, dir policylib.Direction, except string) bool {
	for _, np := range policies {
		if np == nil || np.Name == except {
			continue
		}
		if (dir == policylib.Ingress && len(np.Spec.Ingress) > 0) || (dir == policylib.Egress && len(np.Spec.Egress) > 0) {
			continue
		}
		if policylib.IsDefaultDeny(np, dir) {
			return true
		}
	}
	return false
}
