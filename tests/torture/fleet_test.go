//go:build torture

package torture

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/tests/torture/journal"
)

// buildRelay compiles ./relayproc into dir, with the race detector when the tests have it, so
// the relay's own code is race-checked under the torture too.
func buildRelay(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "relayproc")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "./relayproc")
	start := time.Now()
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		t.Fatalf("go %v: %v\n%s", args, err, out)
	}
	t.Logf("built relayproc (race=%t) in %v", raceEnabled, time.Since(start).Round(time.Millisecond))
	return bin
}

// fleet runs a lane's relay processes, one per slot, restarting a slot whenever its process
// is killed, as an orchestrator restarts a crashed service.
type fleet struct {
	bin  string
	dir  string
	args []string // common flags
	// slotArgs, when set, adds flags of slot i's own (its replication proxy, its application
	// name) to the common ones.
	slotArgs func(i int) []string

	mu       sync.Mutex
	slots    []*relayProc
	gen      int      // processes started so far
	journals []string // one per process ever started
	kills    int
	pauses   int
	stops    int      // clean stops of restartCleanly
	crashes  []string // processes that exited without being told to
	stats    []outbox.Stats
}

// relayProc is one relay process.
type relayProc struct {
	cmd     *exec.Cmd
	name    string
	journal string // file
	stderr  string // file
	stdout  bytes.Buffer
	done    chan struct{} // closed when the process has exited
	exitErr error
	killed  bool // by a SIGKILL of ours
	stopped bool // by a SIGTERM of ours
}

func newFleet(t *testing.T, bin, dir string, relays int, args []string, slotArgs func(i int) []string) *fleet {
	t.Helper()
	f := &fleet{bin: bin, dir: dir, args: args, slotArgs: slotArgs, slots: make([]*relayProc, relays)}
	for i := range relays {
		if err := f.start(i); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { f.killAll() }) // only does something when the test failed before stop
	return f
}

// start launches a process in slot i. Each has its own owner, journal and log.
func (f *fleet) start(i int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gen++
	name := fmt.Sprintf("relay%d-%03d", i, f.gen)
	journal := filepath.Join(f.dir, name+".journal")
	p := &relayProc{name: name, journal: journal, stderr: filepath.Join(f.dir, name+".log"), done: make(chan struct{})}
	// The journal exists from the start, even for a process killed before it opened it.
	if err := os.WriteFile(journal, nil, 0o644); err != nil {
		return err
	}
	logFile, err := os.Create(p.stderr)
	if err != nil {
		return err
	}
	args := append(append([]string(nil), f.args...), "-owner", name, "-journal", journal, "-fault-seed", fmt.Sprint(f.gen))
	if f.slotArgs != nil {
		args = append(args, f.slotArgs(i)...)
	}
	p.cmd = exec.Command(f.bin, args...)
	p.cmd.Stdout = &p.stdout
	p.cmd.Stderr = logFile
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	f.journals = append(f.journals, journal)
	f.slots[i] = p
	go func() {
		p.exitErr = p.cmd.Wait()
		logFile.Close()
		close(p.done)
		f.exited(i, p)
	}()
	return nil
}

// exited restarts a slot whose process ended without our asking: a relay must never exit on
// its own, so that is recorded and fails the scenario, but the run goes on.
func (f *fleet) exited(i int, p *relayProc) {
	f.mu.Lock()
	ours := p.killed || p.stopped
	if !ours {
		f.crashes = append(f.crashes, fmt.Sprintf("%s exited by itself (%v): %s", p.name, p.exitErr, tail(p.stderr)))
	}
	f.mu.Unlock()
	if !ours {
		time.Sleep(200 * time.Millisecond)
		_ = f.start(i)
	}
}

// kill SIGKILLs the process in slot i, waits for it to die, journals the kill (in WAL mode a
// dead relay's leases die with it) and starts its replacement.
func (f *fleet) kill(i int) error {
	f.mu.Lock()
	p := f.slots[i]
	select {
	case <-p.done: // it exited by itself; exited restarts it
		f.mu.Unlock()
		return nil
	default:
	}
	p.killed = true
	f.kills++
	f.mu.Unlock()
	signalled := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s: %w", p.name, err)
	}
	<-p.done
	marked := journal.MarkKilled(p.journal, signalled, time.Now())
	return errors.Join(f.start(i), marked)
}

