package policylib

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podwall/podwall/policylib/addrset"
)

// Severity says whether a finding is an error (the API server would reject
// the policy) or a warning (legal, but almost certainly not what was meant).
type Severity uint8

// Severities of a lint finding.
const (
	SeverityError Severity = iota
	SeverityWarning
)

func (s Severity) String() string {
	if s == SeverityError {
		return "error"
	}
	return "warning"
}

// MarshalText renders the severity by name in JSON and YAML.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Finding codes, stable for scripts and for the webhook's configuration.
const (
	CodeInvalid                 = "invalid"
	CodeSelectsNoPods           = "selects-no-pods"
	CodeNamedPortNotExposed     = "named-port-not-exposed"
	CodeServicePortNotTarget    = "service-port-not-target"
	CodeIPBlockCoversPods       = "ipblock-covers-pods"
	CodeAllowAllVoidsDeny       = "allow-all-voids-default-deny"
	CodeShadowedRule            = "shadowed-rule"
	CodeIngressFromAnywhere     = "ingress-from-anywhere"
	CodeEgressIsolatedNoDNS     = "egress-blocks-dns"
	CodeNamespaceMatchesNothing = "namespace-selector-matches-nothing"
)

// Finding is one lint result about one NetworkPolicy.
type Finding struct {
	Severity Severity             `json:"severity"`
	Code     string               `json:"code"`
	Policy   types.NamespacedName `json:"policy"`
	Field    string               `json:"field,omitempty"`
	Message  string               `json:"message"`
}

func (f Finding) String() string {
	s := fmt.Sprintf("%s %s %s", f.Severity, f.Code, f.Policy)
	if f.Field != "" {
		s += " " + f.Field
	}
	return s + ": " + f.Message
}

// Lint checks the snapshot's NetworkPolicies: errors for what the API
// server would reject, warnings for what is legal but almost certainly
// wrong. Checks that need pods (selects no pods, named ports, pod addresses
// in ipBlocks) run only when the snapshot has pods. Findings are sorted by
// policy, then field.
func Lint(s Snapshot, opts ...Option) []Finding {
	e, err := Build(s, opts...)
	var out []Finding
	var pe *PolicyError
	for _, one := range unwrapAll(err) {
		if errors.As(one, &pe) {
			for _, fe := range pe.Errs {
				out = append(out, Finding{Severity: SeverityError, Code: CodeInvalid, Policy: pe.Policy, Field: fe.Field, Message: fe.ErrorBody()})
			}
		}
	}
	return sortFindings(append(out, e.lint(len(s.Pods) > 0)...))
}

// Lint checks the NetworkPolicies the engine holds as the package's Lint
// does a snapshot's, for a program that keeps an engine up to date rather
// than snapshots. It has no errors to report (the engine holds only valid
// policies); the checks that need pods run when it holds some.
func (e *Engine) Lint() []Finding {
	e.mu.RLock()
	havePods := len(e.podByKey) > 0
	e.mu.RUnlock()
	return sortFindings(e.lint(havePods))
}

func (e *Engine) lint(havePods bool) []Finding {
	l := linter{e: e, havePods: havePods}
	e.mu.RLock()
	defer e.mu.RUnlock()
	var out []Finding
	for _, pol := range e.sortedPolicies() {
		out = append(out, l.policy(pol)...)
	}
	out = append(out, l.shadowed()...)
	return append(out, l.voidedDefaultDeny()...)
}

// sortFindings sorts by policy, then field, keeping the order of findings
// on the same field.
func sortFindings(out []Finding) []Finding {
	slices.SortStableFunc(out, func(a, b Finding) int {
		if c := strings.Compare(a.Policy.String(), b.Policy.String()); c != 0 {
			return c
		}
		return strings.Compare(a.Field, b.Field)
	})
	return out
}

func unwrapAll(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		if _, isPolicy := err.(*PolicyError); !isPolicy {
			return j.Unwrap()
		}
	}
	return []error{err}
}

type linter struct {
	e        *Engine
	havePods bool
}

func (e *Engine) sortedPolicies() []*policy {
	out := make([]*policy, 0, len(e.policies))
	for _, p := range e.policies {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *policy) int { return strings.Compare(a.key.String(), b.key.String()) })
	return out
}

func (l *linter) warn(pol *policy, code, field, format string, args ...any) Finding {
	return Finding{Severity: SeverityWarning, Code: code, Policy: pol.key, Field: field, Message: fmt.Sprintf(format, args...)}
}

