// Package agent keeps a node's nftables ruleset in step with the cluster: it
// feeds pods, namespaces and policies into policylib, compiles the local
// pods' rules and applies them.
//
// An [Agent] owns one [policylib.Engine]. [Source]s feed it changes through
// a [Sink]: [KubeSource] from the Kubernetes API with informers,
// [ManifestSource] from files and directories of manifests it watches.
//
// A change marks stale the local pods (those whose spec.nodeName is
// [Options.NodeName]) whose rules it may alter: the pods of a changed
// policy's namespace, and the pods isolated by a policy that the engine
// says a changed pod or namespace can affect
// ([policylib.Engine.PoliciesDependingOnPod]). A change that finds the
// agent idle is synced at once; changes arriving during a sync or just
// after it are coalesced ([Options.Debounce], bounded by
// [Options.MaxDelay]). A sync
// recompiles the stale pods' rules with an [enforcer.Compiler], keeping
// the others', and installs the result with an [enforcer.Applier], in one
// atomic, diff-based batch, so a change costs in proportion to the local
// pods it touches. Every [Options.ResyncPeriod] the agent recompiles every
// pod and replaces the table whole, which repairs a table someone else
// changed.
//
// # Never fail open
//
// The agent touches the kernel only once every source has fed its initial
// state, so a half-listed cluster never becomes a ruleset. A policy the
// library rejects is reported (log and metric) and left out, without
// disturbing the others; an update that makes a valid policy invalid leaves
// the previous version in force. A manifest directory that stops loading
// (bad YAML, a duplicated object) is reported and its last good state kept.
// A failed sync is retried with backoff, and until one succeeds the kernel
// holds the last ruleset applied; when the agent stops, the table stays, so
// a restart has no window without rules.
//
// # Observing it
//
// The agent logs through logr (every sync with its figures, every failure
// with its reason) and keeps Prometheus metrics, registered on
// [Options.Registerer]: sync duration, time from a change to the kernel,
// chains, rules and set elements, sync errors, rejected policies and source
// errors. [Agent.Healthy] and [Agent.Ready] back liveness and readiness
// probes.
package agent
