package podwall.admission.protected_access_test

import data.podwall.admission.protected_access
import data.podwall.test.fixtures

cfg := fixtures.only_rule("protectedAccess")

httpd_selector := {"matchLabels": {"name": "networkpolicy-demo"}}

ingress_policy(name, rules) := fixtures.policy("default", name, {"podSelector": httpd_selector, "ingress": rules})

# busybox has run=busybox but no access=true.
run_busybox := ingress_policy("run-busybox", [{
	"from": [{"podSelector": {"matchLabels": {"run": "busybox"}}}],
	"ports": [{"port": 80}],
}])

targets(vs) := {v.target | some v in vs}

test_opening_to_pods_without_access_is_a_violation if {
	vs := protected_access.violation with input as fixtures.create(run_busybox) with data.podwall.config as cfg
		with data.kubernetes as fixtures.kubernetes
	targets(vs) == {"default/httpd-1", "default/httpd-2", "default/httpd-3"}
	{v.code | some v in vs} == {"opens-protected-pod"}
	some v in vs
	v.target == "default/httpd-1"
	v.msg == "creating NetworkPolicy default/run-busybox would let pods without access=true reach protected pod default/httpd-1 on TCP/80 (default/busybox)"
}

test_the_seed_policies_pass if {
	# stage 1: only access=true pods
	count(protected_access.violation) == 0 with input as fixtures.create(fixtures.access_httpd) with data.podwall.config as cfg
		with data.kubernetes as fixtures.kubernetes_stage0

	# stage 2: plus the node network, where no pod lives
	count(protected_access.violation) == 0 with input as fixtures.update(fixtures.access_httpd_ipblock, fixtures.access_httpd)
		with data.podwall.config as cfg
		with data.kubernetes as fixtures.kubernetes
}

test_ipblock_covering_pod_addresses_is_a_violation if {
	p := ingress_policy("pod-cidr", [{"from": [{"ipBlock": {"cidr": "10.244.1.0/24"}}], "ports": [{"port": 80}]}])
	vs := protected_access.violation with input as fixtures.create(p) with data.podwall.config as cfg with data.kubernetes as fixtures.kubernetes
	count(vs) == 3
	every v in vs {
		contains(v.msg, "default/busybox")
	}
	some v in vs
	v.target == "default/httpd-1"
	contains(v.msg, "(default/busybox, default/httpd-2)")
}

test_allow_all_reaches_new_pods_everywhere if {
	p := ingress_policy("everyone", [{}])
	vs := protected_access.violation with input as fixtures.create(p) with data.podwall.config as cfg with data.kubernetes as fixtures.kubernetes
	count(vs) == 3
	some v in vs
	v.target == "default/httpd-1"
	contains(v.msg, "any new pod in namespace dev")
	contains(v.msg, "any new pod in namespace kube-system")
}

test_other_namespaces_through_namespace_selector if {
	p := ingress_policy("from-dev", [{"from": [{"namespaceSelector": {"matchLabels": {"env": "dev"}}}], "ports": [{"port": 80}]}])
	vs := protected_access.violation with input as fixtures.create(p) with data.podwall.config as cfg with data.kubernetes as fixtures.kubernetes
	count(vs) == 3
	every v in vs {
		endswith(v.msg, "on TCP/80 (any new pod in namespace dev)")
	}
}

test_named_ports_resolve_on_the_protected_pod if {
	p := ingress_policy("named", [{"from": [{"podSelector": {}}], "ports": [{"port": "http"}]}])
	k := json.patch(fixtures.kubernetes, [{
		"op": "add",
		"path": "/pods/default/httpd-1/spec/containers/0/ports/0/name",
		"value": "http",
	}])
	vs := protected_access.violation with input as fixtures.create(p) with data.podwall.config as cfg with data.kubernetes as k
	targets(vs) == {"default/httpd-1"}
}

test_other_ports_are_not_opened if {
	p := ingress_policy("udp", [{"from": [{"podSelector": {}}], "ports": [{"protocol": "UDP", "port": 53}]}])
	vs := protected_access.violation with input as fixtures.create(p) with data.podwall.config as cfg with data.kubernetes as fixtures.kubernetes
	count(vs) == 3
	every v in vs {
		contains(v.msg, "on UDP/53")
	}
}

test_deleting_the_only_isolating_policy_opens if {
	k := fixtures.with_policies([fixtures.access_httpd])
	vs := protected_access.violation with input as fixtures.delete(fixtures.access_httpd) with data.podwall.config as cfg with data.kubernetes as k
	targets(vs) == {"default/httpd-1", "default/httpd-2", "default/httpd-3"}
	some v in vs
	startswith(v.msg, "deleting NetworkPolicy default/access-httpd would let")
}

test_deleting_is_fine_while_a_default_deny_stays if {
	count(protected_access.violation) == 0 with input as fixtures.delete(fixtures.access_httpd) with data.podwall.config as cfg
		with data.kubernetes as fixtures.kubernetes
}

test_narrowing_passes if {
	count(protected_access.violation) == 0 with input as fixtures.update(fixtures.access_httpd, run_busybox) with data.podwall.config as cfg
		with data.kubernetes as fixtures.with_policies([run_busybox])
}

