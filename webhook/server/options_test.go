package server_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/podwall/podwall/webhook/server"
)

func TestOptionsDefaults(t *testing.T) {
	o := server.Options{}.WithDefaults()
	want := server.Options{
		Port: 9443, CertDir: "/etc/podwall/tls", CertName: "tls.crt", KeyName: "tls.key",
		ConfigFile: "/etc/podwall/config/podwall.yaml", ConfigCheckInterval: 10 * time.Second,
		MetricsAddr: ":8080", HealthAddr: ":8081", Namespace: "podwall-system",
		ValidatePath: "/validate", MutatePath: "/mutate", MaxRequestBytes: 3 << 20,
		ShutdownTimeout: 30 * time.Second, CacheSyncWait: 2 * time.Second,
	}
	if o != want {
		t.Errorf("defaults:\n%+v\nwant\n%+v", o, want)
	}
	if err := (server.Options{}).Validate(); err != nil {
		t.Errorf("zero options: %v", err)
	}
	// Set fields are kept.
	if o := (server.Options{Port: 8443, MetricsAddr: "0"}).WithDefaults(); o.Port != 8443 || o.MetricsAddr != "0" {
		t.Errorf("kept: %+v", o)
	}
}

// TestOptionsValidateEveryProblem: every problem is reported at once, each
// naming its field.
func TestOptionsValidateEveryProblem(t *testing.T) {
	o := server.Options{
		Host: "a b", Port: 70000, CertName: "x/tls.crt", KeyName: "x/tls.crt",
		ConfigCheckInterval: -time.Second, MetricsAddr: "8080", HealthAddr: "host:http",
		Namespace: "Podwall_System", ValidatePath: "validate", MutatePath: "/healthz",
		MaxRequestBytes: 1024, ShutdownTimeout: -1, CacheSyncWait: -1,
	}
	err := o.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		t.Fatalf("%T is not an errors.Join", err)
	}
	for _, want := range []string{
		"Port 70000", `Host "a b"`, `CertName "x/tls.crt"`, `KeyName "x/tls.crt": must be a file name`, `KeyName "x/tls.crt": must differ`,
		"ConfigCheckInterval -1s", `MetricsAddr "8080"`, `HealthAddr "host:http"`, `Namespace "Podwall_System"`,
		`ValidatePath "validate"`, `ValidatePath/MutatePath "/healthz": is reserved`, "MaxRequestBytes 1024",
		"ShutdownTimeout -1ns", "CacheSyncWait -1ns",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("no problem reported for %s:\n%v", want, err)
		}
	}
	if n := len(joined.Unwrap()); n != 14 {
		t.Errorf("%d problems:\n%v", n, err)
	}
}

// TestDecisionLog: denials are logged at level 0 with the rule, action
// and field of each violation; plain admissions only at level 1.
func TestDecisionLog(t *testing.T) {
	var logs logSink
	e := seedEvaluator(t)
	v := server.NewValidator(server.Static{E: e}, seedCluster(), logs.logger())
	v.Handle(context.Background(), request(t, admissionv1.Create, pod("default", "busybox", map[string]string{"run": "busybox"}), nil))
	v.Handle(context.Background(), request(t, admissionv1.Create, pod("default", "ok", map[string]string{"access": "true"}), nil))
	text := logs.text()
	for _, want := range []string{
		`"msg"="admission decision" "webhook"="validate" "uid"=`,
		`"operation"="CREATE" "kind"="v1 Pod" "namespace"="default" "name"="busybox" "user"="tester"`,
		`"allowed"=false "result"="denied"`,
		`"violations"=[{"rule"="requiredLabels" "action"="deny" "code"="missing-label" "field"="metadata.labels[access]" "message"="Pod default/busybox: label \"access\" is required`,
		`"level"=1 "msg"="admission decision" "webhook"="validate" "uid"=`, // the admission, at V(1)
	} {
		if !strings.Contains(text, want) {
			t.Errorf("log lacks %s:\n%s", want, text)
		}
	}
}
