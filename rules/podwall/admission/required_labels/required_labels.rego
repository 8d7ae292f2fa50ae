# METADATA
# title: requiredLabels
# description: |
#   Pods, and the pod templates of Deployments, ReplicaSets, StatefulSets,
#   DaemonSets, Jobs and CronJobs, must carry the configured labels, with one
#   of allowedValues when given. On CREATE a missing label that has a default
#   is added by the patch (so it is no violation, unless the family is dryrun:
#   then "would set" is recorded). On UPDATE a violation the old object
#   already had is tolerated: downgraded to a warning. Uses no podwall
#   built-in beyond the match's selectors (podwall.lib.selectors).
#
#   data.podwall.config.rules.requiredLabels:
#     labels: [{key, allowedValues, default}]
#     enforcementAction: deny | warn | dryrun, match: {kinds, namespaces,
#     excludedNamespaces, namespaceSelector, objectSelector}
package podwall.admission.required_labels

import data.podwall.lib
import data.podwall.lib.cluster

family := "requiredLabels"

cfg := lib.rule_config(family)

# action is the family's enforcementAction, a rule of its own so that it
# depends on the configuration alone: the webhook's evaluator computes it
# once per configuration, where a call in a body costs a lookup and a call
# on every request.
action := lib.action(family)

# The request's facts are read from input here rather than through
# podwall.lib's rules (operation, being_deleted) where that is as simple:
# every rule a request evaluates costs more than the expressions in it.
checked if {
	input.request.operation in {"CREATE", "UPDATE"}
	lib.applies(family)
	lib.kind in lib.pod_kinds
	not lib.resource.metadata.deletionTimestamp # lib.being_deleted
}

required := [r | some r in cfg.labels; is_string(r.key)]

# restricted are the required labels with allowed values, each as
# [label, its allowed values]; with_default those with a default. Both
# depend on the configuration alone (computed once per configuration by
# the webhook's evaluator), and spare each request a pass over the labels
# that cannot matter.
restricted := [[r, vs] |
	some r in required
	vs := allowed_values(r)
	count(vs) > 0
]

with_default := [r | some r in required; is_string(r["default"])]

# labels are the labels checked (lib.labels_at, inlined: this is on every
# request's path).
labels := l if {
	l := object.get(lib.resource, lib.labels_path, {})
	is_object(l)
} else := {}

# A finding's field, where the label lives, is built in place with concat
# (not a function, nor sprintf, which converts every argument): findings
# are made on the request's path, where every rule or function evaluated
# costs more than the expressions in it. For the same reason messages name
# the object as concat("/", [lib.namespace, lib.name]) (lib.display).

what := "label" if lib.kind == "Pod"

else := "pod template label"

allowed_values(req) := vs if {
	vs := req.allowedValues
	is_array(vs)
} else := []

# patching: the patch adds the defaults (CREATE, not dryrun), where it can:
# the object has somewhere to put them (a workload without a pod template
# has not), and they would not make a workload's spec.selector stop matching
# its pod template (podwall.lib.selectors.defaults_unselect, read without
# importing it as it needs the built-ins). Otherwise nothing is set and the
# labels are judged as sent, as the Go rule does.
#
# The validating webhook judges the object as it will be stored: what a
# patch would have set is not there (the mutating webhook did not run, or
# a later mutation removed it), so nothing counts as patched.
patching if {
	input.request.operation == "CREATE"
	action != "dryrun"
	lib.webhook != "validating"
	placeable
	not data.podwall.lib.selectors.defaults_unselect
}

# placeable: the labels' map, or the metadata holding it, or the object
# holding that, exists (the patch adds the innermost one missing).
placeable if is_object(object.get(lib.resource, parent(lib.labels_path), null))

placeable if is_object(object.get(lib.resource, parent(parent(lib.labels_path)), null))

parent(path) := array.slice(path, 0, count(path) - 1)

# problems(labels) are the violations of a label set, keyed by code and field.
# The messages say what is allowed and which of the namespace's
# NetworkPolicies select on the label, in the Go rule's words.
problems(ls) := {[code, f, msg] |
	some req in required
	not ls[req.key]
	not defaulted(req)
	code := "missing-label"
	msg := sprintf("%s %s: %s %q is required%s; %s", [lib.kind, concat("/", [lib.namespace, lib.name]), what, req.key, allowed_text(req), selected_by(req.key)])
	f := concat("", [concat(".", lib.labels_path), "[", req.key, "]"])
} | {[code, f, msg] |
	some [req, vs] in restricted
	value := ls[req.key]
	not value in vs
	code := "label-value-not-allowed"
	msg := sprintf("%s %s: %s %s=%q is not allowed: want one of %s; %s", [lib.kind, concat("/", [lib.namespace, lib.name]), what, req.key, value, quoted(vs), selected_by(req.key)])
	f := concat("", [concat(".", lib.labels_path), "[", req.key, "]"])
}

allowed_text(req) := concat("", [" with one of the values ", quoted(vs)]) if {
	vs := allowed_values(req)
	count(vs) > 0
} else := " (any value)"

