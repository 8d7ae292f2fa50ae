package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podwall/podwall/enforcer"
	"github.com/podwall/podwall/enforcer/agent"
)

func init() { register(newEnforceCmd) }

// nodeNameEnv is where the DaemonSet puts the node's name (downward API).
const nodeNameEnv = "NODE_NAME"

func newEnforceCmd(e *env) *cobra.Command {
	var (
		node, kubeconfig, table, metricsAddr string
		manifests                            []string
		nodeAddrs                            []string
		allowHost, dryRun, cleanup           bool
		debounce, maxDelay, resync           time.Duration
		logFormat                            string
		verbosity                            int
	)
	cmd := &cobra.Command{
		Use:   "enforce --node NAME [--manifests PATH]...",
		Short: "Enforce NetworkPolicy on this node with nftables (the node agent)",
		Long: `enforce is podwall's node agent: it keeps the nftables table (family inet,
--table) of this node in step with the cluster's pods, namespaces, nodes and
NetworkPolicies, enforcing the policies of the pods whose spec.nodeName is
--node (or $NODE_NAME).

The cluster comes from the Kubernetes API (--kubeconfig, $KUBECONFIG, or the
in-cluster service account), or, with --manifests, from manifest files and
directories that are watched and reloaded when they change. A manifest that
stops loading is reported and the last good state stays in force. A policy
that policylib rejects is reported; its previous valid version stays in force,
and when it has none the pods it selects are isolated with nothing allowed: an
invalid policy never opens what it was written to close.

A change is applied at once when none came in the last --debounce; changes
that keep coming are gathered until --debounce passes without one (at most
--max-delay). Each sync is one atomic nftables transaction that sends only
what changed; every --resync the table is
replaced whole. Metrics (Prometheus), /healthz and /readyz are served on
--metrics-addr. On SIGTERM the table stays in place, so a restarted agent
takes over with no window without rules, unless --cleanup-on-exit.

With --dry-run, enforce prints the nft script it would apply (the table
replaced whole) and exits: with --manifests it needs neither root nor a
cluster. A policy policylib rejects fails the dry run, named with its fields.

Exit status: 0 on a clean stop (SIGTERM, interrupt) or a clean dry run, 2 on
bad usage, a rejected policy in a dry run, or a failure.`,
		Example: `  podwall enforce --dry-run --node k8s-node2 --manifests examples/seed/cluster --manifests examples/seed/original/networkpolicy.yaml
  NODE_NAME=worker-1 podwall enforce --metrics-addr :9808
  podwall enforce --node worker-1 --manifests /etc/podwall/cluster`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if node == "" {
				node = os.Getenv(nodeNameEnv)
			}
			if node == "" {
				return &usageError{cmd: cmd.CommandPath(), err: errors.New("--node: required (or set " + nodeNameEnv + ")")}
			}
			if len(manifests) > 0 && cmd.Flags().Changed("kubeconfig") {
				return &usageError{cmd: cmd.CommandPath(), err: errors.New("--manifests and --kubeconfig: give one source of the cluster, not both")}
			}
			var addrs []netip.Addr
			for _, s := range nodeAddrs {
				a, err := netip.ParseAddr(s)
				if err != nil {
					return &usageError{cmd: cmd.CommandPath(), err: flagError("--node-addr "+s, err)}
				}
				addrs = append(addrs, a)
			}
			log, err := newLogger(e.stderr, logFormat, verbosity)
			if err != nil {
				return &usageError{cmd: cmd.CommandPath(), err: err}
			}
			opts := agent.Options{
				NodeName:             node,
				Table:                table,
				AllowHostToLocalPods: enforcer.Bool(allowHost),
				NodeAddrs:            addrs,
				Debounce:             debounce,
				MaxDelay:             maxDelay,
				ResyncPeriod:         resync,
				Logger:               log,
			}
			var src agent.Source
			if len(manifests) > 0 {
				src = &agent.ManifestSource{Paths: manifests}
			} else {
				client, err := kubeClient(kubeconfig)
				if err != nil {
					return err
				}
				src = &agent.KubeSource{Client: client}
			}
			if dryRun {
				return enforceDryRun(cmd.Context(), e.out, opts, src)
			}
			return runEnforce(cmd.Context(), e, opts, src, metricsAddr, cleanup)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&node, "node", "", "name of this node: pods with this spec.nodeName are enforced (default $"+nodeNameEnv+")")
	fl.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default $KUBECONFIG, else the in-cluster service account)")
	fl.StringArrayVar(&manifests, "manifests", nil, "read the cluster from this manifest file or directory instead of the API, and watch it; repeatable")
	fl.StringVar(&table, "table", enforcer.DefaultTable, "nftables table (family inet) podwall owns")
	fl.BoolVar(&allowHost, "allow-host-to-local-pods", true, "let traffic the node originates (kubelet probes) reach local pods whatever their ingress rules")
	fl.StringArrayVar(&nodeAddrs, "node-addr", nil, "an address of this node besides its Node object's (a bridge gateway, say); repeatable")
	fl.StringVar(&metricsAddr, "metrics-addr", ":9808", "address serving /metrics, /healthz and /readyz; empty disables")
	fl.BoolVar(&dryRun, "dry-run", false, "print the nft script that would be applied and exit")
	fl.BoolVar(&cleanup, "cleanup-on-exit", false, "delete the table when stopping (default: leave it, so a restart has no window)")
	fl.DurationVar(&debounce, "debounce", agent.DefaultDebounce, "a change after this long without one is synced at once; closer changes are gathered until this long passes without one")
	fl.DurationVar(&maxDelay, "max-delay", agent.DefaultMaxDelay, "the longest a change waits while changes keep coming")
	fl.DurationVar(&resync, "resync", agent.DefaultResyncPeriod, "period of full table replacements that repair drift; negative disables")
	fl.StringVar(&logFormat, "log-format", "text", "log format on stderr: text or json")
	fl.IntVarP(&verbosity, "verbosity", "v", 0, "log verbosity (1: also syncs that changed nothing here)")
	return cmd
}