func (l *linter) policy(pol *policy) []Finding {
	var out []Finding
	if l.havePods && pol.selects.pods.count() == 0 {
		out = append(out, l.warn(pol, CodeSelectsNoPods, "spec.podSelector",
			"selects no pod in namespace %s (podSelector %s), so it has no effect", pol.key.Namespace, pol.podSel))
	}
	spec := pol.obj.Spec
	for d, dir := range []Direction{Ingress, Egress} {
		if !pol.isolates[dir] {
			continue
		}
		for ri, r := range pol.rules[dir] {
			var apiPeers []networkingv1.NetworkPolicyPeer
			var apiPorts []networkingv1.NetworkPolicyPort
			if dir == Ingress {
				apiPeers, apiPorts = spec.Ingress[ri].From, spec.Ingress[ri].Ports
			} else {
				apiPeers, apiPorts = spec.Egress[ri].To, spec.Egress[ri].Ports
			}
			base := fmt.Sprintf("spec.%s[%d]", dir, ri)
			peerWord := [...]string{"from", "to"}[d]
			for pi, pe := range r.peers {
				field := fmt.Sprintf("%s.%s[%d]", base, peerWord, pi)
				if pe.ipBlock {
					out = append(out, l.ipBlock(pol, dir, pe, apiPeers[pi].IPBlock, field+".ipBlock")...)
				} else if l.havePods && pe.nsSel != nil && !pe.nsSel.Empty() && !l.anyNamespaceMatches(pe.nsSel) {
					out = append(out, l.warn(pol, CodeNamespaceMatchesNothing, field+".namespaceSelector",
						"namespaceSelector %s matches no namespace", pe.nsSel))
				}
			}
			for qi, pr := range r.ports {
				field := fmt.Sprintf("%s.ports[%d].port", base, qi)
				if pr.name != "" && l.havePods && !l.namedPortExposed(pol, dir, r, pr) {
					where := "no pod this policy selects"
					if dir == Egress {
						where = "no pod this rule's peers match"
					}
					out = append(out, l.warn(pol, CodeNamedPortNotExposed, field,
						"named port %q (%s) is exposed by %s, so this entry allows nothing", pr.name, pr.proto, where))
				}
				if pr.name == "" && pr.lo == pr.hi && apiPorts[qi].Port != nil {
					out = append(out, l.servicePortTrap(pol, dir, r, pr, field)...)
				}
			}
		}
	}
	if pol.isolates[Egress] && l.havePods && pol.selects.pods.count() > 0 && !l.allowsDNS(pol) {
		out = append(out, l.warn(pol, CodeEgressIsolatedNoDNS, "spec.policyTypes",
			"isolates egress of %d pod(s) and neither this nor any other policy selecting them allows UDP or TCP port 53, so they cannot resolve names", pol.selects.pods.count()))
	}
	return out
}

func (l *linter) anyNamespaceMatches(s *Selector) bool {
	for _, n := range l.e.namespaces {
		if s.Matches(n.labels) {
			return true
		}
	}
	return false
}

var everything4, everything6 = netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")

func (l *linter) ipBlock(pol *policy, dir Direction, pe *peer, b *networkingv1.IPBlock, field string) []Finding {
	var out []Finding
	if p, err := parsePrefix(b.CIDR); err == nil && dir == Ingress && (p == everything4 || p == everything6) {
		out = append(out, l.warn(pol, CodeIngressFromAnywhere, field+".cidr",
			"allows ingress from every %s address (%s), the whole internet included", map[bool]string{true: "IPv4", false: "IPv6"}[p.Addr().Is4()], b.CIDR))
	}
	var inside []string
	for _, p := range l.e.pods {
		if p == nil || p.hostNetwork {
			continue
		}
		for _, ip := range p.ips {
			if pe.addrs.Contains(ip) {
				inside = append(inside, p.key.String())
				break
			}
		}
	}
	if len(inside) > 0 {
		slices.Sort(inside)
		example := strings.Join(inside[:min(3, len(inside))], ", ")
		out = append(out, l.warn(pol, CodeIPBlockCoversPods, field+".cidr",
			"%s covers the addresses of %d pod(s) (%s); ipBlock is meant for addresses outside the cluster, pod addresses change, and whether it matches pods depends on the CNI: select pods with podSelector/namespaceSelector",
			b.CIDR, len(inside), example))
	}
	return out
}

// namedPortExposed reports whether a pod the name would resolve on has it:
// for ingress the selected pods, for egress the pods the rule's peers match
// (every pod when it has none).
func (l *linter) namedPortExposed(pol *policy, dir Direction, r rule, pr portRule) bool {
	check := func(p *pod) bool {
		_, ok := p.resolveNamedPort(pr.name, pr.proto)
		return ok
	}
	if dir == Ingress {
		found := false
		pol.selects.pods.forEach(func(id int32) { found = found || check(l.e.pods[id]) })
		return found
	}
	for _, p := range l.e.pods {
		if p == nil || !check(p) {
			continue
		}
		if len(r.peers) == 0 {
			return true
		}
		for _, pe := range r.peers {
			if (pe.ipBlock && slices.ContainsFunc(p.ips, pe.addrs.Contains)) || (!pe.ipBlock && pe.set.pods.has(p.id)) {
				return true
			}
		}
	}
	return false
}

