package agent

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/podwall/podwall/enforcer"
)

// metrics are the agent's Prometheus collectors, all named
// podwall_enforcer_*.
type metrics struct {
	syncDuration    *prometheus.HistogramVec // mode: full, incremental
	compileDuration prometheus.Histogram
	changeLatency   prometheus.Histogram
	syncs           *prometheus.CounterVec // mode
	syncErrors      *prometheus.CounterVec // stage: compile, apply, conntrack
	lastSuccess     prometheus.Gauge

	localPods    prometheus.Gauge
	isolatedPods prometheus.Gauge
	chains       prometheus.Gauge
	rules        prometheus.Gauge
	elements     prometheus.Gauge
	conflicts    prometheus.Gauge
	conntrackDel prometheus.Counter

	rejectedPolicies prometheus.Gauge
	rejectedObjects  *prometheus.GaugeVec   // kind: Pod, Node
	sourceErrors     *prometheus.CounterVec // source
	sourceSynced     *prometheus.GaugeVec   // source
}

// durationBuckets run from 1ms to about 16s.
var durationBuckets = prometheus.ExponentialBuckets(0.001, 2, 15)

func newMetrics() *metrics {
	const ns, sub = "podwall", "enforcer"
	return &metrics{
		syncDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "sync_duration_seconds",
			Help:    "Time one sync took: compiling the local pods' rules, applying them and cutting conntrack entries.",
			Buckets: durationBuckets,
		}, []string{"mode"}),
		compileDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "compile_duration_seconds",
			Help:    "Time enforcer.Compile took in a sync.",
			Buckets: durationBuckets,
		}),
		changeLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "change_to_kernel_seconds",
			Help:    "Time from the first change a sync took in (as a source fed it) to the kernel holding the result, debounce included.",
			Buckets: durationBuckets,
		}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "syncs_total",
			Help: "Successful syncs, by mode (full: the table replaced whole; incremental: only changes sent).",
		}, []string{"mode"}),
		syncErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "sync_errors_total",
			Help: "Failed syncs, by stage (compile, apply, conntrack).",
		}, []string{"stage"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "last_sync_success_timestamp_seconds",
			Help: "Unix time of the last successful sync.",
		}),
		localPods: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "local_pods",
			Help: "Local pods with an address in the ruleset the kernel holds.",
		}),
		isolatedPods: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "isolated_pods",
			Help: "Local pods that policies isolate in at least one direction.",
		}),
		chains: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "chains",
			Help: "Per-pod chains (one per local pod and isolated direction) in the ruleset the kernel holds.",
		}),
		rules: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "rules",
			Help: "Rules in the per-pod chains of the ruleset the kernel holds.",
		}),
		elements: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "set_elements",
			Help: "Elements of the per-pod interval sets and the dispatch verdict maps in the ruleset the kernel holds (an interval counts once).",
		}),
		conflicts: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "address_conflicts",
			Help: "Addresses claimed by more than one local pod with rules.",
		}),
		conntrackDel: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "conntrack_deleted_total",
			Help: "Conntrack entries deleted because a change denied their flow.",
		}),
		rejectedPolicies: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "rejected_policies",
			Help: "NetworkPolicies whose latest version policylib rejected; each is left out (or its previous valid version kept).",
		}),
		rejectedObjects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "rejected_objects",
			Help: "Pods and Nodes whose latest version policylib rejected (an invalid address).",
		}, []string{"kind"}),
		sourceErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "source_errors_total",
			Help: "Errors a source reported (a manifest that does not load, a failed watch); the agent keeps its last good state.",
		}, []string{"source"}),
		sourceSynced: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "source_synced",
			Help: "1 once a source has fed its initial state.",
		}, []string{"source"}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		m.syncDuration, m.compileDuration, m.changeLatency, m.syncs, m.syncErrors, m.lastSuccess,
		m.localPods, m.isolatedPods, m.chains, m.rules, m.elements, m.conflicts, m.conntrackDel,
		m.rejectedPolicies, m.rejectedObjects, m.sourceErrors, m.sourceSynced,
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	if r == nil {
		return nil
	}
	for _, c := range m.collectors() {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// RulesetSize counts what a ruleset puts in the kernel.
type RulesetSize = enforcer.Size

// SizeOf counts what rs puts in the kernel (enforcer.Ruleset.Size).
func SizeOf(rs *enforcer.Ruleset) RulesetSize { return rs.Size() }

func (m *metrics) observeRuleset(s RulesetSize) {
	m.localPods.Set(float64(s.Pods))
	m.isolatedPods.Set(float64(s.Isolated))
	m.chains.Set(float64(s.Chains))
	m.rules.Set(float64(s.Rules))
	m.elements.Set(float64(s.Elements))
	m.conflicts.Set(float64(s.Conflicts))
}
