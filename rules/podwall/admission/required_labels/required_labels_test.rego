package podwall.admission.required_labels_test

import data.podwall.admission.required_labels
import data.podwall.test.fixtures

cfg := fixtures.only_rule("requiredLabels")

good_labels := {"app.kubernetes.io/name": "shop", "team": "web"}

codes(vs) := {[v.code, v.field] | some v in vs}

test_complete_pod_passes if {
	p := fixtures.pod("default", "shop", good_labels, "10.0.0.1")
	count(required_labels.violation) == 0 with input as fixtures.create(p) with data.podwall.config as cfg
	required_labels.patch == [] with input as fixtures.create(p) with data.podwall.config as cfg
}

test_missing_label_without_default_is_a_violation if {
	p := fixtures.pod("default", "shop", {"team": "web"}, "10.0.0.1")
	vs := required_labels.violation with input as fixtures.create(p) with data.podwall.config as cfg
	codes(vs) == {["missing-label", "metadata.labels[app.kubernetes.io/name]"]}
	some v in vs
	v.msg == "Pod default/shop: label \"app.kubernetes.io/name\" is required (any value); no NetworkPolicy in namespace default selects on it yet"
}

test_missing_label_with_default_is_patched_on_create if {
	p := fixtures.pod("default", "shop", {"app.kubernetes.io/name": "shop"}, "10.0.0.1")
	count(required_labels.violation) == 0 with input as fixtures.create(p) with data.podwall.config as cfg
	required_labels.patch == [{"op": "add", "path": "/metadata/labels/team", "value": "web"}] with input as fixtures.create(p)
		with data.podwall.config as cfg
	required_labels.note == "requiredLabels: set missing label team=\"web\" (the configured default) on Pod default/shop" with input as fixtures.create(p)
		with data.podwall.config as cfg
}

test_missing_label_with_default_is_a_violation_on_update if {
	old := fixtures.pod("default", "shop", good_labels, "10.0.0.1")
	p := fixtures.pod("default", "shop", {"app.kubernetes.io/name": "shop"}, "10.0.0.1")
	vs := required_labels.violation with input as fixtures.update(p, old) with data.podwall.config as cfg
	codes(vs) == {["missing-label", "metadata.labels[team]"]}
	required_labels.patch == [] with input as fixtures.update(p, old) with data.podwall.config as cfg
}

test_update_tolerates_what_the_old_object_had if {
	old := fixtures.pod("default", "shop", {"team": "ops"}, "10.0.0.1")
	p := fixtures.pod("default", "shop", {"team": "ops", "x": "y"}, "10.0.0.1")
	vs := required_labels.violation with input as fixtures.update(p, old) with data.podwall.config as cfg
	codes(vs) == {["missing-label", "metadata.labels[app.kubernetes.io/name]"], ["label-value-not-allowed", "metadata.labels[team]"]}
	every v in vs {
		v.action == "warn"
		endswith(v.msg, "(tolerated: the object was already like this before this update)")
	}
}

