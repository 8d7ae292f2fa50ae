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
