package rules

import (
	"fmt"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podwall/podwall/policylib"
	"github.com/podwall/podwall/webhook/config"
)

// hygiene is the compiled networkPolicyHygiene rule.
type hygiene struct {
	cfg   *config.NetworkPolicyHygieneRule
	match *matcher
}

func (r *hygiene) name() string                     { return config.RuleNetworkPolicyHygiene }
func (r *hygiene) action() config.EnforcementAction { return r.cfg.EnforcementAction }
func (r *hygiene) matcher() *matcher                { return r.match }

func (r *hygiene) applies(k kind, op admissionv1.Operation, mutate bool) bool {
	return !mutate && k == kindNetworkPolicy && (op == admissionv1.Create || op == admissionv1.Update)
}

func (r *hygiene) evaluate(ev *evaluation) {
	if ev.obj.meta.DeletionTimestamp != nil {
		return
	}
	protected := ev.e.protected != nil && ev.e.protected.matchNamespace(ev.ns, ev.namespaceLabels())
	np := r.inNamespace(ev.obj.policy, ev.ns)
	found := r.check(ev, np, protected, true)
	if ev.req.Operation == admissionv1.Update && ev.old != nil {
		tolerate(found, r.check(ev, r.inNamespace(ev.old.policy, ev.ns), protected, false))
	}
	ev.res.Violations = append(ev.res.Violations, found...)
}

// inNamespace returns np in namespace ns, copying it only when it must
// change: the API server fills in the namespace from the request.
func (r *hygiene) inNamespace(np *networkingv1.NetworkPolicy, ns string) *networkingv1.NetworkPolicy {
	if np.Namespace == ns {
		return np
	}
	np = np.DeepCopy()
	np.Namespace = ns
	return np
}

// check validates and lints np. With full, the lint sees the namespace's
// pods, Services and other policies and its warnings are included;
// without, only what can be denied is checked (for comparing with the old
// object of an UPDATE).
func (r *hygiene) check(ev *evaluation, np *networkingv1.NetworkPolicy, protected, full bool) []Violation {
	desc := "NetworkPolicy " + np.Namespace + "/" + np.Name
	var out []Violation
	if errs := policylib.ValidatePolicy(np); len(errs) > 0 {
		for _, fe := range errs {
			out = append(out, violation(r, policylib.CodeInvalid, fe.Field,
				fmt.Sprintf("%s would be rejected by the API server: %s", desc, fe.Error())))
		}
		return out
	}
	if err := ev.ctx.Err(); err != nil {
		return append(out, violation(r, CodeCancelled, "", "podwall: evaluation cancelled: "+err.Error()))
	}
	allowAll := map[string]bool{}
	if protected && r.cfg.DeniesAllowAllIngressInProtected() {
		for _, i := range policylib.AllowAllRules(np, policylib.Ingress) {
			f := fmt.Sprintf("spec.ingress[%d]", i)
			allowAll[f] = true
			out = append(out, violation(r, CodeAllowAllIngress, f,
				fmt.Sprintf("%s: ingress rule %d allows every source on every port, in namespace %s which podwall protects with a default deny; name the peers and ports that need access instead",
					desc, i, np.Namespace)))
		}
	}
	snap := policylib.Snapshot{Policies: []*networkingv1.NetworkPolicy{np}}
	if full {
		snap = r.snapshot(ev, np)
	}
	key := types.NamespacedName{Namespace: np.Namespace, Name: np.Name}
	partial := r.partialEgressRules(np)
	warnAction := config.Warn
	if r.cfg.EnforcementAction == config.DryRun {
		warnAction = config.DryRun
	}
	_, lister := ev.c.(NamespaceLister)
	for _, f := range policylib.Lint(snap) {
		if f.Policy != key || f.Severity != policylib.SeverityWarning {
			continue
		}
		if f.Code == policylib.CodeIngressFromAnywhere && r.cfg.DeniesIngressFromAnywhere() {
			out = append(out, violation(r, f.Code, f.Field, desc+": "+f.Message+"; name the address ranges that need access instead"))
			continue
		}
		if !full || !r.cfg.WantsLintWarnings() {
			continue
		}
		switch {
		case f.Code == policylib.CodeAllowAllVoidsDeny && allowAll[f.Field]:
			continue // already denied as allow-all ingress
		case f.Code == policylib.CodeNamespaceMatchesNothing && !lister:
			continue // the cluster cannot list namespaces: unknowable
		case f.Code == policylib.CodeNamedPortNotExposed && partial(f.Field):
			continue // the peers' pods may live in namespaces not looked at
		}
		v := violation(r, f.Code, f.Field, desc+": "+f.Message)
		v.Action = warnAction
		out = append(out, v)
	}
	return out
}

// snapshot is what the lint of np sees: the namespace's pods, Services and
// other policies (every namespace when the cluster can list them).
func (r *hygiene) snapshot(ev *evaluation, np *networkingv1.NetworkPolicy) policylib.Snapshot {
	s := policylib.Snapshot{
		Pods:     ev.c.Pods(np.Namespace),
		Services: ev.c.Services(np.Namespace),
	}
	if l, ok := ev.c.(NamespaceLister); ok {
		s.Namespaces = l.Namespaces()
	} else if ns := ev.namespace(); ns != nil {
		s.Namespaces = []*corev1.Namespace{ns}
	}
	for _, p := range ev.c.NetworkPolicies(np.Namespace) {
		if p != nil && p.Name != np.Name {
			s.Policies = append(s.Policies, p)
		}
	}
	s.Policies = append(s.Policies, np)
	return s
}

// partialEgressRules returns a test for lint fields inside egress rules
// whose peers may be pods of other namespaces (no peers at all, or a
// namespaceSelector), which a namespace's snapshot does not hold.
func (r *hygiene) partialEgressRules(np *networkingv1.NetworkPolicy) func(field string) bool {
	return func(field string) bool {
		for i, rule := range np.Spec.Egress {
			if !strings.HasPrefix(field, fmt.Sprintf("spec.egress[%d].", i)) {
				continue
			}
			if len(rule.To) == 0 {
				return true
			}
			for _, p := range rule.To {
				if p.NamespaceSelector != nil {
					return true
				}
			}
		}
		return false
	}
}
