package policylib

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// PortProtocol is one port of one protocol, a column group of a Matrix.
type PortProtocol struct {
	Port     int32
	Protocol Protocol
}

func (p PortProtocol) String() string {
	if !p.Protocol.HasPorts() {
		return p.Protocol.String()
	}
	return fmt.Sprintf("%s/%d", p.Protocol, p.Port)
}

// Matrix is the reachability of every ordered pair of a set of pods for a
// set of ports: the truth tables of the upstream e2e suite.
type Matrix struct {
	Pods    []types.NamespacedName
	Ports   []PortProtocol
	allowed []bool // [port][from][to]
}

// Allowed reports whether pod index from may reach pod index to on port
// index port. An index out of range panics, as a slice index does.
func (m *Matrix) Allowed(from, to, port int) bool {
	n := len(m.Pods)
	return m.allowed[port*n*n+from*n+to]
}

// Matrix computes the reachability of pods (all pods, sorted, when nil) on
// each port, spreading rows over GOMAXPROCS goroutines. It holds the engine's
// read lock for the whole computation, so the matrix is one consistent view.
func (e *Engine) Matrix(pods []types.NamespacedName, ports []PortProtocol) (*Matrix, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if pods == nil {
		for k := range e.podByKey {
			pods = append(pods, k)
		}
		slices.SortFunc(pods, func(a, b types.NamespacedName) int { return strings.Compare(a.String(), b.String()) })
	}
	eps := make([]endpoint, len(pods))
	for i, k := range pods {
		p, ok := e.podByKey[k]
		if !ok {
			return nil, fmt.Errorf("pod %s: %w", k, ErrUnknownEndpoint)
		}
		eps[i] = p.endpoint()
	}
	for _, pp := range ports {
		if err := (Flow{Protocol: pp.Protocol, Port: pp.Port}).check(); err != nil {
			return nil, err
		}
	}
	n := len(pods)
	m := &Matrix{Pods: pods, Ports: ports, allowed: make([]bool, len(ports)*n*n)}
	workers := min(runtime.GOMAXPROCS(0), max(n, 1))
	var wg sync.WaitGroup
	rows := make(chan int, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for from := range rows {
				for k, pp := range ports {
					row := m.allowed[k*n*n+from*n : k*n*n+from*n+n]
					for to := range eps {
						src, dst := matchFamilies(eps[from], eps[to]) // as Decide does
						row[to] = e.decide(src, dst, pp.Protocol, pp.Port).Allowed
					}
				}
			}
		}()
	}
	for from := range n {
		rows <- from
	}
	close(rows)
	wg.Wait()
	return m, nil
}
