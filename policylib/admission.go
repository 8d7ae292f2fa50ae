package policylib

import (
	"slices"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// IsDefaultDeny reports whether np, after defaulting, denies everything in a
// direction for every pod of its namespace: an empty podSelector, the
// direction among its policyTypes, and no rule for it.
func IsDefaultDeny(np *networkingv1.NetworkPolicy, dir Direction) bool {
	d := DefaultPolicy(np)
	if !compileSelector(&d.Spec.PodSelector).Empty() || !slices.Contains(d.Spec.PolicyTypes, policyType(dir)) {
		return false
	}
	if dir == Ingress {
		return len(d.Spec.Ingress) == 0
	}
	return len(d.Spec.Egress) == 0
}

// AllowAllRules returns the indexes of np's rules in a direction that allow
// every peer on every port and protocol: no peers (or ipBlocks covering both
// whole address families) and no ports. Rules of a direction np does not
// isolate are ignored, as the API ignores them. np must be valid.
func AllowAllRules(np *networkingv1.NetworkPolicy, dir Direction) []int {
	pol, err := compilePolicy(np)
	if err != nil {
		return nil
	}
	var out []int
	for i, r := range pol.rules[dir] {
		if len(r.ports) == 0 && allPeers(r) {
			out = append(out, i)
		}
	}
	return out
}

// SelectedLabelKeys returns the pod label keys np's selection depends on:
// those of spec.podSelector and of every peer's podSelector, sorted. A pod
// missing one of them may fall out of (or into) what the policy means.
func SelectedLabelKeys(np *networkingv1.NetworkPolicy) []string {
	var keys []string
	add := func(ls *metav1.LabelSelector) {
		if ls == nil {
			return
		}
		for k := range ls.MatchLabels {
			keys = append(keys, k)
		}
		for _, e := range ls.MatchExpressions {
			keys = append(keys, e.Key)
		}
	}
	add(&np.Spec.PodSelector)
	for _, r := range np.Spec.Ingress {
		for _, p := range r.From {
			add(p.PodSelector)
		}
	}
	for _, r := range np.Spec.Egress {
		for _, p := range r.To {
			add(p.PodSelector)
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

func policyType(d Direction) networkingv1.PolicyType {
	if d == Egress {
		return networkingv1.PolicyTypeEgress
	}
	return networkingv1.PolicyTypeIngress
}