// servicePortTrap warns when a policy port is a Service's port but not its
// target port on the pods concerned: NetworkPolicy sees traffic after the
// Service translation, so "8080" never matches when the pods listen on 80.
func (l *linter) servicePortTrap(pol *policy, dir Direction, r rule, pr portRule, field string) []Finding {
	var out []Finding
	for _, svc := range l.e.sortedServices() {
		n := l.e.namespaces[svc.Namespace]
		if n == nil || len(svc.Spec.Selector) == 0 {
			continue
		}
		for _, sp := range svc.Spec.Ports {
			if sp.Port != pr.lo || protoOf(sp.Protocol) != pr.proto {
				continue
			}
			backends := l.backends(svc, n)
			concerned := false
			for _, p := range backends {
				if dir == Ingress {
					concerned = concerned || pol.selects.pods.has(p.id)
				} else {
					concerned = concerned || len(r.peers) == 0 || slices.ContainsFunc(r.peers, func(pe *peer) bool { return !pe.ipBlock && pe.set.pods.has(p.id) })
				}
			}
			if !concerned {
				continue
			}
			targets := targetPorts(sp, backends, pr.proto)
			if slices.Contains(targets, pr.lo) {
				continue
			}
			out = append(out, l.warn(pol, CodeServicePortNotTarget, field,
				"port %d is Service %s/%s's port, but its pods receive the traffic on target port %s: NetworkPolicy sees the pod port after Service translation, so use %s",
				pr.lo, svc.Namespace, svc.Name, joinInts(targets), joinInts(targets)))
		}
	}
	return out
}

func (l *linter) backends(svc *corev1.Service, n *namespace) []*pod {
	sel := Selector{}
	for k, v := range svc.Spec.Selector {
		sel.reqs = append(sel.reqs, requirement{key: k, op: opIn, values: []string{v}})
	}
	var out []*pod
	for p := range n.pods {
		if sel.Matches(p.labels) {
			out = append(out, p)
		}
	}
	return out
}

func targetPorts(sp corev1.ServicePort, backends []*pod, proto Protocol) []int32 {
	var out []int32
	switch {
	case sp.TargetPort.Type == intstr.String && sp.TargetPort.StrVal != "":
		for _, p := range backends {
			if n, ok := p.resolveNamedPort(sp.TargetPort.StrVal, proto); ok && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	case sp.TargetPort.IntVal != 0:
		out = append(out, sp.TargetPort.IntVal)
	default:
		out = append(out, sp.Port)
	}
	slices.Sort(out)
	return out
}

func joinInts(xs []int32) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, " or ")
}

// allowsDNS reports whether some egress rule of a policy selecting pol's
// pods lets them reach port 53 anywhere.
func (l *linter) allowsDNS(pol *policy) bool {
	for _, other := range l.e.namespaces[pol.key.Namespace].policies {
		if !other.isolates[Egress] {
			continue
		}
		shares := false
		pol.selects.pods.forEach(func(id int32) { shares = shares || other.selects.pods.has(id) })
		if !shares {
			continue
		}
		for _, r := range other.rules[Egress] {
			if len(r.ports) == 0 {
				return true
			}
			for _, pr := range r.ports {
				if pr.proto != UDP && pr.proto != TCP {
					continue
				}
				if pr.name == "" && pr.lo <= 53 && 53 <= pr.hi || pr.name != "" && l.namesPort53(pr.name, pr.proto) {
					return true
				}
			}
		}
	}
	return false
}

// namesPort53 reports whether some pod of the cluster has a container port
// of that name that resolves to 53 (as a DNS server's "dns" port does): a
// named port resolves on the destination pod, so the rule reaches DNS there.
func (l *linter) namesPort53(name string, proto Protocol) bool {
	for _, p := range l.e.podByKey {
		if port, ok := p.resolveNamedPort(name, proto); ok && port == 53 {
			return true
		}
	}
	return false
}

// ---- rules that make other rules pointless ----

// ruleRef is one rule of one policy, for comparing rules.
type ruleRef struct {
	pol   *policy
	dir   Direction
	index int
	r     *rule
	api   []networkingv1.NetworkPolicyPeer
}