test_already_open_by_another_policy_is_not_blamed if {
	# everyone can already reach httpd through run_busybox-like "everyone";
	# a second policy allowing busybox opens nothing new, but still grants it.
	other := ingress_policy("everyone", [{}])
	k := fixtures.with_policies([other])
	vs := protected_access.violation with input as fixtures.create(run_busybox) with data.podwall.config as cfg with data.kubernetes as k
	count(vs) == 0
}

test_required_peer_labels_are_configurable if {
	c := json.patch(cfg, [{"op": "replace", "path": "/rules/protectedAccess/requiredPeerLabels", "value": {"tier": "frontend"}}])
	vs := protected_access.violation with input as fixtures.create(fixtures.access_httpd) with data.podwall.config as c
		with data.kubernetes as fixtures.kubernetes_stage0
	count(vs) == 3
	some v in vs
	contains(v.msg, "without tier=frontend")
	contains(v.msg, "default/busybox-access")
}

test_policies_selecting_no_protected_pod_are_not_checked if {
	p := fixtures.policy("default", "busybox-only", {"podSelector": {"matchLabels": {"run": "busybox"}}, "ingress": [{}]})
	count(protected_access.violation) == 0 with input as fixtures.create(p) with data.podwall.config as cfg with data.kubernetes as fixtures.kubernetes
	d := fixtures.policy("dev", "everyone", {"podSelector": {}, "ingress": [{}]})
	count(protected_access.violation) == 0 with input as fixtures.create(d) with data.podwall.config as cfg with data.kubernetes as fixtures.kubernetes
}

test_disabled_without_a_protected_selector if {
	c := json.remove(cfg, ["rules/protectedAccess/protectedSelector"])
	count(protected_access.violation) == 0 with input as fixtures.create(run_busybox) with data.podwall.config as c
		with data.kubernetes as fixtures.kubernetes
	count(protected_access.violation) == 0 with input as fixtures.create(run_busybox) with data.podwall.config as {}
		with data.kubernetes as fixtures.kubernetes
}

test_undecidable_flows_fail_closed if {
	# A pod with an unparsable address makes the snapshot one policylib
	# refuses: nothing is decided, and the rule names the pod.
	k := json.patch(fixtures.kubernetes, [{"op": "replace", "path": "/pods/default/busybox/status/podIP", "value": "not-an-ip"}])
	vs := protected_access.violation with input as fixtures.create(run_busybox) with data.podwall.config as cfg with data.kubernetes as k
	count(vs) == 1
	some v in vs
	v.code == "undecided-flows"
	contains(v.msg, "could not decide")
	contains(v.msg, "default/busybox")
}

test_a_stored_policy_policylib_refuses_fails_closed if {
	# Stored before the API server validated CIDRs strictly (host bits set).
	legacy := fixtures.policy("other", "legacy", {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.1/24"}}]}]})
	k := json.patch(fixtures.kubernetes, [{"op": "add", "path": "/networkpolicies/other", "value": {"legacy": legacy}}])
	vs := protected_access.violation with input as fixtures.create(run_busybox) with data.podwall.config as cfg with data.kubernetes as k
	count(vs) == 1
	some v in vs
	v.code == "undecided-flows"
	contains(v.msg, "other/legacy")
	contains(v.msg, "10.0.0.1/24")
}

test_an_invalid_policy_is_not_decided_and_fails_closed if {
	p := json.patch(run_busybox, [{"op": "replace", "path": "/spec/ingress/0/from", "value": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}])
	vs := protected_access.violation with input as fixtures.create(p) with data.podwall.config as cfg
		with data.kubernetes as fixtures.kubernetes
	{v.code | some v in vs} == {"undecided-flows"}
	some v in vs
	contains(v.msg, "default/run-busybox")
}

test_a_stored_policy_policylib_refuses_can_be_fixed if {
	# The legacy policy selects the protected pods; its fix opens nothing to
	# pods without access=true, so it passes, though the cluster before the
	# change cannot be decided.
	legacy := ingress_policy("legacy", [{"from": [{"ipBlock": {"cidr": "192.168.2.1/24"}}], "ports": [{"port": 80}]}])
	fixed := ingress_policy("legacy", [{"from": [{"ipBlock": {"cidr": "192.168.2.0/24"}}], "ports": [{"port": 80}]}])
	k := json.patch(fixtures.kubernetes, [{"op": "add", "path": "/networkpolicies/default/legacy", "value": legacy}])
	count(protected_access.violation) == 0 with input as fixtures.update(fixed, legacy) with data.podwall.config as cfg
		with data.kubernetes as k
}

test_a_namespace_named_node_is_a_namespace if {
	# Its pods (and its probe) are flow ends pod/node/NAME, not nodes.
	k := json.patch(fixtures.kubernetes, [
		{"op": "add", "path": "/namespaces/node", "value": {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "node"}}},
		{"op": "add", "path": "/pods/node", "value": {"x": fixtures.pod("node", "x", {"run": "x"}, "10.244.2.99")}},
	])
	count(protected_access.violation) == 0 with input as fixtures.update(fixtures.access_httpd_ipblock, fixtures.access_httpd)
		with data.podwall.config as cfg
		with data.kubernetes as k
	vs := protected_access.violation with input as fixtures.create(run_busybox) with data.podwall.config as cfg with data.kubernetes as k
	{v.code | some v in vs} == {"opens-protected-pod"}
}