// kubeClient connects as kubectl would: an explicit --kubeconfig, else
// $KUBECONFIG or the default file, else the in-cluster service account.
func kubeClient(kubeconfig string) (kubernetes.Interface, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes client configuration: %w", err)
	}
	cfg.UserAgent = "podwall-enforcer"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return client, nil
}

// newLogger logs to w with slog, as text or JSON; verbosity v enables
// logr's V(1..v) levels.
func newLogger(w io.Writer, format string, v int) (logr.Logger, error) {
	hopts := &slog.HandlerOptions{Level: slog.Level(-v)}
	var h slog.Handler
	switch format {
	case "text":
		h = slog.NewTextHandler(w, hopts)
	case "json":
		h = slog.NewJSONHandler(w, hopts)
	default:
		return logr.Logger{}, fmt.Errorf("--log-format %q: want text or json", format)
	}
	return logr.FromSlogHandler(h), nil
}

// dryRunApplier applies nothing.
type dryRunApplier struct{}

func (dryRunApplier) Apply(context.Context, *enforcer.Ruleset) (enforcer.Stats, error) {
	return enforcer.Stats{}, nil
}
func (dryRunApplier) Forget() {}

// enforceDryRun feeds the source's initial state and prints the ruleset,
// or fails naming the policies policylib rejects.
func enforceDryRun(ctx context.Context, out io.Writer, opts agent.Options, src agent.Source) error {
	opts.Applier = dryRunApplier{}
	opts.Logger = logr.Discard()
	a, err := agent.New(opts)
	if err != nil {
		return err
	}
	rs, err := a.DryRun(ctx, src)
	if err != nil {
		return err
	}
	// A node the cluster does not know, and that no pod runs on, is most
	// likely a misspelt --node: an empty table would look like an answer.
	if st := a.Status(); !st.NodeKnown && st.LocalPods == 0 {
		return flagError("--node "+opts.NodeName, errors.New("no Node of that name, and no pod on it, in the cluster read"))
	}
	// A rejected policy is bad input: say which and why, print nothing.
	// (The agent itself runs on, isolating their pods with nothing allowed.)
	if rejected := a.Status().Rejected; len(rejected) > 0 {
		keys := slices.SortedFunc(maps.Keys(rejected), func(x, y types.NamespacedName) int {
			return strings.Compare(x.String(), y.String())
		})
		msgs := make([]string, len(keys))
		for i, k := range keys {
			msgs[i] = rejected[k]
		}
		return fmt.Errorf("NetworkPolicies rejected (the agent would isolate their pods with nothing allowed): %s", strings.Join(msgs, "; "))
	}
	_, err = io.WriteString(out, rs.Render())
	return err
}

// runEnforce runs the agent until ctx is done, serving metrics and probes.
func runEnforce(ctx context.Context, e *env, opts agent.Options, src agent.Source, metricsAddr string, cleanup bool) error {
	log := opts.Logger
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	opts.Registerer = reg
	applier := enforcer.NewApplier()
	opts.Applier = applier
	a, err := agent.New(opts)
	if err != nil {
		return err
	}
	var srv *http.Server
	if metricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		mux.HandleFunc("/healthz", probeHandler(a.Healthy))
		mux.HandleFunc("/readyz", probeHandler(a.Ready))
		ln, err := net.Listen("tcp", metricsAddr)
		if err != nil {
			return flagError("--metrics-addr "+metricsAddr, err)
		}
		srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error(err, "metrics server stopped")
			}
		}()
		log.Info("serving metrics and probes", "address", ln.Addr().String())
	}
	log.Info("enforcing", "node", opts.NodeName, "source", src.Name(), "table", opts.Table)
	runErr := a.Run(ctx, src)
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
	}
	if cleanup {
		if err := applier.DeleteTable(opts.Table); err != nil {
			log.Error(err, "deleting the table on exit")
			runErr = errors.Join(runErr, fmt.Errorf("deleting the table: %w", err))
		} else {
			log.Info("table deleted", "table", opts.Table)
		}
	} else {
		log.Info("stopped; the table stays in place", "table", opts.Table)
	}
	return runErr
}

func probeHandler(check func() error) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if err := check(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	}
}
