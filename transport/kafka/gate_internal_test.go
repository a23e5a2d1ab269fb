package kafka

import (
	"io"
	"net"
	"testing"
	"time"
)

// A held gate keeps a connection's writes back until it is released, or the transport closes.
func TestGateHoldsWrites(t *testing.T) {
	stop := make(chan struct{})
	g := newGate(stop)
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	conn := gatedConn{Conn: client, g: g}

	read := make(chan string, 3)
	go func() {
		buf := make([]byte, 16)
		for {
			n, err := server.Read(buf)
			if err != nil {
				if err != io.EOF {
					close(read)
				}
				return
			}
			read <- string(buf[:n])
		}
	}()
	write := func(s string) <-chan error {
		done := make(chan error, 1)
		go func() { _, err := conn.Write([]byte(s)); done <- err }()
		return done
	}

	if err := <-write("a"); err != nil || <-read != "a" {
		t.Fatal("an open gate held a write")
	}
	g.hold()
	g.hold() // holding twice is fine
	held := write("b")
	select {
	case err := <-held:
		t.Fatalf("a write went through a held gate (%v)", err)
	case <-time.After(50 * time.Millisecond): // the write must still be waiting
	}
	g.release()
	if err := <-held; err != nil || <-read != "b" {
		t.Fatal("a released gate kept the write")
	}
	g.release() // releasing twice is fine

	g.hold()
	held = write("c")
	close(stop)
	if err := <-held; err != nil || <-read != "c" {
		t.Fatal("closing the transport did not let a held write go")
	}
}
