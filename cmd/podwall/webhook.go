package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/client/config"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/podwall/podwall/webhook/server"
)

func init() { register(newWebhookCmd) }

func newWebhookCmd(e *env) *cobra.Command {
	var (
		opts    server.Options
		kube    kubeFlags
		zapOpts = zap.Options{}
	)
	cmd := &cobra.Command{
		Use:   "webhook --config FILE --cert-dir DIR",
		Short: "Run the admission webhook (validating and mutating) in a cluster",
		Long: `webhook serves podwall's admission rules to the API server: the validating
webhook (at /validate) refuses what a deny rule objects to, naming the rule and
the reason, and returns warnings; the mutating webhook (at /mutate) adds
configured label defaults. deploy/webhook has the manifests.

It serves HTTPS on --port with tls.crt and tls.key from --cert-dir, and serves
a renewed certificate without a restart. It reads Namespaces, Pods, Services
and NetworkPolicies from an informer cache (read-only RBAC). The --config file
is re-read when it changes; an invalid change is logged and ignored, the
previous configuration staying in force.

Each rule's engine (go, the default, or rego) picks its implementation. Rules
on rego run podwall's Rego rules, embedded in the binary, or the OPA bundle
--bundle names (a tarball as "podwall opa build" writes it, or a bundle
directory): the bundle is compiled once and its query prepared once, and
while some rule uses rego the cached cluster is kept in the bundle's
data.kubernetes. A changed bundle is picked up without a restart; one that
does not compile is logged with the compiler's errors and ignored, the
previous bundle staying in force. With rules.defaultDeny.generate the
default-deny generator creates missing default-deny policies (it needs create
on networkpolicies).

/healthz and /readyz (ready once the cache has synced and HTTPS is served) are
on --health-probe-bind-address; Prometheus metrics, podwall_admission_decisions_total
among them, on --metrics-bind-address. Logs are structured (JSON) on standard
error. On SIGTERM the server stops accepting connections and drains the
requests in flight (--shutdown-timeout), then exits 0.

The Kubernetes API is reached with --kubeconfig, else $KUBECONFIG, else the
in-cluster service account, else ~/.kube/config.`,
		Example: `  podwall webhook --config /etc/podwall/config/podwall.yaml --cert-dir /etc/podwall/tls
  podwall webhook --kubeconfig ~/.kube/config --config podwall.yaml --cert-dir ./certs --zap-devel
  podwall webhook --config podwall.yaml --bundle /etc/podwall/bundle/podwall-rules.tar.gz`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.Validate(); err != nil {
				return &usageError{cmd: cmd.CommandPath(), err: errors.New(strings.ReplaceAll(err.Error(), "\n", "; "))}
			}
			log := zap.New(zap.UseFlagOptions(&zapOpts), zap.WriteTo(&lockedWriter{w: e.stderr}))
			logf.SetLogger(log) // controller-runtime's own logs (first call wins)
			opts.Logger = log.WithName("podwall")
			cfg, err := kube.restConfig()
			if err != nil {
				return err
			}
			srv, err := server.New(cfg, opts)
			if err != nil {
				return err
			}
			if err := srv.Start(cmd.Context()); err != nil {
				return fmt.Errorf("webhook server: %w", err)
			}
			return nil // a clean shutdown after SIGTERM or SIGINT
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Host, "host", "", "address to serve HTTPS on (default: every address)")
	f.IntVar(&opts.Port, "port", server.DefaultPort, "HTTPS port of the webhook")
	f.StringVar(&opts.CertDir, "cert-dir", server.DefaultCertDir, "directory with the serving certificate and key (reloaded when they change)")
	f.StringVar(&opts.CertName, "cert-name", server.DefaultCertName, "certificate file name in --cert-dir")
	f.StringVar(&opts.KeyName, "key-name", server.DefaultKeyName, "key file name in --cert-dir")
	f.StringVar(&opts.ConfigFile, "config", server.DefaultConfigFile, "admission configuration file (reloaded when it changes)")
	f.DurationVar(&opts.ConfigCheckInterval, "config-check-interval", server.DefaultConfigCheckInterval, "how often --config and --bundle are re-read besides file-system notifications")
	f.StringVar(&opts.BundlePath, "bundle", "", "OPA bundle (tar.gz or directory) for the rules whose engine is rego, reloaded when it changes (default: the rules built into podwall)")
	f.StringVar(&opts.MetricsAddr, "metrics-bind-address", server.DefaultMetricsAddr, "address of /metrics (0: off)")
	f.StringVar(&opts.HealthAddr, "health-probe-bind-address", server.DefaultHealthAddr, "address of /healthz and /readyz (0: off)")
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = server.DefaultNamespace
	}
	f.StringVar(&opts.Namespace, "namespace", ns, "namespace podwall runs in (default: $POD_NAMESPACE, else podwall-system)")
	f.Int64Var(&opts.MaxRequestBytes, "max-request-bytes", server.DefaultMaxRequestBytes, "largest AdmissionReview accepted; larger requests get HTTP 413")
	f.DurationVar(&opts.ShutdownTimeout, "shutdown-timeout", server.DefaultShutdownTimeout, "how long in-flight requests are drained on shutdown")
	kube.add(cmd)
	gofs := flag.NewFlagSet("zap", flag.ContinueOnError)
	zapOpts.BindFlags(gofs)
	f.AddGoFlagSet(gofs)
	return cmd
}

// kubeFlags are kubectl's --kubeconfig and --context.
type kubeFlags struct {
	kubeconfig, context string
}

func (k *kubeFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, in-cluster, then ~/.kube/config)")
	cmd.Flags().StringVar(&k.context, "context", "", "kubeconfig context to use (default: the current context)")
}

// restConfig loads the API server configuration the way controller-runtime
// does, with --kubeconfig taking precedence.
func (k *kubeFlags) restConfig() (*rest.Config, error) {
	if k.kubeconfig != "" {
		if _, err := os.Stat(k.kubeconfig); err != nil {
			return nil, flagError("--kubeconfig "+k.kubeconfig, unwrapPath(err))
		}
		cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: k.kubeconfig},
			&clientcmd.ConfigOverrides{CurrentContext: k.context}).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig %s: %w", k.kubeconfig, err)
		}
		return cfg, nil
	}
	// client-go passes over KUBECONFIG files that do not exist; when none
	// does outside a cluster, say so rather than fail later on the default
	// configuration. (In a pod, the in-cluster configuration takes over.)
	if env := os.Getenv(clientcmd.RecommendedConfigPathEnvVar); env != "" && os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
		if !slices.ContainsFunc(filepath.SplitList(env), func(p string) bool { _, err := os.Stat(p); return err == nil }) {
			return nil, fmt.Errorf("KUBECONFIG %s: no such file", env)
		}
	}
	cfg, err := ctrlconfig.GetConfigWithContext(k.context)
	if err != nil {
		return nil, fmt.Errorf("no Kubernetes API configuration (give --kubeconfig, set KUBECONFIG, or run in a cluster): %w", err)
	}
	return cfg, nil
}

// lockedWriter serializes writes: the server logs from many goroutines,
// and not every io.Writer is safe for that.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
