package server_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/podwall/podwall/webhook/config"
	"github.com/podwall/podwall/webhook/rules"
)

// seedEvaluator is the evaluator of testdata/seed.yaml.
func seedEvaluator(tb testing.TB) *rules.Evaluator {
	tb.Helper()
	return loadEvaluator(tb, "testdata/seed.yaml")
}

// loadEvaluator is the evaluator of a configuration file.
func loadEvaluator(tb testing.TB, path string) *rules.Evaluator {
	tb.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		tb.Fatal(err)
	}
	e, err := rules.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// Builders for the seed scenario's objects.

func namespace(name string, labels map[string]string) *corev1.Namespace {
	l := map[string]string{"kubernetes.io/metadata.name": name}
	for k, v := range labels {
		l[k] = v
	}
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
}

func pod(ns, name string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "busybox", Image: "busybox", Command: []string{"sleep", "3600"},
		}}},
	}
}

// defaultDeny is the ingress default deny.
func defaultDeny(ns string) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default-deny"},
		Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
	}
}

// accessPolicy is examples/seed/original/networkpolicy.yaml; with cidr it
// is networkpolicy-ipblock.yaml (cidr 192.168.2.0/24) or a variant.
func accessPolicy(ns, name, cidr string) *networkingv1.NetworkPolicy {
	tcp := corev1.ProtocolTCP
	port80 := intstr.FromInt32(80)
	peers := []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"access": "true"}}}}
	if cidr != "" {
		peers = append(peers, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr}})
	}
	return &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"name": "networkpolicy-demo"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  peers,
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port80}},
			}},
		},
	}
}

var uidCounter atomic.Int64

// request builds the admission request the API server would send for op
// on obj (old: the stored object for UPDATE and DELETE).
func request(tb testing.TB, op admissionv1.Operation, obj, old runtime.Object) admission.Request {
	tb.Helper()
	subject := obj
	if subject == nil {
		subject = old
	}
	gvks, _, err := scheme.Scheme.ObjectKinds(subject)
	if err != nil {
		tb.Fatal(err)
	}
	gvk := gvks[0]
	m := subject.(metav1.Object)
	resource := strings.ToLower(gvk.Kind) + "s"
	if gvk.Kind == "NetworkPolicy" {
		resource = "networkpolicies"
	}
	req := admissionv1.AdmissionRequest{
		UID:       types.UID(fmt.Sprintf("uid-%d", uidCounter.Add(1))),
		Kind:      metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
		Resource:  metav1.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: resource},
		Namespace: m.GetNamespace(),
		Name:      m.GetName(),
		Operation: op,
	}
	req.RequestKind, req.RequestResource = &req.Kind, &req.Resource
	req.UserInfo.Username = "tester"
	if obj != nil {
		req.Object.Raw = mustJSON(tb, obj)
	}
	if old != nil {
		req.OldObject.Raw = mustJSON(tb, old)
	}
	return admission.Request{AdmissionRequest: req}
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// reviewBody is the AdmissionReview the API server would POST.
func reviewBody(tb testing.TB, req admission.Request) []byte {
	tb.Helper()
	return mustJSON(tb, admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  &req.AdmissionRequest,
	})
}

// writeCert writes a self-signed serving certificate for 127.0.0.1 and
// localhost into dir (tls.crt, tls.key), atomically, and returns it.
func writeCert(tb testing.TB, dir string) *x509.Certificate {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "podwall-test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	atomicWrite(tb, filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
	atomicWrite(tb, filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return cert
}

func atomicWrite(tb testing.TB, path string, data []byte) {
	tb.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
}

// tlsClientConfig trusts exactly cert.
func tlsClientConfig(cert *x509.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

func decodeReview(tb testing.TB, body []byte) *admissionv1.AdmissionReview {
	tb.Helper()
	var r admissionv1.AdmissionReview
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&r); err != nil {
		tb.Fatalf("response is not an AdmissionReview: %v\n%s", err, body)
	}
	if r.Response == nil {
		tb.Fatalf("AdmissionReview without response: %s", body)
	}
	return &r
}
