# METADATA
# title: podwall admission
# description: |
#   The entry point: input is an AdmissionReview (input.request), data is the
#   AdmissionConfiguration at data.podwall.config and the cluster state at
#   data.kubernetes (kube-mgmt's layout). Each rule family's violations go to
#   deny, warn or dryrun according to its enforcementAction; patch is the JSON
#   patch the mutating webhook applies; review is a complete AdmissionReview
#   response for running the bundle as the webhook itself.
package podwall.admission

import data.podwall.admission.default_deny
import data.podwall.admission.netpol_hygiene
import data.podwall.admission.protected_access
import data.podwall.admission.required_labels
import data.podwall.lib

# violations are every family's findings, each with its family (the
# configuration key), code, field, message and action: the family's
# enforcementAction unless the finding carries its own (a tolerated
# violation or a lint warning is a warning). For audit, and for comparing
# with the Go rules.
#
# Each rule first checks that its family is configured at all: a family
# that is not has no violations, and most requests concern one or two
# families, so the others cost one lookup instead of an evaluation of
# their rules.
# requiredLabels, on every Pod and workload request's path, gives its
# findings in this form already (family and action included), so they are
# taken as they are.
violations contains v if {
	"requiredLabels" in lib.families
	some v in required_labels.violation
}

violations contains with_family(v, "defaultDeny") if {
	"defaultDeny" in lib.families
	some v in default_deny.violation
}

violations contains with_family(v, "networkPolicyHygiene") if {
	"networkPolicyHygiene" in lib.families
	some v in netpol_hygiene.violation
}

violations contains with_family(v, "protectedAccess") if {
	"protectedAccess" in lib.families
	some v in protected_access.violation
}

with_family(v, family) := {
	"rule": family,
	"code": object.get(v, "code", ""),
	"field": object.get(v, "field", ""),
	"msg": v.msg,
	"action": object.get(v, "action", lib.action(family)),
}

# deny, warn and dryrun are the violations by action, each with its family
# (rule), message, code and field (the code and field may be "": a rule
# written for a bundle of one's own need not give them). The webhook turns
# a deny into a status cause "rule/code" for that field, as for the Go rules.
deny contains {"rule": v.rule, "msg": v.msg, "code": v.code, "field": v.field} if {
	some v in violations
	v.action == "deny"
}

warn contains {"rule": v.rule, "msg": v.msg, "code": v.code, "field": v.field} if {
	some v in violations
	v.action == "warn"
}

# The note about what the patch changes, or why it changes nothing, is a
# warning too (code defaults-note: the mutating webhook's, not a finding).
warn contains {"rule": "requiredLabels", "msg": required_labels.note, "code": "defaults-note", "field": ""} if "requiredLabels" in lib.families

# dryrun holds what would have been denied or warned about, for audit.
dryrun contains {"rule": v.rule, "msg": v.msg, "code": v.code, "field": v.field} if {
	some v in violations
	v.action == "dryrun"
}

# patch adds default labels (requiredLabels) on CREATE, unless that family
# is dryrun.
default patch := []

patch := required_labels.patch if "requiredLabels" in lib.families

default allowed := false

allowed if count(deny) == 0

review := {
	"apiVersion": "admission.k8s.io/v1",
	"kind": "AdmissionReview",
	"response": object.union_n([
		{"uid": object.get(input, ["request", "uid"], ""), "allowed": allowed},
		status,
		warnings,
		patch_fields,
	]),
}

messages(s) := sort([sprintf("[%s] %s", [x.rule, x.msg]) | some x in s])

status := {"status": {"code": 403, "reason": "Forbidden", "message": concat("; ", messages(deny))}} if {
	not allowed
} else := {}

warnings := {"warnings": messages(warn)} if {
	count(warn) > 0
} else := {}

patch_fields := {"patchType": "JSONPatch", "patch": base64.encode(json.marshal(patch))} if {
	allowed
	count(patch) > 0
} else := {}
