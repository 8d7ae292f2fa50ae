// Package netns builds throwaway network namespaces with veth pairs and a
// bridge, for dataplane tests and for podwall demo.
//
// A Lab is a "node" namespace holding a bridge, plus namespaces ("pods",
// or other hosts) each attached to the bridge by a veth pair and given
// addresses. Everything is on one layer-2 segment with on-link default
// routes, so any address reaches any other without routers, and nothing
// leaves the node namespace: it has no uplink. Bridged IPv4 and IPv6
// traffic goes through the node namespace's inet forward hook
// (bridge-nf-call-iptables and -ip6tables are set there). Names carry a
// random prefix, so parallel runs do not collide; interfaces are named
// inside the Lab's own namespaces, so they cannot collide either.
//
// [Build] makes a Lab and [Lab.Close] removes every namespace it made;
// [New] is the test helper on top, which skips the test when a Lab cannot
// be built here and removes the Lab when the test ends, failed or not. The
// package does not import testing, so programs may use it.
//
// Building a Lab needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN), the ip tool
// (Debian package iproute2) and a kernel with network namespaces, veth,
// bridges and br_netfilter; Build returns an error wrapping
// [ErrUnavailable] when any is missing.
package netns

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Lab is a node namespace with a bridge and the namespaces attached to it.
type Lab struct {
	// Node is the namespace holding the bridge; its addresses are on the
	// bridge.
	Node *NS
	// Bridge is the bridge's name inside Node.
	Bridge string

	prefix  string
	mu      sync.Mutex
	hosts   []*NS
	closers []io.Closer // servers Serve started
	links   int
	closed  bool
}

// NS is one network namespace of a Lab.
type NS struct {
	// Name is the namespace's name, as ip netns lists it.
	Name string
	// Addrs are the addresses given to the namespace (on the bridge for the
	// node, on eth0 otherwise).
	Addrs []netip.Addr

	lab  *Lab
	mu   sync.Mutex
	file *os.File
}

// Available reports why a Lab cannot be built here, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("not root: network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("the ip tool is missing (apt-get install -y iproute2)")
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return fmt.Errorf("no network namespace support: %w", err)
	}
	if origNS == nil {
		return fmt.Errorf("cannot open this thread's network namespace: %w", origErr)
	}
	return nil
}

// origNS is the namespace the process started in, which Do returns its
// thread to.
var origNS, origErr = func() (*os.File, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
}()

// ErrUnavailable is wrapped by the error Build returns when this machine
// cannot build a Lab (not root, no ip tool, no network namespaces or
// br_netfilter), as opposed to a Lab that failed while being built.
var ErrUnavailable = errors.New("cannot build a network lab here")

// Build builds a Lab: a node namespace with a bridge that is up and
// bridge-nf-call-iptables/-ip6tables set. The caller must Close it, which
// removes every namespace of the Lab. The error wraps ErrUnavailable when
// Available reports a problem or br_netfilter is missing.
func Build() (*Lab, error) {
	if err := Available(); err != nil {
		return nil, fmt.Errorf("netns: %w: %v", ErrUnavailable, err)
	}
	var r [4]byte
	if _, err := rand.Read(r[:]); err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	l := &Lab{prefix: "pw" + hex.EncodeToString(r[:]) + "-", Bridge: "br0"}
	fail := func(err error) (*Lab, error) {
		return nil, errors.Join(err, l.Close())
	}
	node, err := l.newNS("node")
	if err != nil {
		return fail(fmt.Errorf("netns: %w", err))
	}
	l.Node = node
	if err := node.ip("link set lo up", "link add br0 type bridge", "link set br0 up"); err != nil {
		return fail(fmt.Errorf("netns: bridge: %w", err))
	}
	// br_netfilter's switches are per namespace on current kernels.
	for _, k := range []string{"bridge/bridge-nf-call-iptables", "bridge/bridge-nf-call-ip6tables"} {
		if err := node.WriteSysctl("net/"+k, "1"); err != nil {
			return fail(fmt.Errorf("netns: %w: cannot enable %s in the node namespace (is br_netfilter available? modprobe br_netfilter): %v", ErrUnavailable, k, err))
		}
	}
	if err := node.WriteSysctl("net/ipv6/conf/br0/accept_dad", "0"); err != nil {
		return fail(fmt.Errorf("netns: %w", err))
	}
	return l, nil
}

func (l *Lab) newNS(name string) (*NS, error) {
	full := l.prefix + name
	if out, err := exec.Command("ip", "netns", "add", full).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %v: %s", full, err, bytes.TrimSpace(out))
	}
	n := &NS{Name: full, lab: l}
	l.mu.Lock()
	closed := l.closed
	if !closed {
		l.hosts = append(l.hosts, n)
	}
	l.mu.Unlock()
	if closed {
		exec.Command("ip", "netns", "del", full).Run()
		return nil, fmt.Errorf("netns: the lab is closed")
	}
	return n, nil
}

