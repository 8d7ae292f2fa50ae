package podwall.lib_test

import data.podwall.lib
import data.podwall.test.fixtures

test_action_defaults_to_deny_and_fails_closed if {
	lib.action("requiredLabels") == "deny" with data.podwall.config as {"rules": {"requiredLabels": {}}}
	lib.action("requiredLabels") == "deny" with data.podwall.config as {"rules": {"requiredLabels": {"enforcementAction": "Warn!"}}}
	lib.action("requiredLabels") == "warn" with data.podwall.config as {"rules": {"requiredLabels": {"enforcementAction": "warn"}}}
	lib.action("requiredLabels") == "dryrun" with data.podwall.config as {"rules": {"requiredLabels": {"enforcementAction": "dryrun"}}}
}

test_unconfigured_and_null_families_are_disabled if {
	not lib.enabled("requiredLabels") with data.podwall.config as {}
	not lib.enabled("requiredLabels") with data.podwall.config as {"rules": {"requiredLabels": null}}
	lib.enabled("requiredLabels") with data.podwall.config as {"rules": {"requiredLabels": {}}}
}

test_exempt_namespaces if {
	r := fixtures.create(fixtures.pod("kube-system", "x", {}, ""))
	c := {"rules": {"requiredLabels": {}}}
	not lib.applies("requiredLabels") with input as r with data.podwall.config as c
	lib.applies("requiredLabels") with input as r with data.podwall.config as object.union(c, {"exemptNamespaces": []})
	not lib.applies("requiredLabels") with input as r with data.podwall.config as object.union(c, {"exemptNamespaces": ["kube-system"]})
	r2 := fixtures.create(fixtures.pod("podwall-system", "x", {}, ""))
	not lib.applies("requiredLabels") with input as r2 with data.podwall.config as c
}

test_match_namespaces_and_kinds if {
	r := fixtures.create(fixtures.pod("default", "x", {}, ""))
	lib.applies("requiredLabels") with input as r with data.podwall.config as {"rules": {"requiredLabels": {"match": {"namespaces": ["default"]}}}}
	not lib.applies("requiredLabels") with input as r with data.podwall.config as {"rules": {"requiredLabels": {"match": {"namespaces": ["dev"]}}}}
	not lib.applies("requiredLabels") with input as r
		with data.podwall.config as {"rules": {"requiredLabels": {"match": {"excludedNamespaces": ["default"]}}}}
	not lib.applies("requiredLabels") with input as r with data.podwall.config as {"rules": {"requiredLabels": {"match": {"kinds": ["Deployment"]}}}}
	not lib.applies("networkPolicyHygiene") with input as r with data.podwall.config as {"rules": {"networkPolicyHygiene": {}}}
}

match_cfg(match) := {"rules": {"requiredLabels": {"match": match}}}

test_match_selectors if {
	r := fixtures.create(fixtures.pod("default", "x", {"tier": "web"}, ""))
	lib.applies("requiredLabels") with input as r with data.kubernetes as fixtures.kubernetes
		with data.podwall.config as match_cfg({"namespaceSelector": {"matchLabels": {"env": "prod"}}})
	not lib.applies("requiredLabels") with input as r with data.kubernetes as fixtures.kubernetes
		with data.podwall.config as match_cfg({"namespaceSelector": {"matchLabels": {"env": "dev"}}})
	lib.applies("requiredLabels") with input as r with data.podwall.config as match_cfg({"objectSelector": {"matchLabels": {"tier": "web"}}})
	not lib.applies("requiredLabels") with input as r with data.podwall.config as match_cfg({"objectSelector": {"matchLabels": {"tier": "db"}}})
}

test_subresources_are_not_checked if {
	r := json.patch(fixtures.create(fixtures.pod("default", "x", {}, "")), [{"op": "add", "path": "/request/subResource", "value": "status"}])
	not lib.applies("requiredLabels") with input as r with data.podwall.config as {"rules": {"requiredLabels": {}}}
}

test_labels_path if {
	lib.labels_path == ["metadata", "labels"] with input as {"request": {"kind": {"kind": "Pod"}}}
	lib.labels_path == ["spec", "template", "metadata", "labels"] with input as {"request": {"kind": {"group": "apps", "kind": "Deployment"}}}
	lib.labels_path == ["spec", "jobTemplate", "spec", "template", "metadata", "labels"] with input as {"request": {"kind": {"group": "batch", "kind": "CronJob"}}}
}

test_kind_needs_its_group if {
	lib.kind == "NetworkPolicy" with input as {"request": {"kind": {"group": "networking.k8s.io", "version": "v1", "kind": "NetworkPolicy"}}}
	lib.kind == "Pod" with input as {"request": {"kind": {"version": "v1", "kind": "Pod"}}}
	lib.kind == "" with input as {"request": {"kind": {"group": "crd.projectcalico.org", "version": "v1", "kind": "NetworkPolicy"}}}
	lib.kind == "" with input as {"request": {"kind": {"group": "example.com", "version": "v1", "kind": "Pod"}}}
	lib.kind == "" with input as {"request": {"kind": {"version": "v1", "kind": "ConfigMap"}}}
	r := fixtures.create({"apiVersion": "example.com/v1", "kind": "Pod", "metadata": {"name": "x", "namespace": "default"}})
	not lib.applies("requiredLabels") with input as json.patch(r, [{"op": "replace", "path": "/request/kind", "value": {"group": "example.com", "version": "v1", "kind": "Pod"}}])
		with data.podwall.config as {"rules": {"requiredLabels": {}}}
}

test_resource_is_the_old_object_on_delete if {
	r := fixtures.delete(fixtures.access_httpd)
	lib.resource == fixtures.access_httpd with input as r
	lib.name == "access-httpd" with input as r
	lib.display == "default/access-httpd" with input as r
}

test_name_falls_back_to_generate_name if {
	r := {"request": {"kind": {"kind": "Pod"}, "namespace": "default", "object": {"metadata": {"generateName": "web-"}}}}
	lib.name == "web-*" with input as r
}

test_json_pointer if {
	lib.json_pointer("app.kubernetes.io/name") == "app.kubernetes.io~1name"
	lib.json_pointer("a~/b") == "a~0~1b"
}

test_labels_of if {
	lib.labels_of({"metadata": {"labels": {"a": "b"}}}) == {"a": "b"}
	lib.labels_of({"metadata": {"labels": null}}) == {}
	lib.labels_of({}) == {}
}
