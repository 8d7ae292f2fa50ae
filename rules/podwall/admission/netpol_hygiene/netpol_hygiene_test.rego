package podwall.admission.netpol_hygiene_test

import data.podwall.admission.netpol_hygiene
import data.podwall.test.fixtures

# protected namespaces come from defaultDeny, so both are configured.
cfg := object.union(fixtures.only_rule("networkPolicyHygiene"), {"rules": {"defaultDeny": fixtures.config.rules.defaultDeny}})

denied := {v | some v in netpol_hygiene.violation; not v.action}

warnings := {v | some v in netpol_hygiene.violation; v.action == "warn"}

anywhere := fixtures.policy("default", "anywhere", {
	"podSelector": {"matchLabels": {"name": "networkpolicy-demo"}},
	"ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 80}]}],
})

allow_all := fixtures.policy("default", "allow-all", {"podSelector": {}, "ingress": [{}]})

test_ingress_from_anywhere_is_a_violation if {
	vs := denied with input as fixtures.create(anywhere) with data.podwall.config as cfg with data.kubernetes as fixtures.kubernetes
	count(vs) == 1
	some v in vs
	v.code == "ingress-from-anywhere"
	v.field == "spec.ingress[0].from[0].ipBlock.cidr"
	not v.action
	v.msg == "NetworkPolicy default/anywhere: allows ingress from every IPv4 address (0.0.0.0/0), the whole internet included; name the address ranges that need access instead"

	# reported once: as a violation, not again as a warning
	ws := warnings with input as fixtures.create(anywhere) with data.podwall.config as cfg with data.kubernetes as fixtures.kubernetes
	{w.code | some w in ws} == {"ipblock-covers-pods"}
}

test_ingress_from_anywhere_is_a_lint_warning_when_not_denied if {
	c := object.union(cfg, {"rules": {"networkPolicyHygiene": {"denyIngressFromAnywhere": false}}})
	count(denied) == 0 with input as fixtures.create(anywhere) with data.podwall.config as c with data.kubernetes as fixtures.kubernetes
	ws := warnings with input as fixtures.create(anywhere) with data.podwall.config as c with data.kubernetes as fixtures.kubernetes
	{w.code | some w in ws} == {"ingress-from-anywhere", "ipblock-covers-pods"}
}

test_allow_all_ingress_in_protected_namespace_is_a_violation if {
	vs := netpol_hygiene.violation with input as fixtures.create(allow_all) with data.podwall.config as cfg with data.kubernetes as fixtures.kubernetes
	{[v.code, v.field] | some v in vs} == {["allow-all-ingress", "spec.ingress[0]"]}
}

test_allow_all_ingress_elsewhere_passes if {
	p := fixtures.policy("dev", "allow-all", {"podSelector": {}, "ingress": [{}]})
	count(denied) == 0 with input as fixtures.create(p) with data.podwall.config as cfg with data.kubernetes as fixtures.kubernetes
	c := json.remove(cfg, ["rules/defaultDeny"])
	count(denied) == 0 with input as fixtures.create(allow_all) with data.podwall.config as c with data.kubernetes as fixtures.kubernetes
}

test_lint_warnings if {
	p := fixtures.policy("default", "named", {
		"podSelector": {"matchLabels": {"name": "networkpolicy-demo"}},
		"ingress": [{"ports": [{"port": "http"}]}],
	})
	ws := warnings with input as fixtures.create(p) with data.podwall.config as cfg with data.kubernetes as fixtures.kubernetes
	{w.code | some w in ws} == {"named-port-not-exposed"}
	c := object.union(cfg, {"rules": {"networkPolicyHygiene": {"lintWarnings": false}}})
	count(netpol_hygiene.violation) == 0 with input as fixtures.create(p) with data.podwall.config as c with data.kubernetes as fixtures.kubernetes
}

