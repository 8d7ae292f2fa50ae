# METADATA
# title: podwall admission helpers
# description: |
#   Reading the AdmissionReview (input.request) and the AdmissionConfiguration
#   (data.podwall.config). Uses no podwall built-in, so a stock OPA compiles it.
package podwall.lib

# Namespaces no rule checks when the configuration's exemptNamespaces is
# omitted (an explicit empty list exempts none).
default_exempt_namespaces := ["kube-system", "podwall-system"]

# The AdmissionConfiguration (apiVersion podwall.io/v1alpha1), as JSON.
default config := {}

config := data.podwall.config

# rule_config(name) is the configuration of one rule family
# (requiredLabels, defaultDeny, networkPolicyHygiene, protectedAccess);
# undefined when the family is not configured, which disables it.
rule_config(name) := c if {
	c := config.rules[name]
	is_object(c)
}

# families are the configured families. A set rather than a test per
# name: it depends on the configuration alone, so the webhook's evaluator
# computes it once per configuration (a function that is undefined, as
# enabled is for a family that is off, would be evaluated on every call).
families contains name if {
	some name, c in config.rules
	is_object(c)
}

enabled(name) if name in families

# action(name) is the family's enforcementAction: deny (the default and what
# an unknown value means: fail closed), warn or dryrun.
action(name) := a if {
	a := rule_config(name).enforcementAction
	a in {"deny", "warn", "dryrun"}
} else := "deny"

exempt_namespaces := ns if {
	ns := config.exemptNamespaces
	is_array(ns)
} else := default_exempt_namespaces

pod_kinds := ["Pod", "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "CronJob"]

# default_kinds are the kinds each family checks when match.kinds is omitted.
default_kinds := {
	"requiredLabels": pod_kinds,
	"defaultDeny": array.concat(pod_kinds, ["NetworkPolicy"]),
	"networkPolicyHygiene": ["NetworkPolicy"],
	"protectedAccess": ["NetworkPolicy"],
}

kinds(name) := ks if {
	ks := match(name).kinds
	is_array(ks)
} else := object.get(default_kinds, name, [])

# namespace_allowed(name, ns): ns is not exempt, not excluded by the
# family's match.excludedNamespaces, and among match.namespaces when given.
namespace_allowed(name, ns) if {
	not ns in exempt_namespaces
	not ns in list(match(name), "excludedNamespaces")
	only := list(match(name), "namespaces")
	only_allows(only, ns)
}

# match(name) is the family's match, or {}. (A negated call must not take
# a possibly undefined argument: it would fail rather than succeed.)
match(name) := m if {
	m := rule_config(name).match
	is_object(m)
} else := {}

only_allows(only, _) if count(only) == 0

only_allows(only, ns) if ns in only

# list(obj, key) is obj[key] when it is an array, else [].
list(obj, key) := l if {
	l := obj[key]
	is_array(l)
} else := []

# applies(name): the family is configured and its match holds for this
# request: kind, namespace lists, and (podwall.lib.selectors, which needs
# the podwall built-ins) namespaceSelector and objectSelector. Without that
# module the selectors are ignored: the family applies more widely, never
# less.
applies(name) if {
	applicable(name, kind, namespace, object.get(input, ["request", "subResource"], ""))
	not unmatched_selector(name)
}

# applicable(name, kind, ns, sub): the family is configured, sub names no
# subresource, and the family checks kind in namespace ns. It reads no
# input and takes scalars, so the webhook's evaluator keeps its answers
# across requests: a request of a kind and namespace seen before pays one
# lookup for all of it.
applicable(name, k, ns, sub) if {
	enabled(name)
	not named_subresource(sub)
	k in kinds(name)
	namespace_allowed(name, ns)
}

# unmatched_selector(name): the family's namespaceSelector or objectSelector
# does not match the request. Only a family with one of them can be in
# podwall.lib.selectors.unmatched, and selective, which depends on the
# configuration alone, is computed once per configuration by the webhook's
# evaluator, so most families skip the selectors altogether.
unmatched_selector(name) if {
	name in selective
	data.podwall.lib.selectors.unmatched[name]
}

# selective are the families whose match has a namespaceSelector or an
# objectSelector.
selective contains name if {
	some name in families
	is_object(match(name).namespaceSelector)
}

selective contains name if {
	some name in families
	is_object(match(name).objectSelector)
}

subresource if named_subresource(input.request.subResource)

named_subresource(s) if {
	is_string(s)
	s != ""
}

operation := input.request.operation

# webhook is which of podwall's two webhooks the evaluation is for
# (input.podwall.webhook: "mutating" or "validating", set by podwall's
# webhook and CLI), or "" when one evaluation answers for both, as when OPA
# serves the bundle on its own.
webhook := object.get(input, ["podwall", "webhook"], "")

# kind is the request's kind when it is one the rules check, in its API
# group; a kind of another group that shares the name (Calico's
# crd.projectcalico.org NetworkPolicy, say) is none of them: "".
kind := k if {
	k := input.request.kind.kind
	object.get(input.request.kind, "group", "") == kind_groups[k]
} else := ""

kind_groups := {
	"Pod": "",
	"Deployment": "apps",
	"ReplicaSet": "apps",
	"StatefulSet": "apps",
	"DaemonSet": "apps",
	"Job": "batch",
	"CronJob": "batch",
	"NetworkPolicy": "networking.k8s.io",
}

# resource is the object the request is about: the new object, or the old
# one when there is no new one (DELETE).
resource := o if {
	o := input.request.object
	is_object(o)
} else := o if {
	o := input.request.oldObject
	is_object(o)
} else := {}

# namespace is the request's namespace, else the object's, else default.
namespace := ns if {
	ns := input.request.namespace
	is_string(ns)
	ns != ""
} else := ns if {
	ns := input.request.object.metadata.namespace
	is_string(ns)
	ns != ""
} else := ns if {
	ns := input.request.oldObject.metadata.namespace
	is_string(ns)
	ns != ""
} else := "default"

# name is the object's name, or its generateName prefix before the API
# server has picked one.
name := n if {
	n := resource.metadata.name
	is_string(n)
	n != ""
} else := n if {
	n := input.request.name
	is_string(n)
	n != ""
} else := n if {
	g := resource.metadata.generateName
	is_string(g)
	n := concat("", [g, "*"])
} else := "(unnamed)"

# display is "namespace/name" for messages.
display := concat("/", [namespace, name])

# being_deleted: the object has a deletionTimestamp (finalizers at work).
being_deleted if resource.metadata.deletionTimestamp

# labels_path is where the labels requiredLabels checks live in an object
# of a pod kind: the pod's own, or its template's.
labels_path := ["metadata", "labels"] if {
	kind == "Pod"
} else := ["spec", "jobTemplate", "spec", "template", "metadata", "labels"] if {
	kind == "CronJob"
} else := ["spec", "template", "metadata", "labels"]

labels_of(obj) := l if {
	l := obj.metadata.labels
	is_object(l)
} else := {}

# labels_at(obj, path) is the labels object at path, or {}.
labels_at(obj, path) := l if {
	l := object.get(obj, path, {})
	is_object(l)
} else := {}

# json_pointer(token) escapes one JSON pointer token (RFC 6901).
json_pointer(token) := replace(replace(token, "~", "~0"), "/", "~1")
