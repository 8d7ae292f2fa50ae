package policylib

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Protocol is a transport protocol a flow uses. The zero value is TCP, the
// protocol the API server defaults a NetworkPolicy port to.
//
// ICMP is not a NetworkPolicy protocol: a rule that lists ports never allows
// it, a rule without ports allows it (Calico's behaviour, which the seed
// scenario shows).
type Protocol uint8

// The protocols a flow can use.
const (
	TCP Protocol = iota
	UDP
	SCTP
	ICMP
)

var protocolNames = [...]string{TCP: "TCP", UDP: "UDP", SCTP: "SCTP", ICMP: "ICMP"}

// String returns the upper-case name Kubernetes uses ("TCP").
func (p Protocol) String() string {
	if int(p) < len(protocolNames) {
		return protocolNames[p]
	}
	return fmt.Sprintf("Protocol(%d)", uint8(p))
}

// HasPorts reports whether the protocol has port numbers (TCP, UDP, SCTP).
func (p Protocol) HasPorts() bool { return p <= SCTP }

// ParseProtocol parses a protocol name, case-insensitively. ICMPv6 is
// accepted as ICMP.
func ParseProtocol(s string) (Protocol, error) {
	switch strings.ToUpper(s) {
	case "TCP":
		return TCP, nil
	case "UDP":
		return UDP, nil
	case "SCTP":
		return SCTP, nil
	case "ICMP", "ICMPV6":
		return ICMP, nil
	}
	return TCP, fmt.Errorf("unknown protocol %q: want TCP, UDP, SCTP or ICMP", s)
}

// MustParseProtocol is ParseProtocol that panics on error, for tests and
// constants.
func MustParseProtocol(s string) Protocol {
	p, err := ParseProtocol(s)
	if err != nil {
		panic(err)
	}
	return p
}

// protocolFromAPI maps a core/v1 protocol; nil means TCP, the API default.
func protocolFromAPI(p *corev1.Protocol) (Protocol, bool) {
	if p == nil {
		return TCP, true
	}
	switch *p {
	case corev1.ProtocolTCP:
		return TCP, true
	case corev1.ProtocolUDP:
		return UDP, true
	case corev1.ProtocolSCTP:
		return SCTP, true
	}
	return TCP, false
}
