package policylib

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ServiceFlow is a flow after Service translation, with a note saying how
// it was translated.
type ServiceFlow struct {
	Flow    Flow
	Service types.NamespacedName
	Note    string
}

// ResolveService translates a connection from `from` to a Service's
// ClusterIP port into one flow per backing pod, to the target port: what
// NetworkPolicy actually judges. Named target ports resolve on each pod; a
// pod that lacks the name is left out. So are the pods kube-proxy sends
// nothing to: one without an address yet and, unless the Service sets
// publishNotReadyAddresses, one whose Ready condition is False and a
// terminating one while another is ready. A pod with no Ready condition at
// all (from a manifest) counts as ready.
func (e *Engine) ResolveService(from Endpoint, namespace, name string, port int32, proto Protocol) ([]ServiceFlow, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	svc, sp, err := e.servicePort(namespace, name, proto, func(p corev1.ServicePort) bool { return p.Port == port })
	if err != nil {
		return nil, err
	}
	note := fmt.Sprintf("Service %s/%s port %d is translated to its pods' target port", namespace, name, port)
	return e.backendFlows(svc, sp, from, proto, note)
}

// ResolveNodePort translates a connection to a node's NodePort into flows to
// the Service's pods. With externalTrafficPolicy Cluster (the default) the
// node source-NATs the connection to its own address, so the pods see the
// node, not the client; with Local the client address is kept.
func (e *Engine) ResolveNodePort(from Endpoint, nodeName string, nodePort int32, proto Protocol) ([]ServiceFlow, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if _, ok := e.nodes[nodeName]; !ok {
		return nil, fmt.Errorf("node %s: %w", nodeName, ErrUnknownEndpoint)
	}
	var svc *corev1.Service
	var sp corev1.ServicePort
	for _, s := range e.sortedServices() {
		for _, p := range s.Spec.Ports {
			if p.NodePort == nodePort && protoOf(p.Protocol) == proto {
				svc, sp = s, p
			}
		}
	}
	if svc == nil {
		return nil, fmt.Errorf("no Service has %s NodePort %d: %w", proto, nodePort, ErrUnknownEndpoint)
	}
	src := from
	note := fmt.Sprintf("NodePort %d on node %s is Service %s/%s port %d", nodePort, nodeName, svc.Namespace, svc.Name, sp.Port)
	if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
		note += "; externalTrafficPolicy Local keeps the client address"
	} else {
		src = NodeEndpoint(nodeName)
		note += "; the node source-NATs the connection to its own address (externalTrafficPolicy Cluster)"
	}
	return e.backendFlows(svc, sp, src, proto, note)
}

func protoOf(p corev1.Protocol) Protocol {
	pr, _ := protocolFromAPI(&p)
	if p == "" {
		return TCP
	}
	return pr
}

func (e *Engine) sortedServices() []*corev1.Service {
	out := make([]*corev1.Service, 0, len(e.services))
	for _, s := range e.services {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *corev1.Service) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	return out
}

func (e *Engine) servicePort(namespace, name string, proto Protocol, match func(corev1.ServicePort) bool) (*corev1.Service, corev1.ServicePort, error) {
	svc, ok := e.services[types.NamespacedName{Namespace: namespace, Name: name}]
	if !ok {
		return nil, corev1.ServicePort{}, fmt.Errorf("Service %s/%s: %w", namespace, name, ErrUnknownEndpoint)
	}
	var ports []string
	for _, p := range svc.Spec.Ports {
		if match(p) && protoOf(p.Protocol) == proto {
			return svc, p, nil
		}
		ports = append(ports, fmt.Sprintf("%s/%d", protoOf(p.Protocol), p.Port))
	}
	return nil, corev1.ServicePort{}, fmt.Errorf("Service %s/%s has no such %s port (it has %s): %w",
		namespace, name, proto, strings.Join(ports, ", "), ErrUnknownEndpoint)
}

// backendFlows lists the Service's pods that take its traffic (selector
// equality, as the EndpointSlice controller does) with the target port
// resolved on each.
func (e *Engine) backendFlows(svc *corev1.Service, sp corev1.ServicePort, from Endpoint, proto Protocol, note string) ([]ServiceFlow, error) {
	key := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
	if len(svc.Spec.Selector) == 0 {
		return nil, fmt.Errorf("Service %s has no selector, so its endpoints are managed by hand and unknown here", key)
	}
	n, ok := e.namespaces[svc.Namespace]
	if !ok {
		return nil, nil
	}
	sel := Selector{}
	for k, v := range svc.Spec.Selector {
		sel.reqs = append(sel.reqs, requirement{key: k, op: opIn, values: []string{v}})
	}
	// The EndpointSlice controller's view: a pod without an address is no
	// endpoint yet; with publishNotReadyAddresses every other pod is a ready
	// endpoint; else kube-proxy sends traffic to the ready ones, and to
	// terminating ones still ready only when there is no other. A pod with
	// no Ready condition at all (a manifest's) counts as ready.
	publish := svc.Spec.PublishNotReadyAddresses
	var out, terminating []ServiceFlow
	for p := range n.pods {
		if !sel.Matches(p.labels) || !p.addr.IsValid() || p.notReady && !publish {
			continue
		}
		target := sp.TargetPort
		port := sp.Port
		switch {
		case target.Type == intstr.String && target.StrVal != "":
			num, ok := p.resolveNamedPort(target.StrVal, proto)
			if !ok {
				continue
			}
			port = num
		case target.Type == intstr.Int && target.IntVal != 0:
			port = target.IntVal
		}
		f := ServiceFlow{
			Flow:    Flow{From: from, To: PodEndpoint(p.key.Namespace, p.key.Name), Protocol: proto, Port: port},
			Service: key,
			Note:    fmt.Sprintf("%s (pod port %d)", note, port),
		}
		if p.terminating && !publish {
			f.Note += "; the pod is terminating, and gets traffic only because no other is ready"
			terminating = append(terminating, f)
			continue
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		out = terminating
	}
	slices.SortFunc(out, func(a, b ServiceFlow) int { return strings.Compare(a.Flow.To.Name, b.Flow.To.Name) })
	return out, nil
}
