package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/podwall/podwall/webhook/rules"
	"github.com/podwall/podwall/webhook/server"
)

// standalone runs controller-runtime's webhook server (the one `podwall
// webhook` runs) with podwall's handlers on a loopback port, with a fresh
// certificate in a temporary directory. stop ends it and returns Start's
// result.
type standalone struct {
	addr    string
	certDir string
	cert    *x509.Certificate
	cancel  context.CancelFunc
	done    chan error
}

func startStandalone(tb testing.TB, c rules.Cluster) *standalone {
	tb.Helper()
	dir := tb.TempDir()
	cert := writeCert(tb, dir)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ws := webhook.NewServer(webhook.Options{Host: "127.0.0.1", Port: port, CertDir: dir})
	e := seedEvaluator(tb)
	ws.Register("/validate", server.NewHTTPHandler(server.NewValidator(server.Static{E: e}, c, logr.Discard()), 0))
	ws.Register("/mutate", server.NewHTTPHandler(server.NewMutator(server.Static{E: e}, c, logr.Discard()), 0))
	ctx, cancel := context.WithCancel(context.Background())
	s := &standalone{addr: fmt.Sprintf("127.0.0.1:%d", port), certDir: dir, cert: cert, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- ws.Start(ctx) }()
	check := ws.StartedChecker()
	deadline := time.Now().Add(10 * time.Second)
	for check(nil) != nil {
		if time.Now().After(deadline) {
			tb.Fatalf("webhook server not started: %v", check(nil))
		}
		time.Sleep(10 * time.Millisecond)
	}
	tb.Cleanup(func() { s.stop() })
	return s
}

func (s *standalone) stop() error {
	s.cancel()
	select {
	case err := <-s.done:
		s.done <- err
		return err
	case <-time.After(70 * time.Second):
		return fmt.Errorf("webhook server did not stop")
	}
}

func (s *standalone) client(maxConns int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     tlsClientConfig(s.cert),
			MaxIdleConnsPerHost: maxConns,
			MaxConnsPerHost:     maxConns,
			ForceAttemptHTTP2:   false,
		},
	}
}

func post(c *http.Client, url string, body []byte) (int, []byte, error) {
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// servedSerial returns the serial number of the certificate the server
// presents to a new connection.
func servedSerial(t *testing.T, addr string) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// TestCertificateRotation: a certificate replaced in the directory (as the
// kubelet updates a Secret volume) is served to new connections without a
// restart.
func TestCertificateRotation(t *testing.T) {
	s := startStandalone(t, seedCluster())
	if got := servedSerial(t, s.addr); got != s.cert.SerialNumber.String() {
		t.Fatalf("serving %s, want %s", got, s.cert.SerialNumber)
	}
	rotated := writeCert(t, s.certDir)
	deadline := time.Now().Add(20 * time.Second)
	for servedSerial(t, s.addr) != rotated.SerialNumber.String() {
		if time.Now().After(deadline) {
			t.Fatal("the rotated certificate is not served")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// And requests verified against the new certificate work.
	s.cert = rotated
	code, body, err := post(s.client(1), "https://"+s.addr+"/validate",
		reviewBody(t, request(t, admissionv1.Create, pod("default", "b", map[string]string{"access": "true"}), nil)))
	if err != nil || code != 200 || !decodeReview(t, body).Response.Allowed {
		t.Fatalf("after rotation: %d %s %v", code, body, err)
	}
}

// blockingCluster blocks the first NetworkPolicies call until released.
type blockingCluster struct {
	*rules.MemoryCluster
	once             sync.Once
	entered, release chan struct{}
}

func (b *blockingCluster) NetworkPolicies(ns string) []*networkingv1.NetworkPolicy {
	b.once.Do(func() {
		close(b.entered)
		<-b.release
	})
	return b.MemoryCluster.NetworkPolicies(ns)
}

// TestGracefulDrain: when the server is told to stop, it stops accepting
// connections but finishes the requests in flight.
func TestGracefulDrain(t *testing.T) {
	bc := &blockingCluster{MemoryCluster: seedCluster(), entered: make(chan struct{}), release: make(chan struct{})}
	s := startStandalone(t, bc)
	type result struct {
		code int
		body []byte
		err  error
	}
	res := make(chan result, 1)
	go func() {
		code, body, err := post(s.client(1), "https://"+s.addr+"/validate",
			reviewBody(t, request(t, admissionv1.Create, pod("default", "busybox", nil), nil)))
		res <- result{code, body, err}
	}()
	<-bc.entered
	s.cancel() // shutdown starts with a request in flight
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err != nil {
			break // no longer accepting
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections after shutdown began")
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case r := <-res:
		t.Fatalf("in-flight request ended before it was released: %+v", r)
	default:
	}
	close(bc.release)
	r := <-res
	if r.err != nil || r.code != 200 {
		t.Fatalf("in-flight request: %d %v", r.code, r.err)
	}
	if resp := decodeReview(t, r.body).Response; resp.Allowed {
		t.Errorf("drained request decided wrongly: %+v", resp)
	}
	if err := s.stop(); err != nil {
		t.Errorf("Start returned %v", err)
	}
}
