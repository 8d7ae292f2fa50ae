package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
)

// Server is `podwall webhook`: a controller-runtime manager running
//
//   - the HTTPS webhook server (controller-runtime's, which reloads a
//     rotated certificate from Options.CertDir without a restart) with the
//     Validator at Options.ValidatePath and the Mutator at
//     Options.MutatePath;
//   - an informer cache of Namespaces, NetworkPolicies, Pods and Services
//     (managed fields stripped), which the rules read through CacheCluster;
//   - the ConfigWatcher following Options.ConfigFile;
//   - RegoRules for the rules whose engine is rego, with the
//     BundleWatcher following Options.BundlePath when it is set; while
//     some rule uses rego the cache's objects are replicated into the
//     bundle's data.kubernetes;
//   - the default-deny Generator (idle unless the configuration asks for
//     it);
//   - /metrics on Options.MetricsAddr (controller-runtime's webhook
//     metrics and podwall_* metrics) and /healthz, /readyz on
//     Options.HealthAddr. /readyz fails until the cache (and, when some
//     rule uses rego, data.kubernetes) has synced and the webhook server
//     is serving.
//
// When Start's context ends, the webhook server stops accepting connections
// and drains the requests in flight, for up to Options.ShutdownTimeout.
type Server struct {
	opts    Options
	log     logr.Logger
	mgr     manager.Manager
	watcher *ConfigWatcher
	cluster *CacheCluster
	webhook webhook.Server
	rego    *RegoRules
	bundles *BundleWatcher // nil without Options.BundlePath
}

// New checks opts, loads the configuration (which must be valid) and
// builds the server; nothing runs until Start. restConfig reaches the API
// server whose objects the rules read.
func New(restConfig *rest.Config, opts Options) (*Server, error) {
	if restConfig == nil {
		return nil, errors.New("no Kubernetes API configuration")
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.WithDefaults()
	var errs []error
	for _, f := range []string{opts.CertName, opts.KeyName} {
		p := filepath.Join(opts.CertDir, f)
		if _, err := os.Stat(p); err != nil {
			errs = append(errs, fmt.Errorf("serving certificate: %s: %w", p, unwrapPathError(err)))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	log := opts.Logger
	if log.GetSink() == nil {
		log = logf.Log.WithName("podwall")
	}

	// The bundle and the configuration first: their problems are reported
	// before anything is contacted.
	ctx := context.Background()
	rego, err := NewRegoRules(ctx, nil, log.WithName("rego"))
	if err != nil {
		return nil, err
	}
	var bundles *BundleWatcher
	if opts.BundlePath != "" {
		if bundles, err = NewBundleWatcher(ctx, opts.BundlePath, opts.ConfigCheckInterval, rego, log.WithName("bundle")); err != nil {
			return nil, err
		}
	}
	watcher, err := NewConfigWatcher(opts.ConfigFile, opts.ConfigCheckInterval, log.WithName("config"), WithRego(rego))
	if err != nil {
		return nil, err
	}
	watcher.namespace = opts.Namespace
	warnExemptions(log, watcher.Evaluator(), opts.Namespace)

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	ws := webhook.NewServer(webhook.Options{
		Host: opts.Host, Port: opts.Port,
		CertDir: opts.CertDir, CertName: opts.CertName, KeyName: opts.KeyName,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.MinVersion = tls.VersionTLS12 }},
	})
	shutdown := opts.ShutdownTimeout
	mgr, err := manager.New(restConfig, manager.Options{
		Scheme:                  scheme,
		Logger:                  log,
		Metrics:                 metricsserver.Options{BindAddress: opts.MetricsAddr},
		HealthProbeBindAddress:  opts.HealthAddr,
		WebhookServer:           ws,
		GracefulShutdownTimeout: &shutdown,
		Cache:                   cache.Options{DefaultTransform: cache.TransformStripManagedFields()},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the controller manager: %w", err)
	}
	ws = mgr.GetWebhookServer() // adds it to the manager's runnables
	cluster, err := NewCacheCluster(ctx, mgr.GetCache())
	if err != nil {
		return nil, err
	}
	if err := rego.AttachCluster(cluster); err != nil {
		return nil, err
	}
	if bundles != nil {
		if err := mgr.Add(bundles); err != nil {
			return nil, err
		}
	}
	s := &Server{opts: opts, log: log, mgr: mgr, watcher: watcher, cluster: cluster, webhook: ws, rego: rego, bundles: bundles}

	alog := log.WithName("admission")
	v, m := NewValidator(watcher, cluster, alog), NewMutator(watcher, cluster, alog)
	v.SetCacheSyncWait(opts.CacheSyncWait)
	m.SetCacheSyncWait(opts.CacheSyncWait)
	ws.Register(opts.ValidatePath, NewHTTPHandler(v, opts.MaxRequestBytes))
	ws.Register(opts.MutatePath, NewHTTPHandler(m, opts.MaxRequestBytes))

	if err := mgr.Add(watcher); err != nil {
		return nil, err
	}
	gen := &Generator{Client: mgr.GetClient(), Cluster: cluster, Rules: watcher, Log: log.WithName("defaultdeny-generator")}
	if err := gen.SetupWithManager(mgr, watcher); err != nil {
		return nil, fmt.Errorf("setting up the default-deny generator: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("webhook", ws.StartedChecker()); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("cache", func(*http.Request) error {
		if !cluster.Synced() {
			return errors.New("the informer cache has not synced yet")
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("rego", func(*http.Request) error {
		if !rego.Synced() {
			return errors.New("the Rego rules' data.kubernetes has not synced yet")
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return s, nil
}

// Start runs the server until ctx ends, then shuts down gracefully. It
// returns nil after a clean shutdown.
func (s *Server) Start(ctx context.Context) error {
	e := s.watcher.Evaluator()
	s.log.Info("starting podwall webhook", "port", s.opts.Port, "certDir", s.opts.CertDir, "config", s.opts.ConfigFile,
		"rules", e.Rules(), "regoRules", s.rego.Rules(), "bundle", s.opts.BundlePath, "bundleRevision", s.rego.Revision(),
		"metrics", s.opts.MetricsAddr, "health", s.opts.HealthAddr, "namespace", s.opts.Namespace)
	return s.mgr.Start(ctx)
}

// WaitReady waits until the cache has synced and the webhook server
// accepts TLS connections, or ctx ends.
func (s *Server) WaitReady(ctx context.Context) error {
	check := s.webhook.StartedChecker()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if s.cluster.Synced() && s.rego.Synced() && check(nil) == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("podwall webhook not ready: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// Config returns the configuration watcher.
func (s *Server) Config() *ConfigWatcher { return s.watcher }

// Rego returns the Rego side: the rules whose engine is rego.
func (s *Server) Rego() *RegoRules { return s.rego }

// Bundles returns the bundle watcher, nil without Options.BundlePath.
func (s *Server) Bundles() *BundleWatcher { return s.bundles }

// Cluster returns the cache-backed view of the cluster the rules read.
func (s *Server) Cluster() *CacheCluster { return s.cluster }

// Manager returns the controller-runtime manager, to add runnables before
// Start.
func (s *Server) Manager() manager.Manager { return s.mgr }