quoted(vs) := concat(", ", [concat("", ["\"", v, "\""]) | some v in vs])

# selected_by(key) names the NetworkPolicies of the request's namespace
# whose selection depends on the label key (their podSelector's, or a
# peer's), which a missing or wrong label silently changes.
selected_by(key) := sprintf("NetworkPolicies in namespace %s that select on it: %s", [lib.namespace, concat(", ", names)]) if {
	names := sort([name |
		some name, np in object.get(cluster.networkpolicies, lib.namespace, {})
		key in selected_keys(np)
	])
	count(names) > 0
} else := sprintf("no NetworkPolicy in namespace %s selects on it yet", [lib.namespace])

selected_keys(np) := {k |
	some sel in selectors_of(np)
	some k, _ in object.get(sel, "matchLabels", {})
} | {e.key |
	some sel in selectors_of(np)
	some e in object.get(sel, "matchExpressions", [])
}

selectors_of(np) := array.concat(
	[object.get(np, ["spec", "podSelector"], {})],
	array.concat(
		[p.podSelector | some r in object.get(np, ["spec", "ingress"], []); some p in object.get(r, "from", []); is_object(p.podSelector)],
		[p.podSelector | some r in object.get(np, ["spec", "egress"], []); some p in object.get(r, "to", []); is_object(p.podSelector)],
	),
)

defaulted(req) if {
	patching
	is_string(req["default"])
}

# found are this request's problems.
found := problems(labels) if checked

# tolerated are the problems, by code and field, that the old object of an
# UPDATE had too: a family that denies only warns about them. One set per
# request (empty unless UPDATE), where a test per finding cost two
# function calls.
tolerated := {[p[0], p[1]] |
	action == "deny" # first: depends on the configuration alone
	input.request.operation == "UPDATE"
	is_object(input.request.oldObject)
	some p in problems(lib.labels_at(input.request.oldObject, lib.labels_path))
}

# Each finding carries its family and action, the form
# podwall.admission.violations has.
violation contains {"rule": family, "msg": msg, "code": code, "field": f, "action": action} if {
	some [code, f, msg] in found
	not tolerated[[code, f]]
}

violation contains {"rule": family, "msg": m, "code": code, "field": f, "action": "warn"} if {
	some [code, f, msg] in found
	tolerated[[code, f]]
	m := concat(" ", [msg, "(tolerated: the object was already like this before this update)"])
}

# dryrun: what the patch would have set (the mutating webhook's record).
violation contains {"rule": family, "msg": msg, "code": "missing-label", "field": f, "action": "dryrun"} if {
	action == "dryrun" # first: depends on the configuration alone
	lib.webhook != "validating"
	checked
	input.request.operation == "CREATE"
	some k, v in defaults
	msg := sprintf("%s %s: would set missing %s %s=%q (the configured default)", [lib.kind, lib.display, what, k, v])
	f := concat("", [concat(".", lib.labels_path), "[", k, "]"])
}

# defaults are the labels a CREATE lacks that have a default.
defaults := {req.key: d |
	some req in with_default # first: depends on the configuration alone
	checked
	input.request.operation == "CREATE"
	not labels[req.key]
	d := req["default"]
}

# note is the admission warning that says what the patch set, or why it
# set nothing: the defaults would make a workload's spec.selector stop
# matching its pod template.
note := sprintf("requiredLabels: set missing %s %s (the configured default) on %s %s", [what, defaults_text, lib.kind, lib.display]) if {
	count(patch) > 0
} else := sprintf("requiredLabels: not setting %s %s (the configured default) on %s %s: spec.selector would no longer match the pod template", [what, defaults_text, lib.kind, lib.display]) if {
	action != "dryrun" # first: depends on the configuration alone
	lib.webhook != "validating"
	input.request.operation == "CREATE"
	count(defaults) > 0
	data.podwall.lib.selectors.defaults_unselect
}

defaults_text := concat(", ", [sprintf("%s=%q", [k, defaults[k]]) | some k in sort(object.keys(defaults))])

# patch is a JSON patch (RFC 6902) adding the missing labels that have
# defaults, on CREATE: one op per label into a non-empty label map, or one
# adding the map (or the metadata holding it) where there is none.
default patch := []

# The guard once, then the form: one else chain tests each condition once,
# where three rules each repeated the guard on every request.
patch := ops if {
	count(defaults) > 0
	patching
	ops := patch_ops
}

patch_ops := [op |
	some k in sort(object.keys(defaults))
	op := {"op": "add", "path": pointer(array.concat(lib.labels_path, [k])), "value": defaults[k]}
] if {
	count(labels) > 0
} else := [{"op": "add", "path": pointer(lib.labels_path), "value": defaults}] if {
	is_object(object.get(lib.resource, parent(lib.labels_path), null))
} else := [{"op": "add", "path": pointer(meta), "value": {"labels": defaults}}] if {
	meta := parent(lib.labels_path)
	is_object(object.get(lib.resource, parent(meta), null))
}

pointer(path) := concat("", [concat("/", ["", lib.json_pointer(p)]) | some p in path])
