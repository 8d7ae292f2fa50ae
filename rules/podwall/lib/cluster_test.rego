package podwall.lib.cluster_test

import data.podwall.lib.cluster
import data.podwall.test.fixtures

test_namespace_labels_include_the_name_label if {
	cluster.namespace_labels("default") == {"env": "prod", "kubernetes.io/metadata.name": "default"} with data.kubernetes as fixtures.kubernetes
	cluster.namespace_labels("unknown") == {"kubernetes.io/metadata.name": "unknown"} with data.kubernetes as fixtures.kubernetes
	cluster.namespace_labels("x") == {"kubernetes.io/metadata.name": "x"} with data.kubernetes as {}
}

test_flattened_state if {
	count(cluster.all_pods) == 5 with data.kubernetes as fixtures.kubernetes
	count(cluster.all_policies) == 2 with data.kubernetes as fixtures.kubernetes
	count(cluster.all_namespaces) == 3 with data.kubernetes as fixtures.kubernetes
	count(cluster.policies_in("default")) == 2 with data.kubernetes as fixtures.kubernetes
	cluster.policies_in("dev") == [] with data.kubernetes as fixtures.kubernetes
	cluster.all_pods == [] with data.kubernetes as {}
}

names(policies) := {p.metadata.name | some p in policies}

test_before_and_after_a_create if {
	p := fixtures.policy("default", "new", {"podSelector": {}})
	names(cluster.policies_before) == {"access-httpd", "default-deny"} with input as fixtures.create(p) with data.kubernetes as fixtures.kubernetes
	names(cluster.policies_after) == {"access-httpd", "default-deny", "new"} with input as fixtures.create(p) with data.kubernetes as fixtures.kubernetes
}

test_before_and_after_an_update_use_the_request_objects if {
	old := fixtures.access_httpd
	new := fixtures.access_httpd_ipblock
	before := cluster.policies_before with input as fixtures.update(new, old) with data.kubernetes as fixtures.kubernetes
	after := cluster.policies_after with input as fixtures.update(new, old) with data.kubernetes as fixtures.kubernetes
	count(before) == 2
	count(after) == 2
	old in before
	new in after
}

test_before_and_after_a_delete if {
	after := cluster.policies_after with input as fixtures.delete(fixtures.access_httpd) with data.kubernetes as fixtures.kubernetes
	names(after) == {"default-deny"}
	before := cluster.policies_before with input as fixtures.delete(fixtures.access_httpd) with data.kubernetes as fixtures.kubernetes
	names(before) == {"access-httpd", "default-deny"}
}

test_request_object_gets_the_request_namespace if {
	p := {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "n"}, "spec": {"podSelector": {}}}
	r := json.patch(fixtures.create(p), [{"op": "replace", "path": "/request/namespace", "value": "dev"}])
	cluster.new_object.metadata.namespace == "dev" with input as r
}

test_in_namespace if {
	ps := [fixtures.policy("a", "x", {}), fixtures.policy("b", "y", {})]
	cluster.in_namespace(ps) == [fixtures.policy("a", "x", {})] with input as {"request": {"namespace": "a"}}
}

test_old_object_falls_back_to_the_replicated_policy if {
	r := json.remove(fixtures.delete(fixtures.access_httpd), ["request/oldObject"])
	cluster.old_object == fixtures.access_httpd with input as r with data.kubernetes as fixtures.kubernetes
	names(cluster.policies_before) == {"access-httpd", "default-deny"} with input as r with data.kubernetes as fixtures.kubernetes
	u := json.remove(fixtures.update(fixtures.access_httpd_ipblock, fixtures.access_httpd), ["request/oldObject"])
	cluster.old_object == fixtures.access_httpd with input as u with data.kubernetes as fixtures.kubernetes

	# not for other kinds, nor for a policy the cluster does not hold
	p := json.remove(fixtures.delete(fixtures.pod("default", "busybox", {}, "")), ["request/oldObject"])
	not cluster.old_object with input as p with data.kubernetes as fixtures.kubernetes
	n := json.remove(fixtures.delete(fixtures.policy("default", "gone", {})), ["request/oldObject"])
	not cluster.old_object with input as n with data.kubernetes as fixtures.kubernetes
}
