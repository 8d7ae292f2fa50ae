package podwall.admission_test

import data.podwall.admission
import data.podwall.test.fixtures

unlabelled := fixtures.pod("default", "web", {}, "10.244.1.50")

labelled := fixtures.pod("default", "web", {"app.kubernetes.io/name": "web", "team": "web"}, "10.244.1.50")

with_action(name, action) := json.patch(fixtures.config, [{"op": "add", "path": sprintf("/rules/%s/enforcementAction", [name]), "value": action}])

test_deny_collects_every_family if {
	ds := admission.deny with input as fixtures.create(unlabelled) with data.podwall.config as fixtures.config
		with data.kubernetes as fixtures.kubernetes
	ds == {{
		"rule": "requiredLabels", "msg": "Pod default/web: label \"app.kubernetes.io/name\" is required (any value); no NetworkPolicy in namespace default selects on it yet",
		"code": "missing-label", "field": "metadata.labels[app.kubernetes.io/name]",
	}}
	not admission.allowed with input as fixtures.create(unlabelled) with data.podwall.config as fixtures.config
		with data.kubernetes as fixtures.kubernetes
	k := fixtures.with_policies([])
	rules := {d.rule | some d in admission.deny} with input as fixtures.create(unlabelled) with data.podwall.config as fixtures.config
		with data.kubernetes as k
	rules == {"requiredLabels", "defaultDeny"}
}

test_warn_and_dryrun_follow_enforcement_action if {
	c := with_action("requiredLabels", "warn")
	count(admission.deny) == 0 with input as fixtures.create(unlabelled) with data.podwall.config as c with data.kubernetes as fixtures.kubernetes
	{w.rule | some w in admission.warn} == {"requiredLabels"} with input as fixtures.create(unlabelled) with data.podwall.config as c
		with data.kubernetes as fixtures.kubernetes
	admission.allowed with input as fixtures.create(unlabelled) with data.podwall.config as c with data.kubernetes as fixtures.kubernetes

	d := with_action("requiredLabels", "dryrun")
	count(admission.deny) == 0 with input as fixtures.create(unlabelled) with data.podwall.config as d with data.kubernetes as fixtures.kubernetes
	count(admission.warn) == 0 with input as fixtures.create(unlabelled) with data.podwall.config as d with data.kubernetes as fixtures.kubernetes
	{x.rule | some x in admission.dryrun} == {"requiredLabels"} with input as fixtures.create(unlabelled) with data.podwall.config as d
		with data.kubernetes as fixtures.kubernetes
}

test_patch_adds_defaults_unless_dryrun if {
	p := fixtures.pod("default", "web", {"app.kubernetes.io/name": "web"}, "10.244.1.50")
	admission.patch == [{"op": "add", "path": "/metadata/labels/team", "value": "web"}] with input as fixtures.create(p)
		with data.podwall.config as fixtures.config
		with data.kubernetes as fixtures.kubernetes
	admission.patch == [] with input as fixtures.create(p) with data.podwall.config as with_action("requiredLabels", "dryrun")
		with data.kubernetes as fixtures.kubernetes
	admission.patch == [] with input as fixtures.create(labelled) with data.podwall.config as fixtures.config
		with data.kubernetes as fixtures.kubernetes
}

test_lint_warnings_are_warnings if {
	p := fixtures.policy("default", "named", {
		"podSelector": {"matchLabels": {"name": "networkpolicy-demo"}},
		"ingress": [{"from": [{"podSelector": {"matchLabels": {"access": "true"}}}], "ports": [{"port": "http"}]}],
	})
	ws := admission.warn with input as fixtures.create(p) with data.podwall.config as fixtures.config with data.kubernetes as fixtures.kubernetes
	{w.rule | some w in ws} == {"networkPolicyHygiene"}
	count(admission.deny) == 0 with input as fixtures.create(p) with data.podwall.config as fixtures.config
		with data.kubernetes as fixtures.kubernetes
	ds := admission.dryrun with input as fixtures.create(p) with data.podwall.config as with_action("networkPolicyHygiene", "dryrun")
		with data.kubernetes as fixtures.kubernetes
	count(ds) == 1
}

test_review_denied if {
	r := admission.review with input as fixtures.create(unlabelled) with data.podwall.config as fixtures.config
		with data.kubernetes as fixtures.kubernetes
	r.kind == "AdmissionReview"
	r.response.uid == "705ab4f5-6393-11e8-b7cc-42010a800002"
	r.response.allowed == false
	r.response.status.code == 403
	r.response.status.message == "[requiredLabels] Pod default/web: label \"app.kubernetes.io/name\" is required (any value); no NetworkPolicy in namespace default selects on it yet"
	not r.response.patch
}

test_review_patched_and_warned if {
	p := fixtures.pod("default", "web", {"app.kubernetes.io/name": "web"}, "10.244.1.50")
	c := with_action("defaultDeny", "warn")
	k := fixtures.with_policies([])
	r := admission.review with input as fixtures.create(p) with data.podwall.config as c with data.kubernetes as k
	r.response.allowed == true
	r.response.patchType == "JSONPatch"
	json.unmarshal(base64.decode(r.response.patch)) == [{"op": "add", "path": "/metadata/labels/team", "value": "web"}]
	r.response.warnings == [
		"[defaultDeny] namespace default has no default-deny NetworkPolicy for Ingress, which podwall requires before Pod default/web can be created: apply NetworkPolicy default/default-deny first (podSelector {}, policyTypes [Ingress], no rules)",
		"[requiredLabels] requiredLabels: set missing label team=\"web\" (the configured default) on Pod default/web",
	]
	not r.response.status
}

test_violations_carry_code_field_and_action if {
	old := fixtures.pod("default", "web", {"team": "ops"}, "10.244.1.50")
	new := fixtures.pod("default", "web", {"team": "ops", "app.kubernetes.io/name": "web"}, "10.244.1.50")
	vs := admission.violations with input as fixtures.update(new, old) with data.podwall.config as fixtures.config
		with data.kubernetes as fixtures.kubernetes
	{[v.rule, v.code, v.field, v.action] | some v in vs} == {["requiredLabels", "label-value-not-allowed", "metadata.labels[team]", "warn"]}
}

test_nothing_configured_allows_everything if {
	admission.allowed with input as fixtures.create(unlabelled) with data.podwall.config as {}
	admission.allowed with input as fixtures.create(unlabelled)
	count(admission.warn) == 0 with input as fixtures.create(unlabelled)
	admission.patch == [] with input as fixtures.create(unlabelled)
}
