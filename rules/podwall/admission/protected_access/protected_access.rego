# METADATA
# title: protectedAccess
# description: |
#   A NetworkPolicy change (CREATE, UPDATE or DELETE) may not open a protected
#   workload to pods lacking the required peer labels. Protected pods are
#   those protectedSelector matches in the policy's namespace that the new or
#   the old policy selects. Every flow from a pod lacking the labels (each
#   existing one, and a probe pod with no labels in every namespace) to each
#   protected pod, on each port the policy names and each port the pod
#   exposes, is decided by policylib (podwall.decide) over the cluster with
#   the change and without it. A flow allowed after the change is a violation
#   when this policy's rule allows it or it was denied before the change.
#   A flow that cannot be decided is a violation too: the rule fails closed.
#   Needs the podwall built-ins.
#
#   data.podwall.config.rules.protectedAccess:
#     protectedSelector: <metav1.LabelSelector>   (required; e.g. {matchLabels: {name: networkpolicy-demo}})
#     requiredPeerLabels: {access: "true"}         (the default)
#     enforcementAction, exemptNamespaces
package podwall.admission.protected_access

import data.podwall.lib
import data.podwall.lib.cluster

family := "protectedAccess"

cfg := lib.rule_config(family)

required_peer_labels := l if {
	l := cfg.requiredPeerLabels
	is_object(l)
	count(l) > 0
} else := {"access": "true"}

applies if {
	input.request.kind.kind == "NetworkPolicy" # first: rule indexing skips other kinds
	lib.applies(family)
	is_object(cfg.protectedSelector)
	lib.operation in {"CREATE", "UPDATE", "DELETE"}
}

checked if {
	applies
	count(rejected) == 0
}

# rejected are why the API server would reject the new policy. Such a policy
# is not decided: its selectors may not even parse, and a built-in's error
# would end the whole evaluation, the other rules' findings with it. The
# rule fails closed on it instead (undecided-flows, below).
rejected := [f.message |
	some f in podwall.lint({"policies": [cluster.new_object]})
	f.code == "invalid"
] if {
	applies
	cluster.new_object
} else := []

# changed are the request's policy before and after. An old policy whose
# podSelector does not parse (stored long ago) selects nothing known.
changed contains cluster.new_object if cluster.new_object

changed contains cluster.old_object if {
	cluster.old_object
	not invalid_pod_selector(cluster.old_object)
}

invalid_pod_selector(p) if {
	some f in podwall.lint({"policies": [p]})
	f.code == "invalid"
	startswith(f.field, "spec.podSelector")
}

# end(ns, name) names a pod as a flow end for podwall.decide: "ns/name", or
# "pod/ns/name" where ns alone would read as something else (node/NAME).
end(ns, name) := concat("/", ["pod", ns, name]) if {
	ns in {"node", "pod", "svc"}
} else := concat("/", [ns, name])

# targets are the names of the protected pods in the policy's namespace
# that the new or the old policy selects.
targets contains pod_name if {
	checked
	some pod_name, pod in object.get(cluster.pods, lib.namespace, {})
	labels := lib.labels_of(pod)
	podwall.selector_matches(cfg.protectedSelector, labels)
	some p in changed
	podwall.selector_matches(object.get(p, ["spec", "podSelector"], {}), labels)
}

lacks_required(labels) if {
	some k, v in required_peer_labels
	object.get(labels, k, null) != v
}

probe_name := "podwall-probe-without-required-labels"

probe_namespaces := ({n | some n, _ in cluster.namespaces} | {n | some n, _ in cluster.pods}) | {lib.namespace}

