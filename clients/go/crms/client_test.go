package crms_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crms-dev/crms/clients/go/crms"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func onGo(command ...string) crms.JobSpec {
	return crms.JobSpec{Command: command, TargetWorker: goWorker}
}

func TestSubmitWaitOutputOnGoWorker(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	job, err := client.Submit(ctx, crms.JobSpec{
		Command:      []string{"sh", "-c", `echo "hello $GREETING"; echo oops >&2; echo "$CRMS_JOB_ID $CRMS_ATTEMPT $CRMS_WORKER"`},
		Name:         "go-hello",
		Env:          map[string]string{"GREETING": "world"},
		TargetWorker: goWorker,
	})
	if err != nil {
		t.Fatal(err)
	}
	if job.ID == "" || job.State.Final() {
		t.Fatalf("submitted job: %+v", job)
	}
	done, err := client.Wait(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.State != crms.StateSucceeded || done.Worker != goWorker || done.ExitCode == nil || *done.ExitCode != 0 {
		t.Fatalf("job ended %s on %q exit %v error %q", done.State, done.Worker, done.ExitCode, done.Error)
	}
	if done.PID <= 0 || done.Attempt != 1 || len(done.Attempts) != 1 || done.Spec.Name != "go-hello" {
		t.Fatalf("job record: %+v", done)
	}
	wantOut := fmt.Sprintf("hello world\n%s 1 %s\n", job.ID, goWorker)
	if string(done.StdoutTail) != wantOut || string(done.StderrTail) != "oops\n" {
		t.Fatalf("tails: %q %q", done.StdoutTail, done.StderrTail)
	}
	out, err := client.ReadOutput(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if string(out.Stdout) != wantOut || string(out.Stderr) != "oops\n" || out.Truncated {
		t.Fatalf("output: %q %q truncated=%v", out.Stdout, out.Stderr, out.Truncated)
	}
	got, err := client.GetJob(ctx, job.ID)
	if err != nil || got.State != crms.StateSucceeded {
		t.Fatalf("GetJob: %+v %v", got, err)
	}
}

func TestErrorMapping(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	check := func(name string, err error, sentinel error, code codes.Code) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: no error", name)
		}
		if !errors.Is(err, sentinel) {
			t.Errorf("%s: %v is not %v", name, err, sentinel)
		}
		if status.Code(err) != code {
			t.Errorf("%s: status.Code = %s, want %s", name, status.Code(err), code)
		}
		var e *crms.Error
		if !errors.As(err, &e) || e.Code != code {
			t.Errorf("%s: not a *crms.Error with code %s: %#v", name, code, err)
		}
		if crms.ErrorCodeName(err) != crms.CodeName(code) {
			t.Errorf("%s: ErrorCodeName %s", name, crms.ErrorCodeName(err))
		}
		// Wrapping keeps both.
		wrapped := fmt.Errorf("context: %w", err)
		if !errors.Is(wrapped, sentinel) || status.Code(wrapped) != code {
			t.Errorf("%s: wrapped error lost its code", name)
		}
	}

	_, err := client.GetJob(ctx, "999999999")
	check("GetJob unknown", err, crms.ErrNotFound, codes.NotFound)
	if crms.ErrorCodeName(err) != "NOT_FOUND" {
		t.Errorf("code name %q", crms.ErrorCodeName(err))
	}
	if errors.Is(err, crms.ErrInvalidArgument) {
		t.Error("NOT_FOUND matched ErrInvalidArgument")
	}
	_, err = client.Submit(ctx, crms.JobSpec{})
	check("Submit empty command", err, crms.ErrInvalidArgument, codes.InvalidArgument)
	if crms.ErrorCodeName(err) != "INVALID_ARGUMENT" {
		t.Errorf("code name %q", crms.ErrorCodeName(err))
	}
	_, err = client.Worker(ctx, "no-such-worker")
	check("Worker unknown", err, crms.ErrNotFound, codes.NotFound)
	_, err = client.Wait(ctx, "999999999")
	check("Wait unknown", err, crms.ErrNotFound, codes.NotFound)

	job, err := client.Submit(ctx, onGo("true"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Wait(ctx, job.ID); err != nil {
		t.Fatal(err)
	}
	_, err = client.Kill(ctx, job.ID, 0)
	check("Kill finished", err, crms.ErrFailedPrecondition, codes.FailedPrecondition)
	_, err = client.Release(ctx, job.ID)
	check("Release finished", err, crms.ErrFailedPrecondition, codes.FailedPrecondition)

	held, err := client.Submit(ctx, crms.JobSpec{Command: []string{"true"}, Hold: true})
	if err != nil {
		t.Fatal(err)
	}
	err = client.Delete(ctx, held.ID)
	check("Delete held", err, crms.ErrFailedPrecondition, codes.FailedPrecondition)
	if _, err := client.Kill(ctx, held.ID, 0); err != nil {
		t.Fatal(err)
	}

	// A context that ends maps to context errors too.
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	_, err = client.GetJob(cctx, job.ID)
	if !errors.Is(err, context.Canceled) || status.Code(err) != codes.Canceled {
		t.Errorf("cancelled call: %v (%s)", err, status.Code(err))
	}
}

func TestHoldReleaseDelete(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	spec := crms.JobSpec{Command: []string{"echo", "released"}, Hold: true, Constraints: map[string]string{"impl": "go"}}
	job, err := client.Submit(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if job.State != crms.StateHeld {
		t.Fatalf("state %s, want HELD", job.State)
	}
	held, err := client.ListJobs(ctx, crms.JobFilter{States: []crms.JobState{crms.StateHeld}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(held, func(j *crms.Job) bool { return j.ID == job.ID }) {
		t.Fatalf("held job %s not listed", job.ID)
	}
	if _, err := client.Hold(ctx, job.ID); err != nil { // HELD -> HELD is allowed
		t.Fatal(err)
	}
	released, err := client.Release(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if released.State == crms.StateHeld {
		t.Fatalf("still HELD after release")
	}
	done, err := client.Wait(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.State != crms.StateSucceeded || done.Worker != goWorker {
		t.Fatalf("ended %s on %s (constraint impl=go)", done.State, done.Worker)
	}
	if err := client.Delete(ctx, job.ID); err != nil {
		t.Fatal(err)
	}
	// Gone from etcd; GetJob may still answer from the job history (archived
	// before the delete), then with the same finished job. A second delete is
	// NOT_FOUND either way.
	if kept, err := client.GetJob(ctx, job.ID); err == nil {
		if kept.ID != job.ID || kept.State != done.State {
			t.Fatalf("GetJob after delete: %+v", kept)
		}
	} else if !errors.Is(err, crms.ErrNotFound) {
		t.Fatalf("GetJob after delete: %v", err)
	}
	if err := client.Delete(ctx, job.ID); !errors.Is(err, crms.ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
}

func TestListJobsPagesAndIterator(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	batch := fmt.Sprintf("b%d", time.Now().UnixNano())
	var ids []string
	for i := range 5 {
		job, err := client.Submit(ctx, crms.JobSpec{
			Command: []string{"true"}, Hold: true, Name: fmt.Sprint(i),
			Labels: map[string]string{"batch": batch},
		})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, job.ID)
	}
	t.Cleanup(func() {
		for _, id := range ids {
			_, _ = client.Kill(ctx, id, 0)
		}
	})
	jobs, err := client.ListJobs(ctx, crms.JobFilter{Labels: map[string]string{"batch": batch}, PageSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, j := range jobs {
		got = append(got, j.ID)
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("listed %v, want %v", got, ids)
	}
	n := 0
	for job, err := range client.Jobs(ctx, crms.JobFilter{Labels: map[string]string{"batch": batch}, PageSize: 2}) {
		if err != nil {
			t.Fatal(err)
		}
		if job.Spec.Labels["batch"] != batch {
			t.Fatalf("job %s without the label", job.ID)
		}
		n++
		if n == 3 {
			break
		}
	}
	if n != 3 {
		t.Fatalf("iterated %d", n)
	}
}

func TestIdempotentSubmit(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	key := fmt.Sprintf("go-req-%d", time.Now().UnixNano())
	a, existing, err := client.SubmitIdempotent(ctx, key, crms.JobSpec{Command: []string{"true"}, Hold: true})
	if err != nil || existing {
		t.Fatalf("first submit: %v existing=%v", err, existing)
	}
	b, existing, err := client.SubmitIdempotent(ctx, key, crms.JobSpec{Command: []string{"true"}, Hold: true})
	if err != nil || !existing || b.ID != a.ID || b.RequestID != key {
		t.Fatalf("second submit: %+v %v existing=%v", b, err, existing)
	}
	if _, err := client.Kill(ctx, a.ID, 0); err != nil {
		t.Fatal(err)
	}
}

func TestWatchJobs(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	job, err := client.Submit(ctx, onGo("sh", "-c", "sleep 0.3"))
	if err != nil {
		t.Fatal(err)
	}
	var types []crms.EventType
	var states []crms.JobState
	var lastRev int64
	for ev, err := range client.WatchJobs(ctx, crms.WatchOptions{IDs: []string{job.ID}}) {
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, ev.Type)
		if ev.Revision < lastRev {
			t.Fatalf("revision went back: %d after %d", ev.Revision, lastRev)
		}
		lastRev = ev.Revision
		if ev.Job != nil {
			states = append(states, ev.Job.State)
			if ev.Job.Final() {
				break
			}
		}
	}
	if len(types) < 3 || types[0] != crms.EventExisting || types[1] != crms.EventSynced {
		t.Fatalf("event types %v", types)
	}
	if !slices.Contains(states, crms.StateRunning) || states[len(states)-1] != crms.StateSucceeded {
		t.Fatalf("states %v", states)
	}
}

func TestWorkersAndClusterStatus(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	workers, err := client.Workers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(workers, func(w *crms.Worker) bool { return w.Name == goWorker })
	if i < 0 {
		t.Fatalf("Go worker %s not listed", goWorker)
	}
	w := workers[i]
	host, _ := os.Hostname()
	if w.State != crms.WorkerUp || w.Slots != 4 || w.Labels["impl"] != "go" || w.Version != "0.1.0-go" || w.Hostname != host {
		t.Fatalf("Go worker record: %+v", w)
	}
	if len(workers) < 2 {
		t.Fatalf("expected the TypeScript dev worker too: %d workers", len(workers))
	}
	one, err := client.Worker(ctx, goWorker)
	if err != nil || one.Name != goWorker || one.LastHeartbeat.IsZero() || one.AttachTime.IsZero() {
		t.Fatalf("Worker: %+v %v", one, err)
	}
	st, err := client.ClusterStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Members) == 0 || st.WorkersUp < 2 || st.SlotsTotal < 8 || st.Revision <= 0 || st.QuotaBytes <= 0 {
		t.Fatalf("cluster status: %+v", st)
	}
}

func TestCLISubmitRunsOnGoWorker(t *testing.T) {
	cmd := exec.Command("node", filepath.Join(repoRoot, "bin", "crms.js"), "submit",
		"--server", address, "--on", goWorker, "--wait", "--", "echo", "hi")
	cmd.Dir = repoRoot
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("crms submit: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "hi") {
		t.Fatalf("stdout %q, want hi", stdout.String())
	}
	// The job is the newest one on the Go worker, SUCCEEDED with "hi".
	ctx := testCtx(t, time.Minute)
	jobs, err := client.ListJobs(ctx, crms.JobFilter{Worker: goWorker})
	if err != nil || len(jobs) == 0 {
		t.Fatalf("jobs on %s: %d %v", goWorker, len(jobs), err)
	}
	last := jobs[len(jobs)-1]
	if last.State != crms.StateSucceeded || !slices.Equal(last.Spec.Command, []string{"echo", "hi"}) || string(last.StdoutTail) != "hi\n" {
		t.Fatalf("last job on the Go worker: %+v", last)
	}
}

func TestKillRunningJobOnGoWorker(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	// A shell that ignores SIGTERM, with a child in the background: the kill
	// must reach the whole process group, and SIGKILL must follow the grace.
	job, err := client.Submit(ctx, onGo("sh", "-c", `trap "" TERM; sleep 300 & sleep 300; wait`))
	if err != nil {
		t.Fatal(err)
	}
	running, err := client.WaitUntil(ctx, job.ID, func(j *crms.Job) bool { return j.State == crms.StateRunning })
	if err != nil {
		t.Fatal(err)
	}
	if running.State != crms.StateRunning || running.PID <= 0 {
		t.Fatalf("job %s: %s pid %d", job.ID, running.State, running.PID)
	}
	pid := running.PID
	deadline := time.Now().Add(5 * time.Second)
	for !groupAlive(pid) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !groupAlive(pid) {
		t.Fatalf("process group %d not found on this machine", pid)
	}
	killed, err := client.Kill(ctx, job.ID, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !killed.KillRequested && !killed.Final() {
		t.Fatalf("after Kill: %+v", killed)
	}
	start := time.Now()
	done, err := client.Wait(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.State != crms.StateKilled || done.Signal != "SIGKILL" {
		t.Fatalf("ended %s signal %q error %q", done.State, done.Signal, done.Error)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("kill took %s", took)
	}
	if groupAlive(pid) {
		t.Fatalf("process group %d still has live processes after the kill", pid)
	}
}

func TestTimeoutAndStartErrorsOnGoWorker(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	spec := onGo("sleep", "30")
	spec.Timeout = time.Second
	job, err := client.Submit(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	notFound, err := client.Submit(ctx, onGo("no-such-command-crms"))
	if err != nil {
		t.Fatal(err)
	}
	failing, err := client.Submit(ctx, onGo("sh", "-c", "exit 7"))
	if err != nil {
		t.Fatal(err)
	}
	badDir := onGo("true")
	badDir.WorkingDir = "/nonexistent-crms-dir"
	noDir, err := client.Submit(ctx, badDir)
	if err != nil {
		t.Fatal(err)
	}

	done, err := client.Wait(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.State != crms.StateFailed || done.Error != "timed out after 1s" {
		t.Fatalf("timeout: %s %q", done.State, done.Error)
	}
	done, err = client.Wait(ctx, notFound.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.State != crms.StateFailed || !strings.Contains(done.Error, "command not found: no-such-command-crms") {
		t.Fatalf("not found: %s %q", done.State, done.Error)
	}
	done, err = client.Wait(ctx, failing.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.State != crms.StateFailed || done.ExitCode == nil || *done.ExitCode != 7 {
		t.Fatalf("exit 7: %s %v", done.State, done.ExitCode)
	}
	done, err = client.Wait(ctx, noDir.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.State != crms.StateFailed || !strings.Contains(done.Error, "working directory does not exist") {
		t.Fatalf("bad working dir: %s %q", done.State, done.Error)
	}
}

func TestOutputStreamingFromGoWorker(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	job, err := client.Submit(ctx, onGo("sh", "-c", `for i in 1 2 3 4 5; do echo line$i; echo err$i >&2; sleep 0.3; done`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.WaitUntil(ctx, job.ID, func(j *crms.Job) bool { return j.State == crms.StateRunning }); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr []byte
	var firstChunk time.Time
	offsets := map[crms.Stream]int64{}
	for chunk, err := range client.Output(ctx, job.ID, true) {
		if err != nil {
			t.Fatal(err)
		}
		if firstChunk.IsZero() {
			firstChunk = time.Now()
		}
		if chunk.Offset != offsets[chunk.Stream] {
			t.Fatalf("%s chunk at offset %d, expected %d", chunk.Stream, chunk.Offset, offsets[chunk.Stream])
		}
		offsets[chunk.Stream] += int64(len(chunk.Data))
		switch chunk.Stream {
		case crms.Stdout:
			stdout = append(stdout, chunk.Data...)
		case crms.Stderr:
			stderr = append(stderr, chunk.Data...)
		}
	}
	if string(stdout) != "line1\nline2\nline3\nline4\nline5\n" || string(stderr) != "err1\nerr2\nerr3\nerr4\nerr5\n" {
		t.Fatalf("followed output %q %q", stdout, stderr)
	}
	done, err := client.Wait(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.State != crms.StateSucceeded {
		t.Fatalf("ended %s", done.State)
	}
	if !firstChunk.Before(done.EndTime) {
		t.Fatalf("first chunk at %s, not before the job ended at %s: not live", firstChunk, done.EndTime)
	}

	// Large output comes in chunks of at most 64 KiB, in order.
	big, err := client.Submit(ctx, onGo("sh", "-c", `head -c 300000 /dev/zero | tr '\0' 'x'`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Wait(ctx, big.ID); err != nil {
		t.Fatal(err)
	}
	var total int64
	for chunk, err := range client.Output(ctx, big.ID, false) {
		if err != nil {
			t.Fatal(err)
		}
		if len(chunk.Data) > 64*1024 || chunk.Offset != total || chunk.Stream != crms.Stdout {
			t.Fatalf("chunk %s offset %d len %d (total %d)", chunk.Stream, chunk.Offset, len(chunk.Data), total)
		}
		total += int64(len(chunk.Data))
	}
	if total != 300000 {
		t.Fatalf("read %d bytes, want 300000", total)
	}
	r := client.OutputReader(ctx, big.ID, crms.Stdout, false)
	defer r.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r); err != nil || buf.Len() != 300000 || strings.Trim(buf.String(), "x") != "" {
		t.Fatalf("OutputReader: %d bytes, %v", buf.Len(), err)
	}
}

func TestConformance(t *testing.T) {
	out, err := exec.Command(conformBin, address).Output()
	if err != nil {
		t.Fatalf("conformance: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 1 {
		t.Fatalf("expected one line, got %q", out)
	}
	var got map[string]string
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"client": "go", "final_state": "SUCCEEDED", "output": "conformance\n", "killed_state": "KILLED",
		"unknown_code": "NOT_FOUND", "invalid_code": "INVALID_ARGUMENT",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("conformance result\n got %v\nwant %v", got, want)
	}
	if !strings.HasPrefix(lines[0], `{"client":"go","final_state":`) {
		t.Fatalf("key order: %s", lines[0])
	}
}

// A second Go worker: fails over from a dead address to the live one,
// drains on request, and on StopWorker kills its running job and exits.
func TestGoWorkerFailoverDrainStop(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	name := goWorker + "-b"
	dead := fmt.Sprintf("localhost:%d", freePort())
	cmd, done, err := startGoWorker(name, "2", dead+","+address, "impl=go-b")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopProcess(cmd, done, syscall.SIGTERM, 30*time.Second) })
	if err := waitWorkerUp(ctx, name); err != nil {
		t.Fatal(err)
	}
	job, err := client.Submit(ctx, crms.JobSpec{Command: []string{"sleep", "300"}, Constraints: map[string]string{"impl": "go-b"}})
	if err != nil {
		t.Fatal(err)
	}
	running, err := client.WaitUntil(ctx, job.ID, func(j *crms.Job) bool { return j.State == crms.StateRunning })
	if err != nil || running.State != crms.StateRunning || running.Worker != name {
		t.Fatalf("job on %s: %+v %v", name, running, err)
	}
	w, err := client.Drain(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if w.State != crms.WorkerDraining {
		t.Fatalf("after Drain: %s", w.State)
	}
	if err := client.Stop(ctx, name); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the worker did not exit after StopWorker")
	}
	if !cmd.ProcessState.Success() {
		t.Errorf("worker exit status %v", cmd.ProcessState)
	}
	final, err := client.Wait(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if final.State != crms.StateKilled {
		t.Fatalf("job on the stopped worker ended %s (%s)", final.State, final.Error)
	}
	if groupAlive(running.PID) {
		t.Fatalf("process group %d outlived its worker", running.PID)
	}
	log, _ := os.ReadFile(filepath.Join(tmpDir, name+".log"))
	if !strings.Contains(string(log), "disconnected from "+dead) && !strings.Contains(string(log), "cannot open a stream to "+dead) {
		t.Logf("worker log:\n%s", log)
		t.Fatalf("the worker did not try %s first", dead)
	}
}