// Close stops the servers Serve started and removes every namespace of the
// Lab, the attached ones first and the node last. It returns the errors of
// the removals; a second Close does nothing.
func (l *Lab) Close() error {
	l.mu.Lock()
	hosts, closers := l.hosts, l.closers
	l.hosts, l.closers, l.closed = nil, nil, true
	l.mu.Unlock()
	for _, c := range closers {
		c.Close()
	}
	var errs []error
	for i := len(hosts) - 1; i >= 0; i-- {
		n := hosts[i]
		n.mu.Lock()
		if n.file != nil {
			n.file.Close()
			n.file = nil
		}
		n.mu.Unlock()
		if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("netns: ip netns del %s: %v: %s", n.Name, err, bytes.TrimSpace(out)))
		}
	}
	return errors.Join(errs...)
}

// onClose registers c to be closed by Close, or closes it now when the Lab
// is closed already.
func (l *Lab) onClose(c io.Closer) {
	l.mu.Lock()
	if !l.closed {
		l.closers = append(l.closers, c)
		c = nil
	}
	l.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// AddNodeAddrs puts addresses on the bridge, so the node namespace talks to
// the attached namespaces from them, and routes everything else on-link
// through the bridge.
func (l *Lab) AddNodeAddrs(addrs ...netip.Addr) error {
	cmds := addrCmds("br0", addrs)
	if len(l.Node.Addrs) == 0 {
		cmds = append(cmds, "route add default dev br0", "route add ::/0 dev br0")
	}
	if err := l.Node.ip(cmds...); err != nil {
		return err
	}
	l.Node.Addrs = append(l.Node.Addrs, addrs...)
	return nil
}

// AddHost creates a namespace attached to the bridge by a veth pair (eth0
// inside it), with the addresses on eth0 and on-link default routes. name
// must be unique in the Lab and short (at most 40 bytes).
func (l *Lab) AddHost(name string, addrs ...netip.Addr) (*NS, error) {
	if len(name) > 40 || strings.ContainsAny(name, "/ \t\n") {
		return nil, fmt.Errorf("netns: bad host name %q", name)
	}
	n, err := l.newNS(name)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.links++
	veth := fmt.Sprintf("v%d", l.links)
	l.mu.Unlock()
	if err := l.Node.ip(
		fmt.Sprintf("link add %s type veth peer name eth0 netns %s", veth, n.Name),
		fmt.Sprintf("link set %s master br0", veth),
		fmt.Sprintf("link set %s up", veth),
	); err != nil {
		return nil, err
	}
	cmds := []string{"link set lo up", "link set eth0 up"}
	cmds = append(cmds, addrCmds("eth0", addrs)...)
	cmds = append(cmds, "route add default dev eth0", "route add ::/0 dev eth0")
	if err := n.ip(cmds...); err != nil {
		return nil, err
	}
	n.Addrs = addrs
	return n, nil
}

func addrCmds(dev string, addrs []netip.Addr) []string {
	var cmds []string
	for _, a := range addrs {
		if a.Is4() {
			cmds = append(cmds, fmt.Sprintf("addr add %s/32 dev %s", a, dev))
		} else {
			cmds = append(cmds, fmt.Sprintf("addr add %s/128 dev %s nodad", a, dev))
		}
	}
	return cmds
}

// ip runs ip commands (without the leading "ip") in the namespace, in one
// batch.
func (n *NS) ip(cmds ...string) error {
	cmd := exec.Command("ip", "-n", n.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ip -n %s: %v: %s (commands: %q)", n.Name, err, bytes.TrimSpace(out), cmds)
	}
	return nil
}

// Addr returns the namespace's first IPv4 address, or IPv6 address when v6.
func (n *NS) Addr(v6 bool) (netip.Addr, bool) {
	for _, a := range n.Addrs {
		if a.Is6() == v6 {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// FD returns a file descriptor of the namespace, valid until the Lab is
// removed, for APIs that take one (such as netlink sockets).
func (n *NS) FD() (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.file == nil {
		f, err := os.Open(filepath.Join("/run/netns", n.Name))
		if err != nil {
			return -1, err
		}
		n.file = f
	}
	return int(n.file.Fd()), nil
}

// Do runs fn on an OS thread switched into the namespace. Sockets fn
// creates stay in the namespace and may be used from any goroutine after
// Do returns.
func (n *NS) Do(fn func() error) error {
	fd, err := n.FD()
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", n.Name, err)
			return
		}
		err := fn()
		// Return the thread to the original namespace; if that fails, keep
		// it locked so that it exits with this goroutine.
		if unix.Setns(int(origNS.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// Go runs fn in a new goroutine locked, for fn's whole life, to an OS
// thread switched into the namespace, for loops that make many sockets
// (Do pays two setns calls and a thread hand-off per call). It returns once
// the thread is in the namespace, or the error of getting there. The
// thread is not reused after fn returns: it exits with the goroutine.
func (n *NS) Go(fn func()) error {
	fd, err := n.FD()
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", n.Name, err)
			return
		}
		errc <- nil
		fn()
	}()
	return <-errc
}

// WriteSysctl writes a /proc/sys value (key like "net/ipv4/ip_forward") in
// the namespace.
func (n *NS) WriteSysctl(key, value string) error {
	return n.Do(func() error {
		return os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644)
	})
}

// Run runs a command in the namespace (ip netns exec) and returns its
// combined output.
func (n *NS) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), n.Name, err, bytes.TrimSpace(out))
	}
	return out, nil
}