probes := [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": probe_name, "namespace": n}} | some n in probe_namespaces]

# sources are the pods lacking a required label: existing ones and probes.
sources contains end(ns, n) if {
	some ns, m in cluster.pods
	some n, p in m
	lacks_required(lib.labels_of(p))
}

sources contains end(n, probe_name) if some n in probe_namespaces

# ports(pod) are the ports to probe on a protected pod: the numeric ingress
# ports the policy names, and the ports the pod exposes (which named ports
# resolve to, and which stand for rules without ports); TCP 1 when there is
# none of either.
named_ports(pod) := {pp |
	some p in changed
	some r in object.get(p, ["spec", "ingress"], [])
	some port in object.get(r, "ports", [])
	is_number(port.port)
	pp := {"protocol": object.get(port, "protocol", "TCP"), "port": port.port}
} | {pp |
	some c in object.get(pod, ["spec", "containers"], [])
	some cp in object.get(c, "ports", [])
	pp := {"protocol": object.get(cp, "protocol", "TCP"), "port": cp.containerPort}
}

ports(pod) := ps if {
	ps := named_ports(pod)
	count(ps) > 0
} else := {{"protocol": "TCP", "port": 1}}

snapshot(policies) := {
	"namespaces": cluster.all_namespaces,
	"pods": array.concat([p | some p in cluster.all_pods; p.metadata.name != probe_name], probes),
	"policies": policies,
}

after_snapshot := snapshot(cluster.policies_after)

before_snapshot := snapshot(cluster.policies_before)

flows contains {"from": src, "to": to, "protocol": pp.protocol, "port": pp.port} if {
	some t in targets
	to := end(lib.namespace, t)
	some pp in ports(cluster.pods[lib.namespace][t])
	some src in sources
	src != to
}

# refused are why policylib cannot decide on the cluster after the change,
# when there is something to decide: the new policy is invalid, or the
# cluster holds an object policylib refuses (a policy stored before the API
# server validated CIDRs as strictly as policylib does, say). Then nothing is
# decided and the rule fails closed, naming them: decide's error would end
# the whole evaluation, the other rules' findings with it.
refused := podwall.snapshot_errors(after_snapshot) if count(flows) > 0

decidable if count(refused) == 0

after[f] := podwall.decide(after_snapshot, f) if {
	decidable
	some f in flows
}

# The cluster before the change may be undecidable where the one after is
# not: the request fixes or deletes a policy policylib refuses. Then every
# flow allowed after counts as opened by the change.
before_decidable if count(podwall.snapshot_errors(before_snapshot)) == 0

before[f] := podwall.decide(before_snapshot, f) if {
	before_decidable
	some f in flows
	after[f].allowed
}

opened contains f if {
	some f in flows
	after[f].allowed
	opened_by_change(f)
}

opened_by_change(f) if {
	lib.operation != "DELETE"
	rule := after[f].ingress.rule
	rule.namespace == lib.namespace
	rule.name == lib.name
}

opened_by_change(f) if not before[f].allowed

# undecided flows are those podwall.decide failed on (with non-strict
# built-in errors the call is just undefined): the rule fails closed.
undecided contains f if {
	decidable
	some f in flows
	not after[f]
}

peer_labels_text := concat(", ", [sprintf("%s=%s", [k, v]) | some k, v in required_peer_labels])

describe_source(src) := sprintf("any new pod in namespace %s", [parts[count(parts) - 2]]) if {
	parts := split(src, "/")
	parts[count(parts) - 1] == probe_name
} else := src

opened_targets contains [f.to, f.protocol, f.port] if some f in opened

# Codes: opens-protected-pod for a flow the change opens, undecided-flows
# when some could not be decided.
violation contains {"code": "opens-protected-pod", "msg": msg, "target": to} if {
	some [to, protocol, port] in opened_targets
	srcs := sort([describe_source(f.from) | some f in opened; [f.to, f.protocol, f.port] == [to, protocol, port]])
	examples := array.slice(srcs, 0, 3)
	more := count(srcs) - count(examples)
	msg := sprintf(
		"%s NetworkPolicy %s would let pods without %s reach protected pod %s on %s/%d (%s%s)",
		[
			{"CREATE": "creating", "UPDATE": "updating", "DELETE": "deleting"}[lib.operation],
			lib.display, peer_labels_text, to, protocol, port, concat(", ", examples),
			more_text(more),
		],
	)
}

more_text(n) := sprintf(" and %d more", [n]) if {
	n > 0
} else := ""

violation contains {"code": "undecided-flows", "msg": msg, "target": ""} if {
	count(rejected) > 0
	msg := sprintf(
		"NetworkPolicy %s would be rejected by the API server (%s): not decided, refusing it",
		[lib.display, concat("; ", rejected)],
	)
}

violation contains {"code": "undecided-flows", "msg": msg, "target": ""} if {
	count(undecided) > 0
	msg := sprintf(
		"NetworkPolicy %s: could not decide %d flow(s) to protected pods (is the cluster state valid?), refusing to open them",
		[lib.display, count(undecided)],
	)
}

violation contains {"code": "undecided-flows", "msg": msg, "target": ""} if {
	count(refused) > 0
	msg := sprintf(
		"NetworkPolicy %s: could not decide flows to protected pods, refusing to open them: the cluster holds objects policylib refuses: %s",
		[lib.display, concat("; ", sort({e | some e in refused}))],
	)
}
