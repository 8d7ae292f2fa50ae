package server

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Defaults of the Options fields; a zero field takes its default.
const (
	DefaultPort                = 9443
	DefaultCertDir             = "/etc/podwall/tls"
	DefaultCertName            = "tls.crt"
	DefaultKeyName             = "tls.key"
	DefaultConfigFile          = "/etc/podwall/config/podwall.yaml"
	DefaultConfigCheckInterval = 10 * time.Second
	DefaultMetricsAddr         = ":8080"
	DefaultHealthAddr          = ":8081"
	DefaultNamespace           = "podwall-system"
	DefaultValidatePath        = "/validate"
	DefaultMutatePath          = "/mutate"
	DefaultShutdownTimeout     = 30 * time.Second
	DefaultCacheSyncWait       = 2 * time.Second

	// DefaultMaxRequestBytes is the largest AdmissionReview body accepted:
	// 3 MiB, the API server's own limit on a request body
	// (MaxRequestBodyBytes). A review carries up to two objects, each at
	// most 1.5 MiB as stored in etcd, so every review of a storable object
	// fits.
	DefaultMaxRequestBytes = 3 << 20
)

// Options configures a Server. It is a plain struct: every zero field takes
// the default documented on it, and Validate reports every problem at once.
type Options struct {
	// Host is the address the HTTPS webhook server listens on. Default ""
	// (every address).
	Host string
	// Port is the HTTPS port of the webhook server. Default 9443.
	Port int
	// CertDir holds the serving certificate and key (CertName, KeyName).
	// They are watched and reloaded when they change, so a rotated
	// certificate is served without a restart. Default /etc/podwall/tls.
	CertDir string
	// CertName and KeyName name the certificate and key files in CertDir.
	// Default tls.crt and tls.key (the keys of a kubernetes.io/tls Secret).
	CertName, KeyName string

	// ConfigFile is the podwall AdmissionConfiguration. It must be valid at
	// start; later changes are picked up without a restart, and a change
	// that is not a valid configuration is logged (every problem) and
	// ignored, the previous configuration staying in force. Default
	// /etc/podwall/config/podwall.yaml.
	ConfigFile string
	// ConfigCheckInterval is how often ConfigFile (and BundlePath) is
	// re-read in addition to file-system notifications (which can be
	// missed on some volume types). Default 10s.
	ConfigCheckInterval time.Duration

	// BundlePath is the Rego bundle evaluating the rules whose engine is
	// rego: a gzipped tarball as `opa build` writes it, or a bundle
	// directory (see LoadBundle). It must compile at start; later
	// changes are picked up without a restart, and a change that does not
	// compile is logged (the compiler's errors) and ignored, the previous
	// bundle staying in force. Default "": the rules embedded in podwall,
	// compiled when a configuration first puts a rule on rego.
	BundlePath string

	// MetricsAddr is the address of the Prometheus endpoint (/metrics),
	// plain HTTP. "0" disables it. Default ":8080".
	MetricsAddr string
	// HealthAddr is the address of /healthz and /readyz, plain HTTP. "0"
	// disables it. Default ":8081".
	HealthAddr string

	// Namespace is the namespace podwall runs in. A configuration that does
	// not exempt it is logged as a lock-out risk. Default podwall-system.
	Namespace string

	// ValidatePath and MutatePath are the URL paths of the validating and
	// mutating webhooks. Default /validate and /mutate.
	ValidatePath, MutatePath string

	// MaxRequestBytes is the largest request body accepted; larger
	// requests get HTTP 413. Default 3 MiB (DefaultMaxRequestBytes).
	MaxRequestBytes int64

	// ShutdownTimeout bounds the graceful shutdown: in-flight admission
	// requests are drained for up to this long after the context ends.
	// Default 30s.
	ShutdownTimeout time.Duration

	// Logger receives podwall's structured logs: decisions, configuration
	// reloads, the generator, and the manager's. Zero: controller-runtime's
	// global logger (log.SetLogger), named "podwall".
	Logger logr.Logger

	// CacheSyncWait is how long a request that arrives before the informer
	// cache has synced waits for it; after that it is answered with an
	// error (HTTP 200, allowed false, code 503), never evaluated against
	// an empty cache. Default 2s.
	CacheSyncWait time.Duration
}

