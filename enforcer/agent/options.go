package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/podwall/podwall/enforcer"
	"github.com/podwall/podwall/policylib"
)

// Defaults of Options.
const (
	DefaultDebounce        = 10 * time.Millisecond
	DefaultMaxDelay        = 100 * time.Millisecond
	DefaultResyncPeriod    = 5 * time.Minute
	DefaultRetryMin        = 500 * time.Millisecond
	DefaultRetryMax        = 30 * time.Second
	DefaultLivenessTimeout = 2 * time.Minute
)

// Applier installs rulesets in the kernel. *enforcer.Applier is the real
// one; tests and dry runs use others.
type Applier interface {
	// Apply makes the kernel hold rs, in one transaction.
	Apply(ctx context.Context, rs *enforcer.Ruleset) (enforcer.Stats, error)
	// Forget makes the next Apply replace the table whole.
	Forget()
}

// Options configure an Agent. Every zero field means its default; only
// NodeName is required.
type Options struct {
	// NodeName is the node the agent enforces for: pods whose
	// spec.nodeName equals it are local. Required.
	NodeName string

	// Table is the nftables table (family inet) the agent owns. Default
	// enforcer.DefaultTable ("podwall").
	Table string

	// AllowHostToLocalPods says whether traffic the node originates reaches
	// its local pods whatever their ingress rules say (kubelet probes need
	// it). nil means true.
	AllowHostToLocalPods *bool

	// NodeAddrs are addresses of the node besides the InternalIP and
	// ExternalIP of its Node object, which the agent adds itself (a bridge
	// gateway address, say). They tell the enforcer which flows the host
	// originates. Default none.
	NodeAddrs []netip.Addr

	// Debounce is the quiet period that makes changes a burst. A change
	// that comes when no sync has ended for Debounce is synced at once;
	// changes that come during a sync or within Debounce of its end wait
	// until none has come for Debounce, and are synced together, so a
	// burst costs two syncs (its first change's and the rest's). Default
	// 10ms.
	Debounce time.Duration

	// MaxDelay bounds how long a change of a burst waits when changes keep
	// coming. Default 100ms; at least Debounce.
	MaxDelay time.Duration

	// ResyncPeriod is how often the agent replaces the table whole, which
	// repairs a table someone else changed. Default 5m; negative disables.
	ResyncPeriod time.Duration

	// RetryMin and RetryMax bound the backoff after a failed sync, which
	// doubles from RetryMin to RetryMax. Defaults 500ms and 30s.
	RetryMin, RetryMax time.Duration

	// LivenessTimeout is how long one sync may run before Healthy reports
	// the agent wedged. Default 2m.
	LivenessTimeout time.Duration

	// Applier installs the rulesets. Default enforcer.NewApplier(), which
	// works in the caller's network namespace.
	Applier Applier

	// Logger receives the agent's logs. Default logr.Discard().
	Logger logr.Logger

	// Registerer is where the agent's metrics are registered. Default
	// none: metrics are kept but not exported.
	Registerer prometheus.Registerer

	// EngineOptions configure the policylib engine. Default none.
	EngineOptions []policylib.Option

	// OnSync, when set, is called after every sync attempt, from the
	// agent's sync goroutine; it must not block for long.
	OnSync func(SyncReport)
}

func (o Options) withDefaults() Options {
	if o.Table == "" {
		o.Table = enforcer.DefaultTable
	}
	if o.AllowHostToLocalPods == nil {
		o.AllowHostToLocalPods = enforcer.Bool(true)
	}
	if o.Debounce == 0 {
		o.Debounce = DefaultDebounce
	}
	if o.MaxDelay == 0 {
		o.MaxDelay = max(DefaultMaxDelay, o.Debounce)
	}
	if o.ResyncPeriod == 0 {
		o.ResyncPeriod = DefaultResyncPeriod
	}
	if o.RetryMin == 0 {
		o.RetryMin = DefaultRetryMin
	}
	if o.RetryMax == 0 {
		o.RetryMax = max(DefaultRetryMax, o.RetryMin)
	}
	if o.LivenessTimeout == 0 {
		o.LivenessTimeout = DefaultLivenessTimeout
	}
	if o.Logger.GetSink() == nil {
		o.Logger = logr.Discard()
	}
	return o
}

// enforcerOptions are the compile options for the node addresses given.
func (o Options) enforcerOptions(nodeAddrs []netip.Addr) enforcer.Options {
	return enforcer.Options{
		Table:                o.Table,
		AllowHostToLocalPods: o.AllowHostToLocalPods,
		NodeAddrs:            nodeAddrs,
	}
}

// Validate reports every problem with o (after defaults), joined.
func (o Options) Validate() error {
	o = o.withDefaults()
	var errs []error
	if o.NodeName == "" {
		errs = append(errs, errors.New("NodeName: required (the name of the node the agent runs on)"))
	}
	if err := o.enforcerOptions(o.NodeAddrs).Validate(); err != nil {
		errs = append(errs, err)
	}
	for _, a := range o.NodeAddrs {
		if !a.IsValid() {
			errs = append(errs, errors.New("NodeAddrs: invalid address"))
		}
	}
	if o.Debounce < 0 {
		errs = append(errs, fmt.Errorf("Debounce %v: must not be negative", o.Debounce))
	}
	if o.MaxDelay < o.Debounce {
		errs = append(errs, fmt.Errorf("MaxDelay %v: must be at least Debounce (%v)", o.MaxDelay, o.Debounce))
	}
	if o.RetryMin <= 0 || o.RetryMax < o.RetryMin {
		errs = append(errs, fmt.Errorf("RetryMin %v, RetryMax %v: want 0 < RetryMin <= RetryMax", o.RetryMin, o.RetryMax))
	}
	if o.LivenessTimeout < 0 {
		errs = append(errs, fmt.Errorf("LivenessTimeout %v: must not be negative", o.LivenessTimeout))
	}
	return errors.Join(errs...)
}
