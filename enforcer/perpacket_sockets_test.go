package enforcer_test

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/podwall/podwall/internal/netns"
)

// The per-packet benchmark's sockets use plain blocking system calls on OS
// threads that stay in their namespace (netns.NS.Go), so that the user
// space share of a connection is as small as it can be and the kernel's
// (where the enforcer's cost is) shows.

// ppTimeout bounds a blocking connect or read (SO_SNDTIMEO, SO_RCVTIMEO),
// so that a dropped packet fails the benchmark instead of hanging it.
var ppTimeout = unix.Timeval{Sec: 3}

// oneByteServer accepts connections on threads in a namespace and, for
// each, writes one byte and closes: the server closes first, as an HTTP/1.0
// server does, so TIME_WAIT stays on the server and the client's ports are
// free again at once.
type oneByteServer struct {
	fd   int
	wg   sync.WaitGroup
	once sync.Once
}

func startOneByteServer(ns *netns.NS, addr netip.Addr, port, threads int) (*oneByteServer, error) {
	s := &oneByteServer{fd: -1}
	ready := make(chan error, 1)
	err := ns.Go(func() {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			if err = unix.Bind(fd, &unix.SockaddrInet4{Addr: addr.As4(), Port: port}); err == nil {
				err = unix.Listen(fd, 4096)
			}
			if err != nil {
				unix.Close(fd)
			}
		}
		if err == nil {
			s.fd = fd
		}
		ready <- err
	})
	if err == nil {
		err = <-ready
	}
	if err != nil {
		return nil, fmt.Errorf("listen on %s:%d in %s: %w", addr, port, ns.Name, err)
	}
	// The listening socket is in the namespace already: the accepting
	// goroutines may run on any thread (each blocking accept holds one).
	for range threads {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			one := []byte{1}
			for {
				// accept4 without the peer's address: unix.Accept4 would
				// allocate it.
				r, _, errno := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(s.fd), 0, 0, unix.SOCK_CLOEXEC, 0, 0)
				switch errno {
				case 0:
				case unix.EINTR, unix.ECONNABORTED:
					continue
				default:
					return // shut down
				}
				c := int(r)
				unix.Write(c, one)
				unix.Close(c)
			}
		}()
	}
	return s, nil
}

// stop wakes the accepting threads (shutdown; close alone would not) and
// waits for them.
func (s *oneByteServer) stop() {
	s.once.Do(func() {
		unix.Shutdown(s.fd, unix.SHUT_RDWR)
		s.wg.Wait()
		unix.Close(s.fd)
	})
}

// dialers are client threads in a namespace that open connections to one
// address on demand.
type dialers struct {
	jobs    chan *dialJob
	threads int
	once    sync.Once
}

// dialJob is one batch of connections the threads share.
type dialJob struct {
	left atomic.Int64
	wg   sync.WaitGroup
	mu   sync.Mutex
	err  error
}

func startDialers(ns *netns.NS, dst netip.Addr, port, threads int) (*dialers, error) {
	d := &dialers{jobs: make(chan *dialJob), threads: threads}
	sa := unix.SockaddrInet4{Addr: dst.As4(), Port: port}
	for range threads {
		err := ns.Go(func() {
			sa := sa // each thread its own (Connect fills a raw buffer in it)
			for j := range d.jobs {
				for j.left.Add(-1) >= 0 {
					if err := dialOnce(&sa); err != nil {
						j.mu.Lock()
						if j.err == nil {
							j.err = err
						}
						j.mu.Unlock()
						j.left.Store(0)
					}
				}
				j.wg.Done()
			}
		})
		if err != nil {
			d.stop()
			return nil, err
		}
	}
	return d, nil
}

// run makes n connections with every thread and returns the first error.
func (d *dialers) run(n int) error {
	j := &dialJob{}
	j.left.Store(int64(n))
	j.wg.Add(d.threads)
	for range d.threads {
		d.jobs <- j
	}
	j.wg.Wait()
	return j.err
}

func (d *dialers) stop() { d.once.Do(func() { close(d.jobs) }) }

// dialOnce connects, reads the server's byte and its FIN, and closes.
func dialOnce(sa *unix.SockaddrInet4) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &ppTimeout)
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &ppTimeout)
	// A signal interrupts a connect with a timeout (EINTR); calling it again
	// waits for the same handshake.
	for {
		err = unix.Connect(fd, sa)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil && !errors.Is(err, unix.EISCONN) {
		return fmt.Errorf("connect: %w", err)
	}
	var buf [4]byte
	got := 0
	for {
		n, err := unix.Read(fd, buf[:])
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return fmt.Errorf("read: %w", err)
		case n == 0:
			if got != 1 {
				return fmt.Errorf("read %d bytes before the FIN, want 1", got)
			}
			return nil
		}
		got += n
	}
}
