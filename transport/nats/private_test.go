package nats_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// private is a nats-server of the test's own, on a free loopback port, with JetStream storing
// into a directory of the test's: it can be stopped and restarted without touching the
// shared server. Restarts keep the port and the store.
type private struct {
	t    testing.TB
	bin  string
	args []string
	url  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	wait chan struct{} // closed when cmd has exited
	log  syncBuffer
}

// syncBuffer is the server's output, written by exec's copying goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startPrivate starts a private nats-server with JetStream and extra arguments (for
// authentication), or skips (fails in CI) when the binary is missing. It is killed at cleanup.
func startPrivate(t testing.TB, extra ...string) *private {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/nats-server"); err != nil {
			needBinary(t, err)
		}
	}
	port := freePort(t)
	p := &private{t: t, bin: bin, url: "nats://127.0.0.1:" + strconv.Itoa(port)}
	p.args = append([]string{"-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", t.TempDir()}, extra...)
	p.start()
	t.Cleanup(p.stop)
	return p
}

func needBinary(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("nats-server binary is required in CI for the fault tests: %v", err)
	}
	t.Skipf("nats-server binary not found (install nats-server to run the fault tests): %v", err)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs the server and waits until it accepts connections.
func (p *private) start() {
	p.t.Helper()
	p.mu.Lock()
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = &p.log, &p.log
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		p.t.Fatalf("start nats-server: %v", err)
	}
	wait := make(chan struct{})
	go func() { _ = cmd.Wait(); close(wait) }()
	p.cmd, p.wait = cmd, wait
	p.mu.Unlock()

	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.url[len("nats://"):], 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-wait:
			p.t.Fatalf("nats-server exited at start: %s", p.output())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("nats-server did not listen within 15s: %s", p.output())
		}
	}
}

// kill stops the server abruptly (SIGKILL), as a crash would, and waits until it exited.
func (p *private) kill() {
	p.mu.Lock()
	cmd, wait := p.cmd, p.wait
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-wait
}

// restart kills the server and starts it again on the same port and store.
func (p *private) restart() {
	p.kill()
	p.start()
}

func (p *private) stop() { p.kill() }

func (p *private) output() string { return fmt.Sprintf("%.2000s", p.log.String()) }

// freeze stops the server process (SIGSTOP): connections stay open but nothing is answered,
// as with a hung broker. thaw resumes it.
func (p *private) freeze() {
	p.t.Helper()
	p.signal(syscall.SIGSTOP)
	// The signal takes effect asynchronously: wait until the process is stopped (state T).
	p.mu.Lock()
	stat := fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid)
	p.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(stat)
		if err != nil {
			p.t.Fatalf("read %s: %v", stat, err)
		}
		// The state follows the command name, which is in parentheses.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'T' {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("the server did not stop: %s", b)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
func (p *private) thaw() { p.signal(syscall.SIGCONT) }

func (p *private) signal(sig os.Signal) {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		p.t.Fatal("the private server is not running")
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}