test_the_seed_policies_are_clean if {
	count(netpol_hygiene.violation) == 0 with input as fixtures.create(fixtures.access_httpd) with data.podwall.config as cfg
		with data.kubernetes as fixtures.kubernetes_stage0
	count(netpol_hygiene.violation) == 0 with input as fixtures.create(fixtures.access_httpd) with data.podwall.config as cfg
		with data.kubernetes as fixtures.kubernetes_stage0
	count(netpol_hygiene.violation) == 0 with input as fixtures.update(fixtures.access_httpd_ipblock, fixtures.access_httpd)
		with data.podwall.config as cfg
		with data.kubernetes as fixtures.kubernetes
}

test_flags_default_to_true if {
	c := {"rules": {"networkPolicyHygiene": {}, "defaultDeny": {}}}
	{v.code | some v in denied} == {"ingress-from-anywhere"} with input as fixtures.create(anywhere) with data.podwall.config as c
		with data.kubernetes as fixtures.kubernetes
	{v.code | some v in denied} == {"allow-all-ingress"} with input as fixtures.create(allow_all) with data.podwall.config as c
		with data.kubernetes as fixtures.kubernetes
}

test_invalid_policies_are_denied_per_field if {
	bad := fixtures.policy("default", "bad", {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]}], "policyTypes": ["Sideways"]})
	vs := netpol_hygiene.violation with input as fixtures.create(bad) with data.podwall.config as cfg with data.kubernetes as fixtures.kubernetes
	{[v.code, v.field] | some v in vs} == {["invalid", "spec.ingress[0].from[0].ipBlock.except[0]"], ["invalid", "spec.policyTypes[0]"]}
	some v in vs
	startswith(v.msg, "NetworkPolicy default/bad would be rejected by the API server: spec.")
}

test_update_tolerates_what_the_old_object_had if {
	old := fixtures.policy("default", "anywhere", anywhere.spec)
	new := json.patch(old, [{"op": "add", "path": "/metadata/labels", "value": {"x": "y"}}])
	vs := netpol_hygiene.violation with input as fixtures.update(new, old) with data.podwall.config as cfg with data.kubernetes as fixtures.kubernetes
	some v in vs
	v.code == "ingress-from-anywhere"
	v.action == "warn"
	endswith(v.msg, "(tolerated: the object was already like this before this update)")
	count(denied) == 0 with input as fixtures.update(new, old) with data.podwall.config as cfg with data.kubernetes as fixtures.kubernetes
}

test_deletes_pods_and_exempt_namespaces_are_not_checked if {
	count(netpol_hygiene.violation) == 0 with input as fixtures.delete(anywhere) with data.podwall.config as cfg with data.kubernetes as fixtures.kubernetes
	count(netpol_hygiene.violation) == 0 with input as fixtures.create(fixtures.pod("default", "p", {}, "")) with data.podwall.config as cfg
		with data.kubernetes as fixtures.kubernetes
	ks := fixtures.policy("kube-system", "anywhere", anywhere.spec)
	count(netpol_hygiene.violation) == 0 with input as fixtures.create(ks) with data.podwall.config as cfg with data.kubernetes as fixtures.kubernetes
}

test_lint_findings_of_a_policy_named_by_generate_name if {
	p := json.remove(json.patch(allow_all, [{"op": "add", "path": "/metadata/generateName", "value": "allow-"}]), ["metadata/name"])
	vs := denied with input as fixtures.create(p) with data.podwall.config as cfg with data.kubernetes as fixtures.kubernetes
	{[v.code, v.field] | some v in vs} == {["invalid", "metadata.name"]}
}

test_update_without_old_object_tolerates_the_replicated_copy if {
	k := fixtures.with_policies([anywhere, fixtures.default_deny_ingress("default")])
	relabelled := json.patch(anywhere, [{"op": "add", "path": "/metadata/labels", "value": {"v": "2"}}])
	r := json.remove(fixtures.update(relabelled, anywhere), ["request/oldObject"])
	count(denied) == 0 with input as r with data.podwall.config as cfg with data.kubernetes as k
	{w.code | some w in warnings} == {"ingress-from-anywhere", "ipblock-covers-pods"} with input as r with data.podwall.config as cfg with data.kubernetes as k
}
