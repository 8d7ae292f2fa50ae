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

family := "requiredLabels"

cfg := lib.rule_config(family)

checked if {
	lib.applies(family)
	lib.kind in lib.pod_kinds
	lib.operation in {"CREATE", "UPDATE"}
	not lib.being_deleted
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

field(key) := sprintf("%s[%s]", [concat(".", lib.labels_path), key])

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
patching if {
	lib.operation == "CREATE"
	lib.action(family) != "dryrun"
	placeable
	not data.podwall.lib.selectors.defaults_unselect
}

# placeable: the labels' map, or the metadata holding it, or the object
# holding that, exists (the patch adds the innermost one missing).
placeable if is_object(object.get(lib.resource, parent(lib.labels_path), null))

placeable if is_object(object.get(lib.resource, parent(parent(lib.labels_path)), null))

parent(path) := array.slice(path, 0, count(path) - 1)

# problems(labels) are the violations of a label set, keyed by code and field.
problems(ls) := {[code, field(req.key), msg] |
	some req in required
	not ls[req.key]
	not defaulted(req)
	code := "missing-label"
	msg := sprintf("%s %s: %s %q is required", [lib.kind, lib.display, what, req.key])
} | {[code, field(req.key), msg] |
	some [req, vs] in restricted
	value := ls[req.key]
	not value in vs
	code := "label-value-not-allowed"
	msg := sprintf("%s %s: %s %s=%q is not allowed: want one of %s", [lib.kind, lib.display, what, req.key, value, concat(", ", vs)])
}

defaulted(req) if {
	patching
	is_string(req["default"])
}

# found are this request's problems; old_found the old object's (UPDATE).
found := problems(labels) if checked

old_found := problems(lib.labels_at(input.request.oldObject, lib.labels_path)) if {
	lib.operation == "UPDATE"
	is_object(input.request.oldObject)
} else := set()

tolerated(code, f) if {
	lib.operation == "UPDATE"
	some p in old_found
	p[0] == code
	p[1] == f
}

violation contains v if {
	some [code, f, msg] in found
	v := judged(code, f, msg)
}

# judged is a violation, or, when the old object had it too and the family
# denies, a warning saying it is tolerated.
judged(code, f, msg) := {"msg": m, "code": code, "field": f, "action": "warn"} if {
	tolerated(code, f)
	lib.action(family) == "deny"
	m := concat(" ", [msg, "(tolerated: the object was already like this before this update)"])
} else := {"msg": msg, "code": code, "field": f}

# dryrun: what the patch would have set.
violation contains {"msg": msg, "code": "missing-label", "field": field(k)} if {
	lib.action(family) == "dryrun" # first: depends on the configuration alone
	checked
	lib.operation == "CREATE"
	some k, v in defaults
	msg := sprintf("%s %s: would set missing %s %s=%q (the configured default)", [lib.kind, lib.display, what, k, v])
}

# defaults are the labels a CREATE lacks that have a default.
defaults := {req.key: d |
	checked
	lib.operation == "CREATE"
	some req in with_default
	not labels[req.key]
	d := req["default"]
}

# note is the admission warning that says what the patch set.
note := sprintf("requiredLabels: set missing %s %s (the configured default) on %s %s", [
	what,
	concat(", ", [sprintf("%s=%q", [k, defaults[k]]) | some k in sort(object.keys(defaults))]),
	lib.kind, lib.display,
]) if {
	count(patch) > 0
}

# patch is a JSON patch (RFC 6902) adding the missing labels that have
# defaults, on CREATE: one op per label into a non-empty label map, or one
# adding the map (or the metadata holding it) where there is none.
default patch := []

patch := [op |
	some k in sort(object.keys(defaults))
	op := {"op": "add", "path": pointer(array.concat(lib.labels_path, [k])), "value": defaults[k]}
] if {
	count(defaults) > 0
	patching
	count(labels) > 0
}

patch := [{"op": "add", "path": pointer(lib.labels_path), "value": defaults}] if {
	count(defaults) > 0
	patching
	count(labels) == 0
	is_object(object.get(lib.resource, array.slice(lib.labels_path, 0, count(lib.labels_path) - 1), null))
}

patch := [{"op": "add", "path": pointer(meta), "value": {"labels": defaults}}] if {
	count(defaults) > 0
	patching
	count(labels) == 0
	meta := array.slice(lib.labels_path, 0, count(lib.labels_path) - 1)
	not is_object(object.get(lib.resource, meta, null))
	is_object(object.get(lib.resource, array.slice(meta, 0, count(meta) - 1), null))
}

pointer(path) := concat("", [concat("/", ["", lib.json_pointer(p)]) | some p in path])
