# Shared mock data for the rules' unit tests: the seed scenario's cluster in
# kube-mgmt's layout, a configuration enabling every family, and builders of
# AdmissionReviews. Not part of the bundle (a _test.rego file).
package podwall.test.fixtures

pod(ns, name, labels, ip) := {
	"apiVersion": "v1",
	"kind": "Pod",
	"metadata": {"name": name, "namespace": ns, "labels": labels},
	"spec": {"containers": [{"name": "c", "image": "httpd", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]},
	"status": {"podIP": ip},
}

namespace(name, labels) := {
	"apiVersion": "v1",
	"kind": "Namespace",
	"metadata": {"name": name, "labels": object.union(labels, {"kubernetes.io/metadata.name": name})},
}

policy(ns, name, spec) := {
	"apiVersion": "networking.k8s.io/v1",
	"kind": "NetworkPolicy",
	"metadata": {"name": name, "namespace": ns},
	"spec": spec,
}

default_deny_ingress(ns) := policy(ns, "default-deny", {"podSelector": {}, "policyTypes": ["Ingress"]})

# The seed's stage 1 policy: only access=true pods reach httpd, on TCP 80.
access_httpd := policy("default", "access-httpd", {
	"podSelector": {"matchLabels": {"name": "networkpolicy-demo"}},
	"ingress": [{
		"from": [{"podSelector": {"matchLabels": {"access": "true"}}}],
		"ports": [{"protocol": "TCP", "port": 80}],
	}],
})

# The seed's stage 2 policy: the same plus the node network.
access_httpd_ipblock := policy("default", "access-httpd", {
	"podSelector": {"matchLabels": {"name": "networkpolicy-demo"}},
	"ingress": [{
		"from": [
			{"podSelector": {"matchLabels": {"access": "true"}}},
			{"ipBlock": {"cidr": "192.168.2.0/24"}},
		],
		"ports": [{"protocol": "TCP", "port": 80}],
	}],
})

httpd := {"name": "networkpolicy-demo"}

seed_pods := {"default": {
	"httpd-1": pod("default", "httpd-1", httpd, "10.244.2.11"),
	"httpd-2": pod("default", "httpd-2", httpd, "10.244.1.12"),
	"httpd-3": pod("default", "httpd-3", httpd, "10.244.2.13"),
	"busybox": pod("default", "busybox", {"run": "busybox"}, "10.244.1.20"),
	"busybox-access": pod("default", "busybox-access", {"run": "busybox", "access": "true"}, "10.244.2.21"),
}}

seed_namespaces := {
	"default": namespace("default", {"env": "prod"}),
	"kube-system": namespace("kube-system", {}),
	"dev": namespace("dev", {"env": "dev"}),
}

# kubernetes is data.kubernetes for the seed at stage 1, with a default deny
# in default.
kubernetes := {
	"namespaces": seed_namespaces,
	"pods": seed_pods,
	"networkpolicies": {"default": {
		"access-httpd": access_httpd,
		"default-deny": default_deny_ingress("default"),
	}},
	"services": {},
}

# with_policies(policies) is the seed cluster with exactly these
# NetworkPolicies (an array).
with_policies(policies) := object.union(
	{k: v | some k, v in kubernetes; k != "networkpolicies"},
	{"networkpolicies": {ns: {p.metadata.name: p | some p in policies; p.metadata.namespace == ns} |
		some q in policies
		ns := q.metadata.namespace
	}},
)

# kubernetes_stage0 has no NetworkPolicy at all.
kubernetes_stage0 := with_policies([])

config := {
	"apiVersion": "podwall.io/v1alpha1",
	"kind": "AdmissionConfiguration",
	"rules": {
		"requiredLabels": {
			"enforcementAction": "deny",
			"labels": [
				{"key": "app.kubernetes.io/name"},
				{"key": "team", "allowedValues": ["web", "data"], "default": "web"},
			],
		},
		"defaultDeny": {
			"enforcementAction": "deny",
			"policyTypes": ["Ingress"],
			"policyName": "default-deny",
			"match": {"namespaceSelector": {"matchLabels": {"env": "prod"}}},
		},
		"networkPolicyHygiene": {
			"enforcementAction": "deny",
			"denyIngressFromAnywhere": true,
			"denyAllowAllIngressInProtected": true,
			"lintWarnings": true,
		},
		"protectedAccess": {
			"enforcementAction": "deny",
			"protectedSelector": {"matchLabels": {"name": "networkpolicy-demo"}},
			"requiredPeerLabels": {"access": "true"},
		},
	},
}

# with_rule(name, fields) is config with one family's settings merged in.
with_rule(name, fields) := object.union(config, {"rules": {name: fields}})

# only_rule(name) is config with just one family enabled.
only_rule(name) := {"apiVersion": config.apiVersion, "kind": config.kind, "rules": {name: config.rules[name]}}

gvk := {
	"Pod": {"group": "", "version": "v1", "kind": "Pod"},
	"Namespace": {"group": "", "version": "v1", "kind": "Namespace"},
	"NetworkPolicy": {"group": "networking.k8s.io", "version": "v1", "kind": "NetworkPolicy"},
	"Deployment": {"group": "apps", "version": "v1", "kind": "Deployment"},
	"CronJob": {"group": "batch", "version": "v1", "kind": "CronJob"},
}

# review(operation, obj, old) is an AdmissionReview for obj (null for
# DELETE) replacing old (null for CREATE).
review(operation, obj, old) := {
	"apiVersion": "admission.k8s.io/v1",
	"kind": "AdmissionReview",
	"request": {
		"uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
		"kind": gvk[kind_of(obj, old)],
		"operation": operation,
		"namespace": namespace_of(obj, old),
		"name": name_of(obj, old),
		"object": obj,
		"oldObject": old,
	},
}

create(obj) := review("CREATE", obj, null)

update(obj, old) := review("UPDATE", obj, old)

delete(old) := review("DELETE", null, old)

kind_of(obj, _) := obj.kind if is_object(obj)

kind_of(obj, old) := old.kind if not is_object(obj)

namespace_of(obj, _) := object.get(obj, ["metadata", "namespace"], "") if is_object(obj)

namespace_of(obj, old) := object.get(old, ["metadata", "namespace"], "") if not is_object(obj)

name_of(obj, _) := object.get(obj, ["metadata", "name"], "") if is_object(obj)

name_of(obj, old) := object.get(old, ["metadata", "name"], "") if not is_object(obj)
