package crms_test

// RunJob, Requeue, Resume, ForgetWorker, sorted listings with totals, and the
// kill grace limit and override, against the dev cluster and the Go worker.

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crms-dev/crms/clients/go/crms"
)

// stubborn ignores SIGTERM: only the SIGKILL at the end of the grace ends it.
var stubborn = []string{"sh", "-c", "trap '' TERM; while :; do sleep 0.2; done"}

func TestKillGraceLimitAndShorterGraceOverrideOnGoWorker(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	job, err := client.Submit(ctx, onGo(stubborn...))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.WaitUntil(ctx, job.ID, func(j *crms.Job) bool { return j.State == crms.StateRunning }); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Kill(ctx, job.ID, 3601*time.Second); !errors.Is(err, crms.ErrInvalidArgument) || !strings.Contains(err.Error(), "at most 3600") {
		t.Fatalf("grace 3601 s: want INVALID_ARGUMENT naming 3600, got %v", err)
	}
	if _, err := client.Kill(ctx, job.ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if j, _ := client.GetJob(ctx, job.ID); j.State != crms.StateRunning {
		t.Fatalf("with an hour of grace and SIGTERM ignored the job must still run, got %s", j.State)
	}
	shorter, err := client.Kill(ctx, job.ID, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if shorter.KillGrace != time.Second {
		t.Fatalf("the shorter grace is not recorded: %s", shorter.KillGrace)
	}
	done, err := client.Wait(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.State != crms.StateKilled || done.Signal != "SIGKILL" {
		t.Fatalf("ended %s signal %q", done.State, done.Signal)
	}

	// KillNow (crms kill --force) overrides an hour's grace too.
	job, err = client.Submit(ctx, onGo(stubborn...))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.WaitUntil(ctx, job.ID, func(j *crms.Job) bool { return j.State == crms.StateRunning }); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Kill(ctx, job.ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	if forced, err := client.KillNow(ctx, job.ID); err != nil || !forced.KillForce {
		t.Fatalf("KillNow: %v %+v", err, forced)
	}
	if done, err = client.Wait(ctx, job.ID); err != nil || done.State != crms.StateKilled || done.Signal != "SIGKILL" {
		t.Fatalf("after KillNow: %v %s %q", err, done.State, done.Signal)
	}
}

func TestRunJobAndRequeueOnGoWorker(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	held, err := client.Submit(ctx, crms.JobSpec{Command: []string{"sh", "-c", "exit 5"}, Hold: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.RunJob(ctx, held.ID, "no-such-worker"); !errors.Is(err, crms.ErrNotFound) {
		t.Fatalf("RunJob on an unknown worker: want ErrNotFound, got %v", err)
	}
	ran, err := client.RunJob(ctx, held.ID, goWorker)
	if err != nil {
		t.Fatal(err)
	}
	if ran.RunOn != goWorker || ran.State != crms.StatePending {
		t.Fatalf("after RunJob: run on %q, %s", ran.RunOn, ran.State)
	}
	done, err := client.Wait(ctx, held.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.State != crms.StateFailed || done.Worker != goWorker {
		t.Fatalf("ran %s on %s", done.State, done.Worker)
	}
	if _, err := client.RunJob(ctx, held.ID, goWorker); !errors.Is(err, crms.ErrFailedPrecondition) {
		t.Fatalf("RunJob of a finished job: want ErrFailedPrecondition, got %v", err)
	}
	again, err := client.Requeue(ctx, held.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	if again.Requeues != 1 {
		t.Fatalf("requeues %d", again.Requeues)
	}
	done, err = client.WaitUntil(ctx, held.ID, func(j *crms.Job) bool { return j.Final() && len(j.Attempts) == 2 })
	if err != nil {
		t.Fatal(err)
	}
	if done.Attempts[0].Outcome != crms.StateFailed || done.Attempts[1].Outcome != crms.StateFailed || done.Attempts[1].Worker != goWorker {
		t.Fatalf("attempts after requeue: %+v", done.Attempts)
	}
}

func TestListJobsOrderAndCount(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	labels := map[string]string{"order": time.Now().Format("150405.000000")}
	var ids []string
	for _, name := range []string{"b", "c", "a"} {
		j, err := client.Submit(ctx, crms.JobSpec{Command: []string{"true"}, Name: name, Labels: labels, Hold: true})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
		t.Cleanup(func() { _, _ = client.Kill(ctx, j.ID, 0) })
	}
	newest, err := client.ListJobs(ctx, crms.JobFilter{Labels: labels, OrderBy: "-id", PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(newest) != 3 || newest[0].ID != ids[2] || newest[2].ID != ids[0] {
		t.Fatalf("-id order: %v", jobIDs(newest))
	}
	byName, err := client.ListJobs(ctx, crms.JobFilter{Labels: labels, OrderBy: "name"})
	if err != nil {
		t.Fatal(err)
	}
	if got := byName[0].Spec.Name + byName[1].Spec.Name + byName[2].Spec.Name; got != "abc" {
		t.Fatalf("name order: %s", got)
	}
	if n, err := client.CountJobs(ctx, crms.JobFilter{Labels: labels}); err != nil || n != 3 {
		t.Fatalf("CountJobs: %d %v", n, err)
	}
	if _, err := client.ListJobs(ctx, crms.JobFilter{OrderBy: "size"}); !errors.Is(err, crms.ErrInvalidArgument) {
		t.Fatalf("bad order: want ErrInvalidArgument, got %v", err)
	}
}

func jobIDs(jobs []*crms.Job) []string {
	var out []string
	for _, j := range jobs {
		out = append(out, j.ID)
	}
	return out
}

func TestResumeDownAndForgetAGoWorker(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	name := "go-resume-" + time.Now().Format("150405")
	w, done, err := startGoWorker(name, "1", address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopProcess(w, done, syscall.SIGTERM, 30*time.Second) })
	if err := waitWorkerUp(ctx, name); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Drain(ctx, name); err != nil {
		t.Fatal(err)
	}
	job, err := client.Submit(ctx, crms.JobSpec{Command: []string{"true"}, TargetWorker: name})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if j, _ := client.GetJob(ctx, job.ID); j.State != crms.StatePending {
		t.Fatalf("a draining worker took a job: %s", j.State)
	}
	resumed, err := client.Resume(ctx, name)
	if err != nil || resumed.State != crms.WorkerUp {
		t.Fatalf("Resume: %v %+v", err, resumed)
	}
	if j, err := client.Wait(ctx, job.ID); err != nil || j.State != crms.StateSucceeded || j.Worker != name {
		t.Fatalf("after Resume: %v %+v", err, j)
	}
	logPath := filepath.Join(tmpDir, name+".log")
	if !waitForLine(logPath, "resumed: taking new jobs", 10*time.Second, done) {
		log, _ := os.ReadFile(logPath)
		t.Fatalf("the Go worker did not log its resume:\n%s", log)
	}

	// Stopped by an operator: DOWN, then forgotten.
	if err := client.Stop(ctx, name); err != nil {
		t.Fatal(err)
	}
	<-done
	for {
		wk, err := client.Worker(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if wk.State == crms.WorkerDown {
			if wk.DownReason != "stopped by an operator" || wk.DownTime.IsZero() {
				t.Fatalf("down worker: %+v", wk)
			}
			if st, err := client.ClusterStatus(ctx); err != nil || st.WorkersDown < 1 {
				t.Fatalf("ClusterStatus does not count the DOWN worker: %v %+v", err, st)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("worker %s never went DOWN (%s)", name, wk.State)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := client.ForgetWorker(ctx, name); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Worker(ctx, name); !errors.Is(err, crms.ErrNotFound) {
		t.Fatalf("after ForgetWorker: want ErrNotFound, got %v", err)
	}
}

// The GoCRMS session reads the same in Go as in Python
// (clients/python/tests/test_examples.py checks the same lines).
func TestGoCRMSSessionExample(t *testing.T) {
	out, err := exec.Command("go", "run", "../examples/gocrms-session", address, goWorker).CombinedOutput()
	if err != nil {
		t.Fatalf("gocrms-session: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 6 {
		t.Fatalf("want 6 lines, got:\n%s", out)
	}
	if !strings.HasPrefix(lines[0], "workers: {") || !strings.Contains(lines[0], "'"+goWorker+"': 4") {
		t.Fatalf("workers line: %s", lines[0])
	}
	f := strings.Fields(lines[1])
	if len(f) != 4 || f[0] != "created" || f[3] != "HELD" {
		t.Fatalf("created line: %s", lines[1])
	}
	id := strings.TrimSuffix(f[2], ":")
	if !strings.Contains(lines[2], "'"+id+"': 'HELD'") {
		t.Fatalf("jobs line: %s", lines[2])
	}
	for i, want := range []string{
		"run job " + id + " on " + goWorker + ": PENDING",
		"job " + id + " on " + goWorker + ": SUCCEEDED (exit code 0)",
		`stdouterr: 'crms version 0.1\nPicked up options: none\n'`,
	} {
		if lines[3+i] != want {
			t.Fatalf("line %d: got %q, want %q", 4+i, lines[3+i], want)
		}
	}
}
