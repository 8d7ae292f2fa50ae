package rules_test

import (
	"context"
	"encoding/json"
	"fmt"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/podwall/podwall/webhook/config"
	"github.com/podwall/podwall/webhook/rules"
)

// The seed scenario's busybox pod, created without the access label: the
// mutating side sets the default, the validating side refuses it without.
func Example() {
	cfg, err := config.Parse([]byte(`
apiVersion: podwall.io/v1alpha1
kind: AdmissionConfiguration
rules:
  requiredLabels:
    labels:
    - key: access
      allowedValues: ["true", "false"]
      default: "false"
`), "podwall.yaml")
	if err != nil {
		panic(err)
	}
	e, err := rules.New(cfg) // prepare once...
	if err != nil {
		panic(err)
	}
	cluster := rules.NewMemoryCluster()
	busybox, _ := json.Marshal(&corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "busybox", Namespace: "default", Labels: map[string]string{"run": "busybox"}},
	})
	req := &admissionv1.AdmissionRequest{
		Operation: admissionv1.Create,
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Namespace: "default",
		Object:    runtime.RawExtension{Raw: busybox},
	}
	// ...evaluate many.
	m := e.Mutate(context.Background(), req, cluster)
	patch, _ := json.Marshal(m.Patches)
	fmt.Println("mutate:", string(patch))
	v := e.Validate(context.Background(), req, cluster)
	fmt.Println("validate:", v.Allowed, v.Message())
	// Output:
	// mutate: [{"op":"add","path":"/metadata/labels/access","value":"false"}]
	// validate: false Pod default/busybox: label "access" is required with one of the values "true", "false"; no NetworkPolicy in namespace default selects on it yet
}
