# METADATA
# title: podwall rule selectors
# description: |
#   The label-selector parts of each family's match (namespaceSelector on the
#   namespace's labels, objectSelector on the object's labels, new or old),
#   matched by policylib through podwall.selector_matches; and whether the
#   requiredLabels defaults would make a workload's selector stop matching
#   its pod template (defaults_unselect). Needs the podwall built-ins;
#   podwall.lib reads unmatched, and requiredLabels defaults_unselect,
#   without importing this package, so the families that need no other
#   built-in still compile without it.
package podwall.lib.selectors

import data.podwall.lib
import data.podwall.lib.cluster

# unmatched are the families whose selectors do not match this request.
unmatched contains name if {
	some name, c in lib.config.rules
	is_object(c)
	not namespace_selected(name, lib.namespace)
}

unmatched contains name if {
	some name, c in lib.config.rules
	is_object(c)
	sel := c.match.objectSelector
	is_object(sel)
	not object_selected(sel)
}

# namespace_selected(name, ns): the family's namespaceSelector, if any,
# matches namespace ns.
namespace_selected(name, ns) if {
	sel := lib.rule_config(name).match.namespaceSelector
	is_object(sel)
	podwall.selector_matches(sel, cluster.namespace_labels(ns))
}

namespace_selected(name, _) if not has_namespace_selector(name)

has_namespace_selector(name) if is_object(lib.rule_config(name).match.namespaceSelector)

object_selected(sel) if {
	o := input.request.object
	is_object(o)
	podwall.selector_matches(sel, lib.labels_of(o))
}

# The old object, or the replicated copy of a NetworkPolicy an UPDATE or
# DELETE came without (cluster.old_object): the API server matches the
# object it holds.
object_selected(sel) if {
	o := cluster.old_object
	is_object(o)
	podwall.selector_matches(sel, lib.labels_of(o))
}

# defaults_unselect: the labels requiredLabels would default (CREATE) make
# the workload's spec.selector, which matches its pod template as sent,
# stop matching it. requiredLabels then sets nothing (the API server would
# refuse the workload) and judges the labels as sent, as the Go rule does.
# Reads data.podwall.admission.required_labels, which reads this without
# importing it.
defaults_unselect if {
	lib.kind != "Pod"
	sel := object.get(lib.resource, workload_selector_path, null)
	is_object(sel)
	valid_selector(sel)
	sent := data.podwall.admission.required_labels.labels
	defaults := data.podwall.admission.required_labels.defaults
	count(defaults) > 0
	podwall.selector_matches(sel, sent)
	not podwall.selector_matches(sel, object.union(sent, defaults))
}

workload_selector_path := ["spec", "jobTemplate", "spec", "selector"] if {
	lib.kind == "CronJob"
} else := ["spec", "selector"]

# valid_selector(sel): policylib accepts the label selector, as lint of a
# policy selecting with it says. podwall.selector_matches would fail the
# evaluation on an invalid one, which the API server refuses anyway (after
# the mutating webhooks); the Go rule then patches regardless.
valid_selector(sel) if {
	findings := podwall.lint({"policies": [{"metadata": {"name": "selector", "namespace": "default"}, "spec": {"podSelector": sel}}]})
	every f in findings {
		f.severity != "error"
	}
}

# namespace_matches(name, ns): every namespace condition of the family's
# match holds for ns (exemptNamespaces, namespaces, excludedNamespaces,
# namespaceSelector). For defaultDeny these are the protected namespaces.
namespace_matches(name, ns) if {
	lib.enabled(name)
	lib.namespace_allowed(name, ns)
	namespace_selected(name, ns)
}
