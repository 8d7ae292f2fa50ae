package server_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/podwall/podwall/internal/envtest"
	regorules "github.com/podwall/podwall/rules"
	"github.com/podwall/podwall/webhook/server"
)

// shared is the package's API server: podwall's deploy/webhook webhook
// configurations registered, cert-manager's CRDs installed. It starts with
// the first test that needs it.
var shared = envtest.NewShared(func() (envtest.Options, error) {
	v, m, err := envtest.DeployWebhooks()
	if err != nil {
		return envtest.Options{}, err
	}
	return envtest.Options{CRDs: envtest.CertManagerCRDs(), ValidatingWebhooks: v, MutatingWebhooks: m}, nil
})

func TestMain(m *testing.M) {
	if os.Getenv("PODWALL_TEST_LOG") != "" {
		logf.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr)))
	} else {
		logf.SetLogger(logr.Discard())
	}
	code := shared.Main(m, func() { stopLive() }) // podwall first, then the API server
	os.Exit(code)
}

// live is podwall's server running in-process against the shared API
// server, on the serving host, port and certificate envtest registered.
type live struct {
	env        *envtest.Env
	srv        *server.Server
	configFile string
	bundleFile string // the embedded rules, revision live-1, at first
	healthAddr string
	metricsAdr string
}

var (
	liveOnce sync.Once
	liveSrv  *live
	liveErr  error
)

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// podwallServer returns the running server, starting it on first use.
func podwallServer(t *testing.T) *live {
	t.Helper()
	env := shared.Get(t)
	liveOnce.Do(func() {
		dir, err := os.MkdirTemp("", "podwall-config-")
		if err != nil {
			liveErr = err
			return
		}
		l := &live{env: env, configFile: filepath.Join(dir, "podwall.yaml"), bundleFile: filepath.Join(dir, "podwall-rules.tar.gz")}
		if err := copyFile("testdata/seed.yaml", l.configFile); err != nil {
			liveErr = err
			return
		}
		b, err := regorules.BundleBytes("live-1")
		if err == nil {
			err = os.WriteFile(l.bundleFile, b, 0o644)
		}
		if err != nil {
			liveErr = err
			return
		}
		if l.healthAddr, err = freeAddr(); err != nil {
			liveErr = err
			return
		}
		if l.metricsAdr, err = freeAddr(); err != nil {
			liveErr = err
			return
		}
		l.srv, err = server.New(env.Config, server.Options{
			Host: env.ServingHost, Port: env.ServingPort, CertDir: env.ServingCertDir,
			ConfigFile: l.configFile, ConfigCheckInterval: time.Second, BundlePath: l.bundleFile,
			MetricsAddr: l.metricsAdr, HealthAddr: l.healthAddr,
			ShutdownTimeout: 5 * time.Second,
		})
		if err != nil {
			liveErr = err
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- l.srv.Start(ctx) }()
		rctx, rcancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer rcancel()
		if err := l.srv.WaitReady(rctx); err != nil {
			cancel()
			liveErr = fmt.Errorf("%w (Start: %v)", err, drain(done))
			return
		}
		liveSrv = l
		stopLive = func() {
			cancel()
			if err := <-done; err != nil {
				fmt.Fprintf(os.Stderr, "podwall server: %v\n", err)
			}
			os.RemoveAll(dir)
		}
	})
	if liveErr != nil {
		t.Fatalf("podwall server: %v", liveErr)
	}
	return liveSrv
}

var stopLive = func() {}

func drain(done chan error) error {
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		return fmt.Errorf("did not stop")
	}
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}

// warnings collects the warnings the API server returns.
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeader(code int, agent, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.list
	w.list = nil
	return out
}

// clientWithWarnings is a client whose requests' warnings are collected.
func clientWithWarnings(t *testing.T, env *envtest.Env) (client.Client, *warnings) {
	t.Helper()
	w := &warnings{}
	cfg := rest.CopyConfig(env.Config)
	cfg.WarningHandler = w
	c, err := client.New(cfg, client.Options{Scheme: env.Client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return c, w
}
