package enforcer

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/podwall/podwall/internal/netns"
)

// TestBatchErrors checks that a refused batch reports the kernel's error
// against the message it refused, and changes nothing: the batch is one
// transaction.
func TestBatchErrors(t *testing.T) {
	lab := netns.New(t)
	fd, err := lab.Node.FD()
	if err != nil {
		t.Fatal(err)
	}
	b := newBuilder("t", nil)
	b.addTable("t")
	b.newSet("s", setAddr4)
	b.delSet("nosuch")
	b.newSet("s2", setAddr4)
	err = b.send(fd)
	if !errors.Is(err, unix.ENOENT) || !strings.Contains(err.Error(), "delete set nosuch") {
		t.Fatalf("err = %v, want ENOENT for delete set nosuch", err)
	}
	// Nothing was applied: deleting the table fails.
	b = newBuilder("t", nil)
	b.delTable("t")
	if err := b.send(fd); !errors.Is(err, unix.ENOENT) {
		t.Errorf("deleting the table after a refused batch: err = %v, want ENOENT", err)
	}
	// A good batch is acknowledged.
	b = newBuilder("t", nil)
	b.addTable("t")
	b.newSet("s", setAddr4)
	b.elem(opAdd, "s", elem{key: []byte{10, 0, 0, 1}})
	b.elem(opAdd, "s", elem{key: []byte{10, 0, 0, 2}, end: true})
	if err := b.send(fd); err != nil {
		t.Fatal(err)
	}
	if b.added != 2 || len(b.msgs) != 3 {
		t.Errorf("added %d elements in %d messages, want 2 in 3", b.added, len(b.msgs))
	}
}

// TestElemChunks checks that a set's elements are spread over messages
// whose element lists stay below the attribute limit.
func TestElemChunks(t *testing.T) {
	b := newBuilder("t", nil)
	for i := range 20000 {
		b.elem(opAdd, "s", elem{key: []byte{10, byte(i >> 16), byte(i >> 8), byte(i)}})
	}
	b.elem(opAdd, "other", elem{key: []byte{10, 0, 0, 1}})
	b.end()
	if len(b.msgs) < 3 {
		t.Fatalf("%d messages for 20001 elements", len(b.msgs))
	}
	for off := len(b.buf.b[:20]); off < len(b.buf.b); {
		l := int(binary.NativeEndian.Uint32(b.buf.b[off:]))
		if l > elemListMax+1024 {
			t.Errorf("message at %d is %d bytes", off, l)
		}
		off += l
	}
}