test_patch_creates_labels_when_the_pod_has_none if {
	p := {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare", "namespace": "default"}}
	c := fixtures.with_rule("requiredLabels", {"labels": [
		{"key": "app.kubernetes.io/name", "default": "bare"},
		{"key": "team", "default": "web"},
	]})
	required_labels.patch == [{"op": "add", "path": "/metadata/labels", "value": {"app.kubernetes.io/name": "bare", "team": "web"}}] with input as fixtures.create(p)
		with data.podwall.config as c
}

test_patch_escapes_json_pointer if {
	p := fixtures.pod("default", "shop", {"team": "web"}, "10.0.0.1")
	c := fixtures.with_rule("requiredLabels", {"labels": [{"key": "app.kubernetes.io/name", "default": "x"}, {"key": "a~b", "default": "y"}]})
	required_labels.patch == [
		{"op": "add", "path": "/metadata/labels/app.kubernetes.io~1name", "value": "x"},
		{"op": "add", "path": "/metadata/labels/a~0b", "value": "y"},
	] with input as fixtures.create(p)
		with data.podwall.config as c
}

test_value_outside_allowed_values_is_a_violation if {
	p := fixtures.pod("default", "shop", {"app.kubernetes.io/name": "shop", "team": "ops"}, "10.0.0.1")
	vs := required_labels.violation with input as fixtures.create(p) with data.podwall.config as cfg
	codes(vs) == {["label-value-not-allowed", "metadata.labels[team]"]}
	some v in vs
	v.msg == "Pod default/shop: label team=\"ops\" is not allowed: want one of \"web\", \"data\"; no NetworkPolicy in namespace default selects on it yet"
}

deployment(labels, template_labels) := {
	"apiVersion": "apps/v1",
	"kind": "Deployment",
	"metadata": {"name": "shop", "namespace": "default", "labels": labels},
	"spec": {
		"selector": {"matchLabels": {"app.kubernetes.io/name": "shop"}},
		"template": {"metadata": {"labels": template_labels}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
	},
}

test_workload_pod_templates_are_checked if {
	d := deployment(good_labels, {"app.kubernetes.io/name": "shop"})
	r := json.patch(fixtures.create(d), [{"op": "replace", "path": "/request/kind", "value": {"group": "apps", "version": "v1", "kind": "Deployment"}}])
	count(required_labels.violation) == 0 with input as r with data.podwall.config as cfg
	required_labels.patch == [{"op": "add", "path": "/spec/template/metadata/labels/team", "value": "web"}] with input as r
		with data.podwall.config as cfg

	d2 := deployment(good_labels, {"team": "web"})
	r2 := json.patch(r, [{"op": "replace", "path": "/request/object", "value": d2}])
	codes(required_labels.violation) == {["missing-label", "spec.template.metadata.labels[app.kubernetes.io/name]"]} with input as r2
		with data.podwall.config as cfg
}

test_cronjob_template if {
	cj := {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly", "namespace": "default"}, "spec": {"jobTemplate": {"spec": {"template": {"spec": {}}}}}}
	r := json.patch(fixtures.create(cj), [{"op": "replace", "path": "/request/kind", "value": {"group": "batch", "version": "v1", "kind": "CronJob"}}])
	required_labels.patch == [{"op": "add", "path": "/spec/jobTemplate/spec/template/metadata", "value": {"labels": {"team": "web"}}}] with input as r
		with data.podwall.config as cfg
}

test_dryrun_records_would_set_and_does_not_patch if {
	p := fixtures.pod("default", "shop", {"app.kubernetes.io/name": "shop"}, "10.0.0.1")
	c := fixtures.with_rule("requiredLabels", {"enforcementAction": "dryrun"})
	vs := required_labels.violation with input as fixtures.create(p) with data.podwall.config as c
	codes(vs) == {["missing-label", "metadata.labels[team]"]}
	some v in vs
	contains(v.msg, "would set missing label team=\"web\"")
	required_labels.patch == [] with input as fixtures.create(p) with data.podwall.config as c
}

test_delete_other_kinds_and_deleting_objects_are_not_checked if {
	p := fixtures.pod("default", "shop", {}, "10.0.0.1")
	count(required_labels.violation) == 0 with input as fixtures.delete(p) with data.podwall.config as cfg
	count(required_labels.violation) == 0 with input as fixtures.create(fixtures.access_httpd) with data.podwall.config as cfg
	gone := json.patch(p, [{"op": "add", "path": "/metadata/deletionTimestamp", "value": "2024-01-01T00:00:00Z"}])
	count(required_labels.violation) == 0 with input as fixtures.update(gone, p) with data.podwall.config as cfg
}

test_default_exempt_namespaces if {
	p := fixtures.pod("kube-system", "coredns", {}, "10.0.0.1")
	count(required_labels.violation) == 0 with input as fixtures.create(p) with data.podwall.config as cfg
	p2 := fixtures.pod("podwall-system", "webhook", {}, "10.0.0.2")
	count(required_labels.violation) == 0 with input as fixtures.create(p2) with data.podwall.config as cfg
	c := object.union(cfg, {"exemptNamespaces": []})
	count(required_labels.violation) == 1 with input as fixtures.create(p) with data.podwall.config as c
}

test_unconfigured_family_does_nothing if {
	p := fixtures.pod("default", "shop", {}, "10.0.0.1")
	count(required_labels.violation) == 0 with input as fixtures.create(p) with data.podwall.config as {}
	count(required_labels.violation) == 0 with input as fixtures.create(p) with data.podwall.config as fixtures.only_rule("defaultDeny")
	required_labels.patch == [] with input as fixtures.create(p) with data.podwall.config as {}
}

test_generate_name_in_messages if {
	p := {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "web-", "namespace": "default", "labels": {"team": "web"}}}
	r := json.patch(fixtures.create(p), [{"op": "replace", "path": "/request/name", "value": ""}])
	vs := required_labels.violation with input as r with data.podwall.config as cfg
	some v in vs
	contains(v.msg, "default/web-*")
}

test_nothing_is_defaulted_where_there_is_no_pod_template if {
	c := fixtures.with_rule("requiredLabels", {"labels": [{"key": "team", "default": "web"}]})
	d := {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"}, "spec": {}}
	vs := required_labels.violation with input as fixtures.create(d) with data.podwall.config as c
	codes(vs) == {["missing-label", "spec.template.metadata.labels[team]"]}
	required_labels.patch == [] with input as fixtures.create(d) with data.podwall.config as c

	# a template without metadata gets it
	d2 := json.patch(d, [{"op": "add", "path": "/spec/template", "value": {"spec": {}}}])
	count(required_labels.violation) == 0 with input as fixtures.create(d2) with data.podwall.config as c
	required_labels.patch == [{"op": "add", "path": "/spec/template/metadata", "value": {"labels": {"team": "web"}}}] with input as fixtures.create(d2)
		with data.podwall.config as c
}

test_nothing_is_defaulted_that_would_unselect_the_template if {
	c := fixtures.with_rule("requiredLabels", {"labels": [{"key": "team", "default": "web"}]})
	d := {
		"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
		"spec": {
			"selector": {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["web"]}]},
			"template": {"metadata": {"labels": {"app.kubernetes.io/name": "web"}}},
		},
	}
	vs := required_labels.violation with input as fixtures.create(d) with data.podwall.config as c
	codes(vs) == {["missing-label", "spec.template.metadata.labels[team]"]}
	required_labels.patch == [] with input as fixtures.create(d) with data.podwall.config as c
}

test_messages_name_the_policies_selecting_on_the_label if {
	c := {"rules": {"requiredLabels": {"labels": [{"key": "access", "allowedValues": ["true", "false"]}]}}}
	p := fixtures.pod("default", "b", {"run": "b"}, "10.0.0.1")
	vs := required_labels.violation with input as fixtures.create(p) with data.podwall.config as c with data.kubernetes as fixtures.kubernetes
	some v in vs
	v.msg == "Pod default/b: label \"access\" is required with one of the values \"true\", \"false\"; NetworkPolicies in namespace default that select on it: access-httpd"
}

test_the_validating_webhook_judges_the_object_as_stored if {
	# A CREATE reaching the validating webhook still without a label that
	# has a default: the mutating webhook did not set it, so it is missing.
	p := fixtures.pod("default", "shop", {"app.kubernetes.io/name": "shop"}, "10.0.0.1")
	r := object.union(fixtures.create(p), {"podwall": {"webhook": "validating"}})
	vs := required_labels.violation with input as r with data.podwall.config as cfg
	codes(vs) == {["missing-label", "metadata.labels[team]"]}
	required_labels.patch == [] with input as r with data.podwall.config as cfg

	# In dryrun, what would have been set is the mutating webhook's record.
	d := fixtures.with_rule("requiredLabels", object.union(cfg.rules.requiredLabels, {"enforcementAction": "dryrun"}))
	{v.msg | some v in required_labels.violation} == {"Pod default/shop: label \"team\" is required with one of the values \"web\", \"data\"; no NetworkPolicy in namespace default selects on it yet"} with input as r
		with data.podwall.config as d
	m := object.union(fixtures.create(p), {"podwall": {"webhook": "mutating"}})
	some v in required_labels.violation with input as m with data.podwall.config as d
	contains(v.msg, "would set missing label team=\"web\"")
}
