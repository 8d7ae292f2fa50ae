# METADATA
# title: networkPolicyHygiene
# description: |
#   Validates and lints a NetworkPolicy being created or updated, with
#   policylib's lint (podwall.lint) over the namespace's pods, Services and
#   other policies with this one in place, and its allow-all predicate
#   (podwall.allow_all_rules):
#   - what the API server would reject is a violation (code invalid), per
#     field;
#   - denyIngressFromAnywhere (default true): an ingress ipBlock of the whole
#     address space (lint code ingress-from-anywhere) is a violation;
#   - denyAllowAllIngressInProtected (default true): an ingress rule allowing
#     every peer on every port is a violation (code allow-all-ingress) in a
#     namespace defaultDeny covers;
#   - lintWarnings (default true): every other lint warning about the policy
#     is a warning (dryrun when the family is).
#   On UPDATE a violation the old object already had is tolerated: it becomes
#   a warning. Needs the podwall built-ins.
#
#   data.podwall.config.rules.networkPolicyHygiene:
#     denyIngressFromAnywhere, denyAllowAllIngressInProtected, lintWarnings,
#     enforcementAction, match
package podwall.admission.netpol_hygiene

import data.podwall.admission.default_deny
import data.podwall.lib
import data.podwall.lib.cluster

family := "networkPolicyHygiene"

cfg := lib.rule_config(family)

# flag(name) is a boolean setting, true unless set to false.
flag(name) if object.get(cfg, name, true) != false

checked if {
	input.request.kind.kind == "NetworkPolicy" # first: rule indexing skips other kinds
	lib.applies(family)
	lib.operation in {"CREATE", "UPDATE"}
	not lib.being_deleted
}

policy := cluster.new_object

desc := sprintf("NetworkPolicy %s", [lib.display])

protected if default_deny.covers(lib.namespace)

# findings are policylib's lint findings about the policy, which sees the
# namespace's pods, Services and other policies, and every namespace. Lint
# names the policy by its metadata.name (empty for one named by
# generateName, unlike lib.name).
findings := [f |
	some f in podwall.lint({
		"namespaces": cluster.all_namespaces,
		"pods": [p | some p in object.get(cluster.pods, lib.namespace, {})],
		"services": [s | some s in object.get(cluster.services, lib.namespace, {})],
		"policies": array.concat(cluster.in_namespace(cluster.other_policies), [policy]),
	})
	f.policy == {"namespace": lib.namespace, "name": object.get(policy, ["metadata", "name"], "")}
]

# deniable(p, fs) are the [code, field, message] a policy p with lint
# findings fs is denied for.
deniable(p, fs) := invalid(fs) if {
	count(invalid(fs)) > 0
} else := allow_all(p) | anywhere(fs)

invalid(fs) := {["invalid", f.field, sprintf("%s would be rejected by the API server: %s: %s", [desc, f.field, f.message])] |
	some f in fs
	f.severity == "error"
}

allow_all(p) := {["allow-all-ingress", sprintf("spec.ingress[%d]", [i]), msg] |
	protected
	flag("denyAllowAllIngressInProtected")
	some i in podwall.allow_all_rules(p, "ingress")
	msg := sprintf(
		"%s: ingress rule %d allows every source on every port, in namespace %s which podwall protects with a default deny; name the peers and ports that need access instead",
		[desc, i, lib.namespace],
	)
}

anywhere(fs) := {[f.code, f.field, sprintf("%s: %s; name the address ranges that need access instead", [desc, f.message])] |
	flag("denyIngressFromAnywhere")
	some f in fs
	f.code == "ingress-from-anywhere"
}

denied := deniable(policy, findings)

# On UPDATE, what the old object was denied for (judged alone, as the Go
# rule does) is tolerated.
old_denied := deniable(cluster.old_object, [f |
	some f in podwall.lint({"policies": [cluster.old_object]})
	f.policy == {"namespace": lib.namespace, "name": object.get(cluster.old_object, ["metadata", "name"], "")}
]) if {
	lib.operation == "UPDATE"
	cluster.old_object
} else := set()

tolerated(code, field) if {
	some d in old_denied
	d[0] == code
	d[1] == field
}

violation contains {"msg": msg, "code": code, "field": field} if {
	checked
	some [code, field, msg] in denied
	not tolerated(code, field)
}

violation contains v if {
	checked
	some [code, field, msg] in denied
	tolerated(code, field)
	v := tolerate(msg, code, field)
}

tolerate(msg, code, field) := {"msg": concat(" ", [msg, "(tolerated: the object was already like this before this update)"]), "code": code, "field": field, "action": "warn"} if {
	lib.action(family) == "deny"
} else := {"msg": msg, "code": code, "field": field}

# Lint warnings are warnings (dryrun when the family is).
violation contains {"msg": sprintf("%s: %s", [desc, f.message]), "code": f.code, "field": f.field, "action": warning_action} if {
	checked
	flag("lintWarnings")
	count(invalid(findings)) == 0
	some f in findings
	f.severity == "warning"
	not reported(f)
}

warning_action := "dryrun" if {
	lib.action(family) == "dryrun"
} else := "warn"

reported(f) if {
	f.code == "ingress-from-anywhere"
	flag("denyIngressFromAnywhere")
}

# already denied as allow-all ingress
reported(f) if {
	f.code == "allow-all-voids-default-deny"
	some d in denied
	d[0] == "allow-all-ingress"
	d[1] == f.field
}

# the named port may be exposed by pods of namespaces not looked at
reported(f) if {
	f.code == "named-port-not-exposed"
	some i, rule in object.get(policy, ["spec", "egress"], [])
	startswith(f.field, sprintf("spec.egress[%d].", [i]))
	partial_egress(rule)
}

partial_egress(rule) if count(object.get(rule, "to", [])) == 0

partial_egress(rule) if {
	some peer in rule.to
	peer.namespaceSelector
}