// WithDefaults returns o with every zero field set to its default.
func (o Options) WithDefaults() Options {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	if o.Port == 0 {
		o.Port = DefaultPort
	}
	def(&o.CertDir, DefaultCertDir)
	def(&o.CertName, DefaultCertName)
	def(&o.KeyName, DefaultKeyName)
	def(&o.ConfigFile, DefaultConfigFile)
	def(&o.MetricsAddr, DefaultMetricsAddr)
	def(&o.HealthAddr, DefaultHealthAddr)
	def(&o.Namespace, DefaultNamespace)
	def(&o.ValidatePath, DefaultValidatePath)
	def(&o.MutatePath, DefaultMutatePath)
	if o.ConfigCheckInterval == 0 {
		o.ConfigCheckInterval = DefaultConfigCheckInterval
	}
	if o.MaxRequestBytes == 0 {
		o.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	if o.CacheSyncWait == 0 {
		o.CacheSyncWait = DefaultCacheSyncWait
	}
	return o
}

// Validate reports every problem with o (after defaults), joined with
// errors.Join; each names its field.
func (o Options) Validate() error {
	o = o.WithDefaults()
	var errs []error
	bad := func(field string, value any, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s %v: %s", field, value, fmt.Sprintf(format, args...)))
	}
	if o.Port < 1 || o.Port > 65535 {
		bad("Port", o.Port, "must be between 1 and 65535")
	}
	if o.Host != "" && strings.ContainsAny(o.Host, " /") {
		bad("Host", strconv.Quote(o.Host), "must be a host name or address")
	}
	for _, f := range []struct{ name, v string }{{"CertName", o.CertName}, {"KeyName", o.KeyName}} {
		if strings.ContainsRune(f.v, '/') {
			bad(f.name, strconv.Quote(f.v), "must be a file name in CertDir, not a path")
		}
	}
	if o.CertName == o.KeyName {
		bad("KeyName", strconv.Quote(o.KeyName), "must differ from CertName")
	}
	if o.ConfigCheckInterval < 0 {
		bad("ConfigCheckInterval", o.ConfigCheckInterval, "must not be negative")
	}
	for _, a := range []struct{ name, v string }{{"MetricsAddr", o.MetricsAddr}, {"HealthAddr", o.HealthAddr}} {
		if a.v == "0" {
			continue
		}
		if _, port, err := net.SplitHostPort(a.v); err != nil {
			bad(a.name, strconv.Quote(a.v), "must be host:port, :port or 0 (off): %v", err)
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			bad(a.name, strconv.Quote(a.v), "port must be a number between 0 and 65535")
		}
	}
	if o.MetricsAddr != "0" && o.MetricsAddr == o.HealthAddr && !strings.HasSuffix(o.MetricsAddr, ":0") {
		bad("HealthAddr", strconv.Quote(o.HealthAddr), "must differ from MetricsAddr")
	}
	if msgs := validation.IsDNS1123Label(o.Namespace); len(msgs) > 0 {
		bad("Namespace", strconv.Quote(o.Namespace), "%s", strings.Join(msgs, "; "))
	}
	for _, p := range []struct{ name, v string }{{"ValidatePath", o.ValidatePath}, {"MutatePath", o.MutatePath}} {
		if !strings.HasPrefix(p.v, "/") || strings.ContainsAny(p.v, " ?#") {
			bad(p.name, strconv.Quote(p.v), "must be a URL path starting with /")
		}
	}
	if o.ValidatePath == o.MutatePath {
		bad("MutatePath", strconv.Quote(o.MutatePath), "must differ from ValidatePath")
	}
	for _, p := range []string{o.ValidatePath, o.MutatePath} {
		if p == "/healthz" || p == "/readyz" || p == "/metrics" {
			bad("ValidatePath/MutatePath", strconv.Quote(p), "is reserved")
		}
	}
	if o.MaxRequestBytes < 64<<10 {
		bad("MaxRequestBytes", o.MaxRequestBytes, "must be at least 64 KiB (65536)")
	}
	if o.ShutdownTimeout < 0 {
		bad("ShutdownTimeout", o.ShutdownTimeout, "must not be negative")
	}
	if o.CacheSyncWait < 0 {
		bad("CacheSyncWait", o.CacheSyncWait, "must not be negative")
	}
	return errors.Join(errs...)
}
