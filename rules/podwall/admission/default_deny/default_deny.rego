# METADATA
# title: defaultDeny
# description: |
#   Matched namespaces (the family's match: exemptNamespaces, namespaces,
#   excludedNamespaces, namespaceSelector) must hold a default-deny
#   NetworkPolicy for each of policyTypes, as policylib defines one
#   (podwall.is_default_deny):
#   - creating a Pod or workload in a matched namespace without one is a
#     violation naming the policy to apply (policyName);
#   - updating or deleting the last default deny of a direction is a
#     violation, unless the namespace is terminating.
#   Needs the podwall built-ins (is_default_deny and lint, and
#   selector_matches for the match).
#
#   data.podwall.config.rules.defaultDeny:
#     policyTypes: [Ingress, Egress]   (default [Ingress])
#     policyName: default-deny         (the default)
#     enforcementAction, match
package podwall.admission.default_deny

import data.podwall.lib
import data.podwall.lib.cluster
import data.podwall.lib.selectors

family := "defaultDeny"

cfg := lib.rule_config(family)

policy_name := n if {
	n := cfg.policyName
	is_string(n)
	n != ""
} else := "default-deny"

policy_types := ts if {
	ts := cfg.policyTypes
	is_array(ts)
	count(ts) > 0
} else := ["Ingress"]

# covers(ns): defaultDeny is configured and its match covers namespace ns.
# networkPolicyHygiene calls these namespaces protected.
covers(ns) if selectors.namespace_matches(family, ns)

# has_default_deny(policies, type, except): a policy of policies other than
# the one named except denies all of type.
has_default_deny(policies, type, except) if {
	some p in policies
	p.metadata.name != except
	denies(p, type)
}

# denies(p, type): policy p denies all of type by default, as policylib
# defines it (podwall.is_default_deny). As in the Go rule, a policy with
# rules of that direction is not asked about (it cannot be one). And since
# podwall.is_default_deny refuses an invalid policy (an error that fails the
# whole evaluation), a policy lint finds invalid (one stored before
# validation got stricter, or the request's own, which networkPolicyHygiene
# reports) is judged by its shape alone, as the Go rule judges every policy:
# one such policy must not keep pods from being created next to it, nor
# itself from being fixed or deleted.
denies(p, type) if {
	not has_rules(p, type)
	valid(p)
	podwall.is_default_deny(p, type)
}

denies(p, type) if {
	not has_rules(p, type)
	not valid(p)
	shaped_like_default_deny(p, type)
}

has_rules(p, type) if {
	rules := object.get(p, ["spec", lower(type)], [])
	is_array(rules)
	count(rules) > 0
}

valid(p) if {
	findings := podwall.lint({"policies": [p]})
	not lint_error(findings)
}

lint_error(findings) if {
	some f in findings
	f.severity == "error"
}

# shaped_like_default_deny(p, type): p selects every pod (no matchLabels, no
# matchExpressions) and type is among its policyTypes (omitted: Ingress, and
# Egress when it has egress rules), the rules of type being checked apart.
shaped_like_default_deny(p, type) if {
	sel := object.get(p, ["spec", "podSelector"], {})
	not selects_by(sel, "matchLabels")
	not selects_by(sel, "matchExpressions")
	type in effective_policy_types(p)
}

selects_by(sel, key) if {
	x := sel[key]
	is_object(x)
	count(x) > 0
}

selects_by(sel, key) if {
	x := sel[key]
	is_array(x)
	count(x) > 0
}

effective_policy_types(p) := ts if {
	ts := p.spec.policyTypes
	is_array(ts)
	count(ts) > 0
} else := ["Ingress", "Egress"] if {
	has_rules(p, "Egress")
} else := ["Ingress"]

checked if lib.applies(family)

missing := [type |
	some type in policy_types
	not has_default_deny(cluster.policies_in(lib.namespace), type, "")
]

violation contains {"msg": msg, "code": "missing-default-deny", "field": ""} if {
	checked
	lib.kind in lib.pod_kinds
	lib.operation == "CREATE"
	count(missing) > 0
	msg := sprintf(
		"namespace %s has no default-deny NetworkPolicy for %s, which podwall requires before %s %s can be created: apply NetworkPolicy %s/%s first (podSelector {}, policyTypes [%s], no rules)%s",
		[lib.namespace, concat(" and ", missing), lib.kind, lib.display, lib.namespace, policy_name, concat(", ", policy_types), generate_note],
	)
}

# generate_note says, as the Go rule does, that podwall's controller will
# create the policy.
generate_note := " (rules.defaultDeny.generate is on: podwall's controller creates it, retry shortly)" if {
	cfg.generate == true
} else := ""

# old is the policy before the request: the old object, else the cluster's.
old := input.request.oldObject if {
	is_object(input.request.oldObject)
} else := cluster.networkpolicies[lib.namespace][lib.name]

terminating if cluster.namespaces[lib.namespace].metadata.deletionTimestamp

terminating if cluster.namespaces[lib.namespace].status.phase == "Terminating"

lost := [type |
	some type in policy_types
	denies(old, type)
	not still_denies(type)
	not has_default_deny(cluster.policies_in(lib.namespace), type, old.metadata.name)
]

still_denies(type) if {
	lib.operation == "UPDATE"
	denies(cluster.new_object, type)
}

violation contains {"msg": msg, "code": "last-default-deny", "field": ""} if {
	checked
	lib.kind == "NetworkPolicy"
	lib.operation in {"UPDATE", "DELETE"}
	not terminating
	not updating_deleted
	count(lost) > 0
	msg := sprintf(
		"NetworkPolicy %s/%s is the last default deny for %s in namespace %s, which podwall protects; %s",
		[lib.namespace, old.metadata.name, lost_text, lib.namespace, consequence],
	)
}

lost_text := concat(" and ", lost)

consequence := "deleting it would open every pod no other policy isolates: add another default-deny NetworkPolicy first" if {
	lib.operation == "DELETE"
} else := sprintf(
	"this update stops it denying %s by default (that takes podSelector {}, %s in policyTypes and no %s rules), which would open every pod no other policy isolates: keep it a default deny, or add another default-deny NetworkPolicy first",
	[lost_text, lost_text, lost_text],
)

# finalizers being removed from a policy already being deleted
updating_deleted if {
	lib.operation == "UPDATE"
	input.request.object.metadata.deletionTimestamp
}
