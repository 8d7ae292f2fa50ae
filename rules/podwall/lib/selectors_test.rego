package podwall.lib.selectors_test

import data.podwall.lib.selectors
import data.podwall.test.fixtures

cfg := {"rules": {
	"requiredLabels": {"match": {"namespaceSelector": {"matchLabels": {"env": "prod"}}}},
	"defaultDeny": {"match": {"namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}]}, "excludedNamespaces": ["legacy"]}},
	"networkPolicyHygiene": {"match": {"objectSelector": {"matchLabels": {"checked": "yes"}}}},
}}

test_unmatched if {
	r := fixtures.create(fixtures.pod("dev", "x", {}, ""))
	selectors.unmatched == {"requiredLabels", "defaultDeny", "networkPolicyHygiene"} with input as r with data.podwall.config as cfg
		with data.kubernetes as fixtures.kubernetes
	r2 := fixtures.create(fixtures.pod("default", "x", {"checked": "yes"}, ""))
	count(selectors.unmatched) == 0 with input as r2 with data.podwall.config as cfg with data.kubernetes as fixtures.kubernetes
}

test_object_selector_matches_old_or_new if {
	old := fixtures.pod("default", "x", {"checked": "yes"}, "")
	new := fixtures.pod("default", "x", {}, "")
	not selectors.unmatched.networkPolicyHygiene with input as fixtures.update(new, old) with data.podwall.config as cfg
		with data.kubernetes as fixtures.kubernetes
}

test_namespace_matches if {
	selectors.namespace_matches("defaultDeny", "default") with data.podwall.config as cfg with data.kubernetes as fixtures.kubernetes
	selectors.namespace_matches("defaultDeny", "unknown") with data.podwall.config as cfg with data.kubernetes as fixtures.kubernetes
	not selectors.namespace_matches("defaultDeny", "dev") with data.podwall.config as cfg with data.kubernetes as fixtures.kubernetes
	not selectors.namespace_matches("defaultDeny", "legacy") with data.podwall.config as cfg with data.kubernetes as fixtures.kubernetes
	not selectors.namespace_matches("defaultDeny", "kube-system") with data.podwall.config as cfg with data.kubernetes as fixtures.kubernetes
	not selectors.namespace_matches("protectedAccess", "default") with data.podwall.config as cfg with data.kubernetes as fixtures.kubernetes
}

test_object_selector_on_a_delete_without_old_object_matches_the_replicated_copy if {
	c := {"rules": {"defaultDeny": {"match": {"objectSelector": {"matchLabels": {"guarded": "yes"}}}}}}
	guarded := json.patch(fixtures.default_deny_ingress("default"), [{"op": "add", "path": "/metadata/labels", "value": {"guarded": "yes"}}])
	k := fixtures.with_policies([guarded])
	r := json.remove(fixtures.delete(guarded), ["request/oldObject"])
	not selectors.unmatched.defaultDeny with input as r with data.podwall.config as c with data.kubernetes as k
	selectors.unmatched.defaultDeny with input as r with data.podwall.config as c with data.kubernetes as fixtures.kubernetes
}

deployment(selector, labels) := {
	"apiVersion": "apps/v1",
	"kind": "Deployment",
	"metadata": {"name": "web", "namespace": "default"},
	"spec": {"selector": selector, "template": {"metadata": {"labels": labels}}},
}

test_defaults_unselect if {
	c := {"rules": {"requiredLabels": {"labels": [{"key": "access", "default": "false"}]}}}
	absent := {"matchExpressions": [{"key": "access", "operator": "DoesNotExist"}]}
	selectors.defaults_unselect with input as fixtures.create(deployment(absent, {"app": "web"})) with data.podwall.config as c
	not selectors.defaults_unselect with input as fixtures.create(deployment({"matchLabels": {"app": "web"}}, {"app": "web"})) with data.podwall.config as c

	# a selector that does not match the template as sent is the API server's business
	not selectors.defaults_unselect with input as fixtures.create(deployment({"matchLabels": {"app": "db"}}, {"app": "web"})) with data.podwall.config as c
	not selectors.defaults_unselect with input as fixtures.create(deployment(absent, {"app": "web", "access": "true"})) with data.podwall.config as c

	# an invalid selector, which the API server refuses, is no reason to hold the defaults back
	invalid := {"matchExpressions": [{"key": "access", "operator": "Absent"}]}
	not selectors.defaults_unselect with input as fixtures.create(deployment(invalid, {"app": "web"})) with data.podwall.config as c
	not selectors.valid_selector(invalid)
	selectors.valid_selector(absent)
}
