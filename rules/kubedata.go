package rules

import (
	"context"
	"errors"
	"fmt"

	"github.com/open-policy-agent/opa/v1/storage"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
)

// The cluster state the rules read lives under data.kubernetes in
// kube-mgmt's layout, so a bundle runs the same on OPA with kube-mgmt and
// in the webhook. These functions write typed objects there directly:
// converting them with the unstructured converter rather than through
// JSON, because a webhook writes every informer event.

// KubernetesObjectPath returns where obj lives in data:
// /kubernetes/namespaces/NAME, /kubernetes/pods/NAMESPACE/NAME,
// /kubernetes/networkpolicies/NAMESPACE/NAME or
// /kubernetes/services/NAMESPACE/NAME. obj is a *corev1.Namespace,
// *corev1.Pod, *networkingv1.NetworkPolicy or *corev1.Service; any other
// type, or an object without a name (or namespace), is an error.
func KubernetesObjectPath(obj runtime.Object) (storage.Path, error) {
	resource, _, _, err := kubeKind(obj)
	if err != nil {
		return nil, err
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, fmt.Errorf("data.kubernetes: %w", err)
	}
	name, ns := m.GetName(), m.GetNamespace()
	if name == "" {
		return nil, fmt.Errorf("data.kubernetes: %T without metadata.name", obj)
	}
	if resource == "namespaces" {
		return storage.Path{"kubernetes", resource, name}, nil
	}
	if ns == "" {
		return nil, fmt.Errorf("data.kubernetes: %T %s without metadata.namespace", obj, name)
	}
	return storage.Path{"kubernetes", resource, ns, name}, nil
}

// HeldInData reports whether obj is of a kind data.kubernetes holds (a
// Namespace, Pod, Service or NetworkPolicy): the rules read the cluster
// only through those, so a caller with a mixed set of objects (workloads
// among them) puts these and leaves the rest out.
func HeldInData(obj runtime.Object) bool {
	_, _, _, err := kubeKind(obj)
	return err == nil
}

// kubeKind returns the data.kubernetes key, apiVersion and kind of the
// types the rules read.
func kubeKind(obj runtime.Object) (resource, apiVersion, kind string, err error) {
	switch obj.(type) {
	case *corev1.Namespace:
		return "namespaces", "v1", "Namespace", nil
	case *corev1.Pod:
		return "pods", "v1", "Pod", nil
	case *corev1.Service:
		return "services", "v1", "Service", nil
	case *networkingv1.NetworkPolicy:
		return "networkpolicies", "networking.k8s.io/v1", "NetworkPolicy", nil
	case nil:
		return "", "", "", errors.New("data.kubernetes: nil object")
	}
	return "", "", "", fmt.Errorf("data.kubernetes: %T is not a Namespace, Pod, Service or NetworkPolicy", obj)
}

// KubernetesObjectValue returns obj as the rules read it: its JSON form as
// the API server serves it (apiVersion and kind set even when the typed
// object leaves them empty, as informers do), without
// metadata.managedFields, which no rule reads and which is often the
// larger part of an object. The value is made of the generic types a store
// accepts without a JSON round trip (maps, slices, strings, int64,
// float64, bool) and shares nothing with obj.
func KubernetesObjectValue(obj runtime.Object) (map[string]any, error) {
	_, apiVersion, kind, err := kubeKind(obj)
	if err != nil {
		return nil, err
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("data.kubernetes: converting %s: %w", kind, err)
	}
	if md, ok := u["metadata"].(map[string]any); ok {
		delete(md, "managedFields")
	}
	u["apiVersion"], u["kind"] = apiVersion, kind
	return u, nil
}

// PutKubernetesObject writes obj at its KubernetesObjectPath in store,
// creating the parents, in one write transaction.
func PutKubernetesObject(ctx context.Context, store storage.Store, obj runtime.Object) error {
	path, err := KubernetesObjectPath(obj)
	if err != nil {
		return err
	}
	v, err := KubernetesObjectValue(obj)
	if err != nil {
		return err
	}
	err = storage.Txn(ctx, store, storage.WriteParams, func(txn storage.Transaction) error {
		if err := storage.MakeDir(ctx, store, txn, path[:len(path)-1]); err != nil {
			return err
		}
		return store.Write(ctx, txn, storage.AddOp, path, v)
	})
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// DeleteKubernetesObject removes obj from store; one that is not there is
// not an error.
func DeleteKubernetesObject(ctx context.Context, store storage.Store, obj runtime.Object) error {
	path, err := KubernetesObjectPath(obj)
	if err != nil {
		return err
	}
	err = storage.WriteOne(ctx, store, storage.RemoveOp, path, nil)
	if err != nil && !storage.IsNotFound(err) {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return nil
}
