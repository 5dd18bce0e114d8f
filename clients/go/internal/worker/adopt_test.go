package worker

// Re-adoption through the run shim: a worker that leaves its runs (as after
// a crash or stop --keep-runs) and a new one with the same name and data
// directory that adopts the live run and reports the one that ended meanwhile.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	crmsv1 "github.com/crms-dev/crms/clients/go/gen/crms/v1"
)

// buildShim builds cmd/crms-shim for the test.
func buildShim(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "crms-shim")
	cmd := exec.Command("go", "build", "-o", out, "../../cmd/crms-shim")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build of the run shim failed (Go is needed, as scripts/setup.sh says): %v\n%s", err, b)
	}
	return out
}

// logBook keeps a worker's log lines (written from its goroutines).
type logBook struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBook) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(line + "\n")
}

func (l *logBook) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func shimWorker(t *testing.T, addr, dataDir, shim string, logs *logBook) *Worker {
	t.Helper()
	w, err := New(Options{
		Name: "gw", Slots: 4, Servers: []string{addr}, DataDir: dataDir, Version: "test",
		Heartbeat: time.Second, AckTimeout: time.Second, Shim: shim,
		Logf: func(format string, args ...any) {
			t.Logf(format, args...)
			logs.add(fmt.Sprintf(format, args...))
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	return w
}

func TestAdoptAfterLeave(t *testing.T) {
	shim := buildShim(t)
	f, addr := startFake(t)
	dataDir := t.TempDir()
	gate := filepath.Join(t.TempDir(), "gate")
	marks := t.TempDir()
	var logs1, logs2 logBook

	w1 := shimWorker(t, addr, dataDir, shim, &logs1)
	s := f.next(t)
	h := expect(t, s, hello)
	if h.Incarnation == "" || !h.HeartbeatAcks {
		t.Fatalf("hello without incarnation or heartbeat acks: %v", h)
	}
	s.send <- &crmsv1.AttachResponse{Msg: &crmsv1.AttachResponse_Welcome{Welcome: &crmsv1.Welcome{Replica: "fake", HeartbeatSeconds: 1, GraceSeconds: 30}}}
	// "live" sleeps past the restart; "quick" ends (exit 4) while no worker runs.
	s.send <- assign("live", 1, "sh", "-c", "echo run >> "+marks+"/live; echo hi; sleep 2; exit 3")
	s.send <- assign("quick", 1, "sh", "-c", "echo run >> "+marks+"/quick; while [ ! -e "+gate+" ]; do sleep 0.05; done; echo bye; exit 4")
	expect(t, s, started)
	expect(t, s, started)
	w1.Leave("test")
	if !strings.Contains(logs1.String(), "leaving 2 runs to the next worker named gw") {
		t.Fatalf("no leave log:\n%s", logs1.String())
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// The quick run ends with nobody watching; its shim records it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dataDir, "runs", "quick.1", "exit")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the quick run's shim recorded no exit")
		}
		time.Sleep(50 * time.Millisecond)
	}

	w2 := shimWorker(t, addr, dataDir, shim, &logs2)
	t.Cleanup(func() { w2.Stop(true, "test over") })
	if !strings.Contains(logs2.String(), "re-adopted 1 runs, reported 1 ended") {
		t.Fatalf("no adoption log:\n%s", logs2.String())
	}
	s2 := f.next(t)
	h2 := expect(t, s2, hello)
	if h2.Incarnation == h.Incarnation {
		t.Fatal("a new process has the same incarnation")
	}
	if len(h2.Running) != 1 || h2.Running[0].JobId != "live" || !h2.Running[0].Adopted || h2.Running[0].Pid <= 0 {
		t.Fatalf("hello running %v", h2.Running)
	}
	if len(h2.Finished) != 1 || h2.Finished[0].JobId != "quick" || h2.Finished[0].GetExitCode() != 4 || string(h2.Finished[0].StdoutTail) != "bye\n" {
		t.Fatalf("hello finished %v", h2.Finished)
	}
	s2.send <- &crmsv1.AttachResponse{Msg: &crmsv1.AttachResponse_Welcome{Welcome: &crmsv1.Welcome{Replica: "fake", HeartbeatSeconds: 1, GraceSeconds: 30}}}
	s2.send <- ack("quick", 1)
	// Assigned again: the attempt has a run directory, so it is reported, never run again.
	s2.send <- assign("quick", 1, "sh", "-c", "echo run >> "+marks+"/quick")
	again := expect(t, s2, finished)
	if again.JobId != "quick" || again.GetExitCode() != 4 {
		t.Fatalf("report of the assigned-again attempt %v", again)
	}
	fin := expect(t, s2, finished)
	if fin.JobId != "live" || fin.GetExitCode() != 3 || string(fin.StdoutTail) != "hi\n" {
		t.Fatalf("finished %v", fin)
	}
	for _, name := range []string{"live", "quick"} {
		b, _ := os.ReadFile(filepath.Join(marks, name))
		if string(b) != "run\n" {
			t.Fatalf("%s ran %q", name, b)
		}
	}
}

// A worker whose heartbeats are not acknowledged for the grace is cut off:
// it (and the run's shim) ends the run, and reports it fenced (LOST, not failed).
func TestFencedWhenCutOff(t *testing.T) {
	for _, withShim := range []bool{true, false} {
		shim := ""
		if withShim {
			shim = buildShim(t)
		}
		f, addr := startFake(t)
		var logs logBook
		w := shimWorker(t, addr, t.TempDir(), shim, &logs)
		s := f.next(t)
		expect(t, s, hello)
		// Grace 2 s, and the fake control plane never acknowledges a heartbeat.
		s.send <- &crmsv1.AttachResponse{Msg: &crmsv1.AttachResponse_Welcome{Welcome: &crmsv1.Welcome{Replica: "fake", HeartbeatSeconds: 1, GraceSeconds: 2}}}
		s.send <- assign("cut", 1, "sleep", "30")
		expect(t, s, started)
		fin := expect(t, s, finished)
		if !fin.Fenced || fin.Signal != "SIGTERM" || !strings.HasPrefix(fin.Error, "fenced") {
			t.Fatalf("shim %v: finished %v", withShim, fin)
		}
		w.Stop(true, "test over")
	}
}