// shadowed finds rules that another rule makes redundant: the other rule's
// policy selects at least the same pods (same namespace, and an empty or
// identical podSelector) and allows at least the same peers on at least the
// same ports. Identical rules report the later one only.
func (l *linter) shadowed() []Finding {
	var out []Finding
	for _, n := range l.e.sortedNamespaces() {
		for _, dir := range []Direction{Ingress, Egress} {
			var rules []ruleRef
			for _, pol := range n.policies {
				for i := range pol.rules[dir] {
					rr := ruleRef{pol: pol, dir: dir, index: i, r: &pol.rules[dir][i]}
					if dir == Ingress {
						rr.api = pol.obj.Spec.Ingress[i].From
					} else {
						rr.api = pol.obj.Spec.Egress[i].To
					}
					rules = append(rules, rr)
				}
			}
			for bi, b := range rules {
				for ai, a := range rules {
					if ai == bi || !covers(a, b) {
						continue
					}
					if covers(b, a) && ai > bi {
						continue // identical: only the later one is redundant
					}
					where := fmt.Sprintf("%s spec.%s[%d]", a.pol.key, dir, a.index)
					if a.pol == b.pol {
						where = fmt.Sprintf("spec.%s[%d] of the same policy", dir, a.index)
					}
					out = append(out, l.warn(b.pol, CodeShadowedRule, fmt.Sprintf("spec.%s[%d]", dir, b.index),
						"is redundant: %s already allows every peer and port it does for the same pods", where))
					break
				}
			}
		}
	}
	return out
}

func (e *Engine) sortedNamespaces() []*namespace {
	out := make([]*namespace, 0, len(e.namespaces))
	for _, n := range e.namespaces {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b *namespace) int { return strings.Compare(a.name, b.name) })
	return out
}

// covers reports whether rule a allows everything rule b allows, judged on
// the rules' text rather than today's pods, so it stays true as pods come
// and go.
func covers(a, b ruleRef) bool {
	if a.pol != b.pol && !a.pol.podSel.Empty() && a.pol.podSel.String() != b.pol.podSel.String() {
		return false
	}
	if len(a.r.peers) > 0 {
		if len(b.r.peers) == 0 {
			return false
		}
		for bi, bp := range b.r.peers {
			if !slices.ContainsFunc(a.r.peers, func(ap *peer) bool { return peerCovers(ap, a.api[ap.index], bp, b.api[bi]) }) {
				return false
			}
		}
	}
	if len(a.r.ports) > 0 {
		if len(b.r.ports) == 0 {
			return false
		}
		for _, bq := range b.r.ports {
			if !slices.ContainsFunc(a.r.ports, func(aq portRule) bool { return portCovers(aq, bq) }) {
				return false
			}
		}
	}
	return true
}

func peerCovers(a *peer, aAPI networkingv1.NetworkPolicyPeer, b *peer, bAPI networkingv1.NetworkPolicyPeer) bool {
	if a.ipBlock || b.ipBlock {
		return a.ipBlock && b.ipBlock && a.addrs.ContainsSet(b.addrs)
	}
	// Every pod of every namespace covers any pod peer.
	if a.nsSel != nil && a.nsSel.Empty() && (a.podSel == nil || a.podSel.Empty()) {
		return true
	}
	return reflect.DeepEqual(aAPI, bAPI) && a.policy.key.Namespace == b.policy.key.Namespace
}

func portCovers(a, b portRule) bool {
	if a.proto != b.proto {
		return false
	}
	if a.name != "" || b.name != "" {
		return a.name == b.name || (a.name == "" && a.lo == 0 && a.hi == 65535)
	}
	return a.lo <= b.lo && b.hi <= a.hi
}

// voidedDefaultDeny finds namespaces with a default deny (empty podSelector,
// isolating a direction with no rules) where another policy allows that
// direction from anywhere to every pod, undoing it.
func (l *linter) voidedDefaultDeny() []Finding {
	var out []Finding
	for _, n := range l.e.sortedNamespaces() {
		for _, dir := range []Direction{Ingress, Egress} {
			var deny *policy
			for _, pol := range n.policies {
				if pol.podSel.Empty() && pol.isolates[dir] && len(pol.rules[dir]) == 0 {
					deny = pol
					break
				}
			}
			if deny == nil {
				continue
			}
			for _, pol := range n.policies {
				if !pol.podSel.Empty() {
					continue
				}
				for i, r := range pol.rules[dir] {
					if len(r.ports) == 0 && allPeers(r) {
						out = append(out, l.warn(pol, CodeAllowAllVoidsDeny, fmt.Sprintf("spec.%s[%d]", dir, i),
							"allows all %s traffic for every pod in namespace %s, which voids the default deny %s", dir, n.name, deny.key))
					}
				}
			}
		}
	}
	return out
}

// allPeers reports whether a rule's peers reach everything: no peers, or
// both whole address families.
func allPeers(r rule) bool {
	if len(r.peers) == 0 {
		return true
	}
	var all addrset.Set
	for _, pe := range r.peers {
		if pe.ipBlock {
			all = all.Union(pe.addrs)
		}
	}
	return all.ContainsSet(addrset.Of(everything4, everything6))
}
