package server

import (
	"github.com/prometheus/client_golang/prometheus"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Metric label values beyond rule names and enforcement actions.
const (
	labelNone    = "none"    // rule and action of a request no rule objected to
	labelMutate  = "mutate"  // action of a mutating-path decision
	labelInvalid = "invalid" // rule of a request podwall refused to evaluate

	ResultAllowed = "allowed" // admitted
	ResultDenied  = "denied"  // refused by a rule
	ResultPatched = "patched" // admitted with patches (mutating path)
	ResultError   = "error"   // a request podwall could not evaluate (bad input, cache not synced)
)

var (
	// decisions counts admission decisions: one per violation (labelled
	// with its rule and action), or one labelled rule="none",
	// action="none" for a request without any; result is the decision on
	// the whole request.
	decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podwall_admission_decisions_total",
		Help: `Admission decisions. One count per violation, labelled with its rule and enforcement action (deny, warn, dryrun); one count with rule="none" for requests without violations; action="mutate" on the mutating path; rule="invalid" for requests podwall could not evaluate. result is the outcome of the whole request: allowed, denied, patched or error.`,
	}, []string{"rule", "action", "result"})

	configReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podwall_config_reloads_total",
		Help: "Attempts to load a changed configuration file, by result (success, failure). After a failure the previous configuration stays in force.",
	}, []string{"result"})

	configGeneration = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "podwall_config_generation",
		Help: "Number of configurations loaded since the start (1 after the first load); it changes when a new configuration takes effect.",
	})

	bundleReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podwall_bundle_reloads_total",
		Help: "Attempts to load a changed Rego bundle (--bundle), by result (success, failure). After a failure, a bundle that does not compile say, the previous bundle stays in force.",
	}, []string{"result"})

	bundleInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "podwall_bundle_info",
		Help: "The Rego bundle in force: 1 for its revision (the manifest's, else sha256: and a digest of its content). Absent until a rule on the rego engine needs the bundle.",
	}, []string{"revision"})

	kubeSyncErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "podwall_rego_data_errors_total",
		Help: "Cluster objects that could not be written to the Rego rules' data.kubernetes (each is logged); the previous copy of the object stays until its next change.",
	})

	generated = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podwall_defaultdeny_generated_total",
		Help: "Default-deny NetworkPolicies the generator created (result=created), found already present at creation (result=exists), or failed to create (result=error).",
	}, []string{"result"})
)

func init() {
	crmetrics.Registry.MustRegister(decisions, configReloads, configGeneration, bundleReloads, bundleInfo, kubeSyncErrors, generated)
}

// setBundleInfo makes revision the one bundle podwall_bundle_info shows.
func setBundleInfo(revision string) {
	bundleInfo.Reset()
	bundleInfo.WithLabelValues(revision).Set(1)
}