// restartCleanly stops the process in slot i as a deployment does (SIGTERM), waits for it to
// exit, which it must do cleanly (exit 0, its counters printed) within timeout, and starts its
// replacement. A process that must be killed after timeout is reported, and replaced too.
func (f *fleet) restartCleanly(i int, timeout time.Duration) error {
	f.mu.Lock()
	p := f.slots[i]
	select {
	case <-p.done: // it exited by itself; exited restarts it
		f.mu.Unlock()
		return nil
	default:
	}
	p.stopped = true
	f.stops++
	f.mu.Unlock()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGTERM %s: %w", p.name, err)
	}
	var stopErr error
	select {
	case <-p.done:
		if p.exitErr != nil {
			stopErr = fmt.Errorf("%s: exit after SIGTERM: %v: %s", p.name, p.exitErr, tail(p.stderr))
		} else if err := json.Unmarshal(bytes.TrimSpace(p.stdout.Bytes()), new(outbox.Stats)); err != nil {
			stopErr = fmt.Errorf("%s: stats line %q: %v", p.name, p.stdout.String(), err)
		}
	case <-time.After(timeout):
		signalled := time.Now()
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		stopErr = errors.Join(fmt.Errorf("%s did not stop within %v of SIGTERM: %s", p.name, timeout, tail(p.stderr)),
			journal.MarkKilled(p.journal, signalled, time.Now()))
	}
	return errors.Join(stopErr, f.start(i))
}

// pause freezes the process in slot i (SIGSTOP) for d, then resumes it (SIGCONT).
func (f *fleet) pause(i int, d time.Duration) error {
	f.mu.Lock()
	p := f.slots[i]
	select {
	case <-p.done:
		f.mu.Unlock()
		return nil
	default:
	}
	f.pauses++
	f.mu.Unlock()
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("pause %s: %w", p.name, err)
	}
	time.Sleep(d)
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("resume %s: %w", p.name, err)
	}
	return nil
}

// freezeAll stops every process (SIGSTOP) until thawAll; the kills and pauses of these
// scenarios never overlap with it.
func (f *fleet) freezeAll() { f.signalAll(syscall.SIGSTOP) }

// thawAll resumes what freezeAll stopped (SIGCONT).
func (f *fleet) thawAll() { f.signalAll(syscall.SIGCONT) }

func (f *fleet) signalAll(sig syscall.Signal) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.slots {
		_ = p.cmd.Process.Signal(sig) // a process that just exited is restarted running
	}
}

// stop sends SIGTERM to every process and waits for each to exit; a relay must stop cleanly
// (exit 0, its counters printed) within its shutdown timeout.
func (f *fleet) stop(timeout time.Duration) []error {
	f.mu.Lock()
	procs := append([]*relayProc(nil), f.slots...)
	for _, p := range procs {
		p.stopped = true
	}
	f.mu.Unlock()
	var errs []error
	for _, p := range procs {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			errs = append(errs, fmt.Errorf("%s: SIGTERM: %w", p.name, err))
		}
	}
	deadline := time.After(timeout)
	for _, p := range procs {
		select {
		case <-p.done:
		case <-deadline:
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
			errs = append(errs, fmt.Errorf("%s did not stop within %v of SIGTERM: %s", p.name, timeout, tail(p.stderr)))
			continue
		}
		if p.exitErr != nil {
			errs = append(errs, fmt.Errorf("%s: exit after SIGTERM: %v: %s", p.name, p.exitErr, tail(p.stderr)))
			continue
		}
		var st outbox.Stats
		if err := json.Unmarshal(bytes.TrimSpace(p.stdout.Bytes()), &st); err != nil {
			errs = append(errs, fmt.Errorf("%s: stats line %q: %v", p.name, p.stdout.String(), err))
			continue
		}
		f.mu.Lock()
		f.stats = append(f.stats, st)
		f.mu.Unlock()
	}
	return errs
}

// killAll kills whatever still runs, for a test that failed before stop.
func (f *fleet) killAll() {
	f.mu.Lock()
	procs := append([]*relayProc(nil), f.slots...)
	for _, p := range procs {
		p.killed = true
	}
	f.mu.Unlock()
	for _, p := range procs {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
		}
	}
}

// finalStats sums the counters the relays printed when they stopped: those of the last
// process of each slot (a killed process prints nothing).
func (f *fleet) finalStats() outbox.Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	var sum outbox.Stats
	for _, st := range f.stats {
		sum.Claimed += st.Claimed
		sum.Published += st.Published
		sum.Failed += st.Failed
		sum.Dead += st.Dead
		sum.Batches += st.Batches
		sum.Released += st.Released
		sum.Stale += st.Stale
	}
	return sum
}

func (f *fleet) journalPaths() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.journals...)
}

func (f *fleet) crashList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.crashes...)
}

func (f *fleet) killCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.kills
}

func (f *fleet) stopCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stops
}

func (f *fleet) pauseCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pauses
}

// tail returns the end of a log file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
