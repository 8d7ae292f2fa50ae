# METADATA
# title: podwall cluster state
# description: |
#   The cluster state kube-mgmt replicates under data.kubernetes
#   (namespaces[name], pods[namespace][name], networkpolicies[namespace][name],
#   services[namespace][name]), and the NetworkPolicy sets before and after
#   the request. Uses no podwall built-in.
package podwall.lib.cluster

import data.podwall.lib

default kubernetes := {}

kubernetes := data.kubernetes

namespaces := object.get(kubernetes, "namespaces", {})

pods := object.get(kubernetes, "pods", {})

networkpolicies := object.get(kubernetes, "networkpolicies", {})

services := object.get(kubernetes, "services", {})

# namespace_labels(ns) are a namespace's labels, with the name label the API
# server always sets (present even when the namespace is not replicated).
namespace_labels(ns) := object.union(
	lib.labels_of(object.get(namespaces, ns, {})),
	{"kubernetes.io/metadata.name": ns},
)

all_namespaces := [n | some n in namespaces]

all_pods := [p | some m in pods; some p in m]

all_services := [s | some m in services; some s in m]

all_policies := [p | some m in networkpolicies; some p in m]

# policies_in(ns) are the NetworkPolicies of one namespace.
policies_in(ns) := [p | some p in object.get(networkpolicies, ns, {})]

# with_namespace(obj) is obj with metadata.namespace set to the request's
# namespace, which a client may leave out of the object.
with_namespace(obj) := object.union(obj, {"metadata": {"namespace": lib.namespace}})

new_object := with_namespace(input.request.object) if is_object(input.request.object)

# old_object is the object before the request: the oldObject sent, else, for
# an UPDATE or DELETE of a NetworkPolicy that comes without one (older API
# servers send none on DELETE), the replicated copy, as for the Go rules.
old_object := with_namespace(input.request.oldObject) if {
	is_object(input.request.oldObject)
} else := stored if {
	lib.operation in {"UPDATE", "DELETE"}
	lib.kind == "NetworkPolicy"
	stored := networkpolicies[lib.namespace][lib.name]
}

# other_policies are the replicated NetworkPolicies other than the request's.
other_policies := [p |
	some ns, m in networkpolicies
	some n, p in m
	not is_request_policy(ns, n)
]

is_request_policy(ns, n) if {
	lib.kind == "NetworkPolicy"
	ns == lib.namespace
	n == lib.name
}

# policies_before and policies_after are the NetworkPolicies without and
# with the request's change (for a NetworkPolicy request): the same set but
# for the request's object, so a comparison sees exactly the change.
policies_before := array.concat(other_policies, [old_object]) if {
	old_object
} else := other_policies

policies_after := array.concat(other_policies, [new_object]) if {
	lib.operation != "DELETE"
	new_object
} else := other_policies

# in_namespace(policies) are those of policies in the request's namespace.
in_namespace(policies) := [p | some p in policies; p.metadata.namespace == lib.namespace]
