// Package envtest starts a real kube-apiserver and etcd for tests (through
// controller-runtime's envtest), with podwall's webhook configurations
// registered over TLS, and renders podwall's deploy/ manifests.
//
// The binaries come from KUBEBUILDER_ASSETS (`bash hack/install-test-deps.sh`
// builds them into bin/k8s). Tests skip, saying so, when it is unset or the
// binaries are missing; share one environment per package with [Shared].
package envtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apiruntime "k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// AssetsEnv names the environment variable holding the directory of the
// kube-apiserver and etcd binaries.
const AssetsEnv = "KUBEBUILDER_ASSETS"

// Assets returns the directory named by KUBEBUILDER_ASSETS, or an error
// saying why there is no usable one.
func Assets() (string, error) {
	dir := os.Getenv(AssetsEnv)
	if dir == "" {
		return "", fmt.Errorf("%s is not set: run `bash hack/install-test-deps.sh` and set %s=$PWD/bin/k8s", AssetsEnv, AssetsEnv)
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		st, err := os.Stat(filepath.Join(dir, bin))
		if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%s=%s has no executable %s: run `bash hack/install-test-deps.sh`", AssetsEnv, dir, bin)
		}
	}
	return dir, nil
}

// RepoRoot is the repository's root directory.
func RepoRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("envtest: cannot locate the source")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// CertManagerCRDs returns the paths of cert-manager's Issuer and
// Certificate CRDs (testdata/cert-manager, copied from cert-manager
// v1.21.2).
func CertManagerCRDs() []string {
	dir := filepath.Join(RepoRoot(), "internal", "envtest", "testdata", "cert-manager")
	return []string{
		filepath.Join(dir, "cert-manager.io_issuers.yaml"),
		filepath.Join(dir, "cert-manager.io_certificates.yaml"),
	}
}

// Options configures Start.
type Options struct {
	// CRDs are CRD files or directories to install.
	CRDs []string
	// Webhook configurations to register. A clientConfig.service is
	// replaced with the URL https://ServingHost:ServingPort/PATH and the
	// caBundle with the CA of the serving certificate: so its path must
	// not start with "/" (DeployWebhooks takes care of that).
	ValidatingWebhooks []*admissionregistrationv1.ValidatingWebhookConfiguration
	MutatingWebhooks   []*admissionregistrationv1.MutatingWebhookConfiguration
}

// Env is a running API server.
type Env struct {
	// Config reaches the API server as an administrator.
	Config *rest.Config
	// Client is a controller-runtime client with client-go's scheme.
	Client client.Client
	// ServingHost, ServingPort and ServingCertDir (tls.crt, tls.key) are
	// where the API server expects the webhook server; ServingCA signs
	// its certificate.
	ServingHost    string
	ServingPort    int
	ServingCertDir string
	ServingCA      []byte

	env *crenvtest.Environment
}

// Start starts etcd and kube-apiserver, installs the CRDs and registers the
// webhook configurations. The webhook server itself is the caller's to run.
func Start(o Options) (*Env, error) {
	dir, err := Assets()
	if err != nil {
		return nil, err
	}
	te := &crenvtest.Environment{
		BinaryAssetsDirectory:    dir,
		ControlPlaneStartTimeout: 90 * time.Second,
		ControlPlaneStopTimeout:  30 * time.Second,
		CRDInstallOptions:        crenvtest.CRDInstallOptions{Paths: o.CRDs, ErrorIfPathMissing: true},
		WebhookInstallOptions: crenvtest.WebhookInstallOptions{
			ValidatingWebhooks: o.ValidatingWebhooks,
			MutatingWebhooks:   o.MutatingWebhooks,
			LocalServingHost:   "127.0.0.1",
		},
	}
	cfg, err := te.Start()
	if err != nil {
		_ = te.Stop()
		return nil, fmt.Errorf("starting envtest (%s=%s): %w", AssetsEnv, dir, err)
	}
	scheme := apiruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		_ = te.Stop()
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		_ = te.Stop()
		return nil, err
	}
	w := te.WebhookInstallOptions
	return &Env{
		Config: cfg, Client: c,
		ServingHost: w.LocalServingHost, ServingPort: w.LocalServingPort,
		ServingCertDir: w.LocalServingCertDir, ServingCA: w.LocalServingCAData,
		env: te,
	}, nil
}

// Stop stops the API server and etcd and removes their files.
func (e *Env) Stop() error {
	if e == nil || e.env == nil {
		return nil
	}
	return e.env.Stop()
}

