package netns

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Serve starts echo servers in the namespace on every address: TCP (each
// connection echoes what it reads) and UDP (each datagram is sent back) on
// each port. They stop when the Lab is closed.
func (n *NS) Serve(tcpPorts, udpPorts []int) error {
	var closers []io.Closer
	err := n.Do(func() error {
		for _, p := range tcpPorts {
			ln, err := net.Listen("tcp", ":"+strconv.Itoa(p))
			if err != nil {
				return err
			}
			closers = append(closers, ln)
			go serveTCP(ln)
		}
		for _, p := range udpPorts {
			pc, err := net.ListenPacket("udp", ":"+strconv.Itoa(p))
			if err != nil {
				return err
			}
			closers = append(closers, pc)
			go serveUDP(pc)
		}
		return nil
	})
	for _, c := range closers {
		n.lab.onClose(c)
	}
	if err != nil {
		return fmt.Errorf("serve in %s: %w", n.Name, err)
	}
	return nil
}

func serveTCP(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(time.Minute))
			io.Copy(c, c)
		}()
	}
}

func serveUDP(pc net.PacketConn) {
	buf := make([]byte, 2048)
	for {
		k, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		pc.WriteTo(buf[:k], from)
	}
}

// Reached reports whether a probe's error still proves that packets got
// through both ways: no error, or a refusal (a TCP reset or an ICMP port
// unreachable answered the probe).
func Reached(err error) bool {
	return err == nil || errors.Is(err, syscall.ECONNREFUSED)
}

// ProbeTCP connects from the namespace to dst:port within timeout.
func (n *NS) ProbeTCP(dst netip.Addr, port int, timeout time.Duration) error {
	return n.Do(func() error {
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(dst, uint16(port)).String(), timeout)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// DialTCP opens a TCP connection from the namespace, for tests that keep
// it open across changes.
func (n *NS) DialTCP(dst netip.Addr, port int, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", netip.AddrPortFrom(dst, uint16(port)).String(), timeout)
		return err
	})
	return c, err
}

// Echo writes a message on c and waits up to timeout for it to come back,
// as the servers Serve starts do.
func Echo(c net.Conn, timeout time.Duration) error {
	msg := []byte(fmt.Sprintf("ping %d\n", rand.Uint64()))
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != string(msg) {
		return fmt.Errorf("echo: got %q, want %q", buf, msg)
	}
	return nil
}

// ProbeUDP sends a datagram from the namespace to dst:port and waits up to
// timeout for the echo.
func (n *NS) ProbeUDP(dst netip.Addr, port int, timeout time.Duration) error {
	c, err := n.DialUDP(dst, port)
	if err != nil {
		return err
	}
	defer c.Close()
	return Echo(c, timeout)
}

// DialUDP opens a UDP socket in the namespace connected to dst:port; Echo
// over it reuses one flow (one conntrack entry).
func (n *NS) DialUDP(dst netip.Addr, port int) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var err error
		c, err = net.Dial("udp", netip.AddrPortFrom(dst, uint16(port)).String())
		return err
	})
	return c, err
}

var icmpID atomic.Uint32

func init() { icmpID.Store(rand.Uint32N(1 << 16)) }

// ProbeICMP sends an ICMP (or ICMPv6) echo request from the namespace to dst
// and waits up to timeout for the matching reply.
func (n *NS) ProbeICMP(dst netip.Addr, timeout time.Duration) error {
	network, listen := "ip4:icmp", "0.0.0.0"
	var reqType, replyType icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	proto := 1
	if dst.Is6() {
		network, listen = "ip6:ipv6-icmp", "::"
		reqType, replyType = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
		proto = 58
	}
	var pc *icmp.PacketConn
	if err := n.Do(func() error {
		var err error
		pc, err = icmp.ListenPacket(network, listen)
		return err
	}); err != nil {
		return err
	}
	defer pc.Close()
	id := int(icmpID.Add(1) & 0xffff)
	body := &icmp.Echo{ID: id, Seq: 1, Data: []byte("podwall")}
	wire, err := (&icmp.Message{Type: reqType, Body: body}).Marshal(nil)
	if err != nil {
		return err
	}
	pc.SetDeadline(time.Now().Add(timeout))
	if _, err := pc.WriteTo(wire, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return err
	}
	buf := make([]byte, 1500)
	for {
		k, from, err := pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		ip, ok := from.(*net.IPAddr)
		if !ok {
			continue
		}
		if a, ok := netip.AddrFromSlice(ip.IP); !ok || a.Unmap() != dst {
			continue
		}
		m, err := icmp.ParseMessage(proto, buf[:k])
		if err != nil || m.Type != replyType {
			continue
		}
		if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id && e.Seq == 1 {
			return nil
		}
	}
}

// ErrTimeout reports whether err is a timeout, the result of a probe whose
// packets were dropped on the way.
func ErrTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

// Dropped reports whether a probe's error says its packets were dropped: a
// timeout, or EPERM, which a send returns when the sending namespace's own
// output hook drops the packet.
func Dropped(err error) bool {
	return ErrTimeout(err) || errors.Is(err, syscall.EPERM)
}
