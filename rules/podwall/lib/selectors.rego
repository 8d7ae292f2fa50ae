# METADATA
# title: podwall rule selectors
# description: |
#   The label-selector parts of each family's match (namespaceSelector on the
#   namespace's labels, objectSelector on the object's labels, new or old),
#   matched by policylib through podwall.selector_matches. Needs the podwall
#   built-ins; podwall.lib reads unmatched without importing this package,
#   so the families that need no other built-in still compile without it.
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

object_selected(sel) if {
	o := input.request.oldObject
	is_object(o)
	podwall.selector_matches(sel, lib.labels_of(o))
}

# namespace_matches(name, ns): every namespace condition of the family's
# match holds for ns (exemptNamespaces, namespaces, excludedNamespaces,
# namespaceSelector). For defaultDeny these are the protected namespaces.
namespace_matches(name, ns) if {
	lib.enabled(name)
	lib.namespace_allowed(name, ns)
	namespace_selected(name, ns)
}