// Shared is one environment for a package's tests, started by the first
// test that asks for it and stopped by Main.
type Shared struct {
	opts func() (Options, error)

	once sync.Once
	env  *Env
	err  error
	skip string
}

// NewShared returns a Shared whose environment is started with the options
// opts returns.
func NewShared(opts func() (Options, error)) *Shared { return &Shared{opts: opts} }

// Get returns the environment, starting it on first use. It skips tb (with
// the reason) when the binaries are not available, and fails it when the
// environment does not start.
func (s *Shared) Get(tb testing.TB) *Env {
	tb.Helper()
	s.once.Do(func() {
		if _, err := Assets(); err != nil {
			s.skip = "envtest: " + err.Error()
			return
		}
		o, err := s.opts()
		if err != nil {
			s.err = err
			return
		}
		s.env, s.err = Start(o)
	})
	if s.skip != "" {
		tb.Skip(s.skip)
	}
	if s.err != nil {
		tb.Fatalf("envtest: %v", s.err)
	}
	return s.env
}

// Main runs the tests, then the cleanups (such as stopping servers that
// use the API server), then stops the environment if one was started:
// call it from TestMain as os.Exit(shared.Main(m)).
func (s *Shared) Main(m *testing.M, cleanups ...func()) int {
	code := m.Run()
	for _, f := range cleanups {
		f()
	}
	if s.env != nil {
		if err := s.env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "envtest: stopping: %v\n", err)
		}
	}
	return code
}

// DeployWebhooks reads the webhook configurations of deploy/webhook
// (webhooks.yaml), with their service paths made relative as Options
// wants them, and their names suffixed with "-envtest" so that deploy/
// itself can still be applied to the same API server.
func DeployWebhooks() ([]*admissionregistrationv1.ValidatingWebhookConfiguration, []*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	path := filepath.Join(RepoRoot(), "deploy", "webhook", "webhooks.yaml")
	docs, err := readDocuments(path)
	if err != nil {
		return nil, nil, err
	}
	var vs []*admissionregistrationv1.ValidatingWebhookConfiguration
	var ms []*admissionregistrationv1.MutatingWebhookConfiguration
	relative := func(cc *admissionregistrationv1.WebhookClientConfig) {
		if cc.Service != nil && cc.Service.Path != nil {
			p := strings.TrimPrefix(*cc.Service.Path, "/")
			cc.Service.Path = &p
		}
	}
	for _, d := range docs {
		var tm struct{ Kind string }
		if err := yaml.Unmarshal(d, &tm); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		switch tm.Kind {
		case "ValidatingWebhookConfiguration":
			v := &admissionregistrationv1.ValidatingWebhookConfiguration{}
			if err := yaml.UnmarshalStrict(d, v); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", path, err)
			}
			v.Name += "-envtest"
			for i := range v.Webhooks {
				relative(&v.Webhooks[i].ClientConfig)
			}
			vs = append(vs, v)
		case "MutatingWebhookConfiguration":
			m := &admissionregistrationv1.MutatingWebhookConfiguration{}
			if err := yaml.UnmarshalStrict(d, m); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", path, err)
			}
			m.Name += "-envtest"
			for i := range m.Webhooks {
				relative(&m.Webhooks[i].ClientConfig)
			}
			ms = append(ms, m)
		default:
			return nil, nil, fmt.Errorf("%s: unexpected kind %q", path, tm.Kind)
		}
	}
	if len(vs) == 0 || len(ms) == 0 {
		return nil, nil, fmt.Errorf("%s: want a validating and a mutating webhook configuration", path)
	}
	return vs, ms, nil
}

// readDocuments splits a YAML file into its non-empty documents.
func readDocuments(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := utilyaml.NewYAMLReader(bufioReader(data))
	var out [][]byte
	for {
		d, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(bytes.TrimSpace(stripComments(d))) > 0 {
			out = append(out, d)
		}
	}
}

func stripComments(d []byte) []byte {
	var b bytes.Buffer
	for _, line := range bytes.Split(d, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			b.Write(line)
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// WriteKubeconfig writes a kubeconfig file reaching the API server as
// Config does (context "envtest").
func (e *Env) WriteKubeconfig(path string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["envtest"] = &clientcmdapi.Cluster{Server: e.Config.Host, CertificateAuthorityData: e.Config.CAData}
	cfg.AuthInfos["envtest"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: e.Config.CertData, ClientKeyData: e.Config.KeyData, Token: e.Config.BearerToken,
	}
	cfg.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "envtest"}
	cfg.CurrentContext = "envtest"
	return clientcmd.WriteToFile(*cfg, path)
}
