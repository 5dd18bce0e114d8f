package crms_test

// Several control-plane addresses in one target ("a:7070,b:7070"): calls
// fail over between replicas, and Submit retries with one request id.

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/crms-dev/crms/clients/go/crms"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type submitted struct {
	job *crms.Job
	err error
}

// heldJob is a job that never runs (killed by the test's cleanup), with a
// label of its own to count it by.
func heldJob(t *testing.T, tag string) crms.JobSpec {
	t.Cleanup(func() {
		ctx := testCtx(t, 30*time.Second)
		jobs, _ := client.ListJobs(ctx, crms.JobFilter{Labels: map[string]string{"test": tag}})
		for _, j := range jobs {
			_, _ = client.Kill(ctx, j.ID, 0)
		}
	})
	return crms.JobSpec{Command: []string{"true"}, Hold: true, Labels: map[string]string{"test": tag}}
}

// jobsTagged counts the jobs heldJob(t, tag) created, asking the dev
// cluster's server directly.
func jobsTagged(t *testing.T, tag string) []*crms.Job {
	t.Helper()
	jobs, err := client.ListJobs(testCtx(t, 30*time.Second), crms.JobFilter{Labels: map[string]string{"test": tag}})
	if err != nil {
		t.Fatal(err)
	}
	return jobs
}

func TestDeadFirstAddressIsPassedOverForEveryCall(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	dead := fmt.Sprintf("localhost:%d", freePort())
	c, err := crms.Dial(ctx, dead+","+address)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	workers, err := c.Workers(ctx)
	if err != nil {
		t.Fatalf("ListWorkers: %v", err)
	}
	if !slices.ContainsFunc(workers, func(w *crms.Worker) bool { return w.Name == goWorker }) {
		t.Fatalf("ListWorkers misses %s: %d workers", goWorker, len(workers))
	}
	if got := c.Conn().Target(); got != address {
		t.Fatalf("address in use after a call: %q, want %q", got, address)
	}
	tag := fmt.Sprintf("dead-first-%d", time.Now().UnixNano())
	job, err := c.Submit(ctx, heldJob(t, tag))
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if job.RequestID == "" {
		t.Fatalf("Submit sent no request id: %+v", job)
	}
	got, err := c.GetJob(ctx, job.ID)
	if err != nil || got.ID != job.ID || got.State != crms.StateHeld {
		t.Fatalf("GetJob: %+v %v", got, err)
	}
	listed, err := c.ListJobs(ctx, crms.JobFilter{Labels: map[string]string{"test": tag}})
	if err != nil || len(listed) != 1 || listed[0].ID != job.ID {
		t.Fatalf("ListJobs: %d jobs, %v", len(listed), err)
	}
	done, err := c.Wait(ctx, mustSubmit(t, c, onGo("true")).ID)
	if err != nil || done.State != crms.StateSucceeded {
		t.Fatalf("Wait: %+v %v", done, err)
	}
}

func mustSubmit(t *testing.T, c *crms.Client, spec crms.JobSpec) *crms.Job {
	t.Helper()
	job, err := c.Submit(testCtx(t, time.Minute), spec)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	return job
}

func TestEveryAddressDeadGivesUnavailableAfterTheSubmitBudget(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	if _, err := crms.Dial(ctx, " , "); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Dial of no address: %v", err)
	}
	target := fmt.Sprintf("localhost:%d,localhost:%d", freePort(), freePort())
	if _, err := crms.Dial(testCtx(t, 300*time.Millisecond), target, crms.WithWaitReady()); !errors.Is(err, crms.ErrUnavailable) {
		t.Fatalf("Dial with WithWaitReady to dead addresses: %v", err)
	}
	c, err := crms.Dial(ctx, target, crms.WithSubmitRetryBudget(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	_, err = c.GetJob(ctx, "1")
	if !errors.Is(err, crms.ErrUnavailable) || status.Code(err) != codes.Unavailable {
		t.Fatalf("GetJob: %v", err)
	}
	start := time.Now()
	_, err = c.Submit(ctx, crms.JobSpec{Command: []string{"true"}})
	took := time.Since(start)
	var e *crms.Error
	if !errors.As(err, &e) || e.Op != "SubmitJob" || !errors.Is(err, crms.ErrUnavailable) || status.Code(err) != codes.Unavailable {
		t.Fatalf("Submit: %v", err)
	}
	// Retried at 100, 300 and 700 ms; the next delay (800 ms) passes the budget.
	if took < 600*time.Millisecond || took > 5*time.Second {
		t.Fatalf("Submit gave up after %s with a 1 s budget", took)
	}
}

func TestSubmitRetriesWithOneRequestIDUntilAReplicaIsUp(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	port := freePort()
	c, err := crms.Dial(ctx, fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tag := fmt.Sprintf("retry-until-up-%d", time.Now().UnixNano())
	spec := heldJob(t, tag)
	result := make(chan submitted, 1)
	go func() {
		job, err := c.Submit(ctx, spec)
		result <- submitted{job, err}
	}()
	select {
	case r := <-result:
		t.Fatalf("Submit returned before any control plane listened on port %d: %+v %v", port, r.job, r.err)
	case <-time.After(time.Second):
	}
	startReplica(t, port)
	var r submitted
	select {
	case r = <-result:
	case <-ctx.Done():
		t.Fatal("Submit did not return once the replica was up")
	}
	if r.err != nil {
		t.Fatalf("Submit: %v", r.err)
	}
	if jobs := jobsTagged(t, tag); len(jobs) != 1 || jobs[0].ID != r.job.ID || jobs[0].RequestID != r.job.RequestID {
		t.Fatalf("%d jobs created by one Submit", len(jobs))
	}
}

func TestKilledReplicaIsFailedOverWithoutAnError(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	replica, replicaCmd, replicaDone := startReplica(t, freePort())
	target := replica + "," + address
	// c makes unary calls; watcher only waits for a job, so its watch has
	// to come back on the next address by itself.
	c, err := crms.Dial(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	watcher, err := crms.Dial(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()

	first := mustSubmit(t, c, onGo("true"))
	if got, err := c.GetJob(ctx, first.ID); err != nil || got.ID != first.ID {
		t.Fatalf("GetJob on the replica: %+v %v", got, err)
	}
	if got := c.Conn().Target(); got != replica {
		t.Fatalf("address in use: %q, want the replica %q", got, replica)
	}

	// A job that runs across the kill, waited for by a watch opened on the replica.
	slow := mustSubmit(t, c, onGo("sleep", "3"))
	watching := make(chan struct{})
	var once sync.Once
	waited := make(chan submitted, 1)
	go func() {
		job, err := watcher.WaitUntil(ctx, slow.ID, func(*crms.Job) bool {
			once.Do(func() { close(watching) })
			return false
		})
		waited <- submitted{job, err}
	}()
	select {
	case <-watching:
	case <-ctx.Done():
		t.Fatal("the watch of the slow job saw nothing")
	}
	if got := watcher.Conn().Target(); got != replica {
		t.Fatalf("watch opened on %q, want the replica %q", got, replica)
	}

	if err := replicaCmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-replicaDone

	got, err := c.GetJob(ctx, first.ID)
	if err != nil || got.ID != first.ID {
		t.Fatalf("GetJob after the replica was killed: %+v %v", got, err)
	}
	if got := c.Conn().Target(); got != address {
		t.Fatalf("address in use after the kill: %q, want %q", got, address)
	}
	after := mustSubmit(t, c, onGo("echo", "after"))
	done, err := c.Wait(ctx, after.ID)
	if err != nil || done.State != crms.StateSucceeded {
		t.Fatalf("Wait for a job submitted after the kill: %+v %v", done, err)
	}
	r := <-waited
	if r.err != nil || r.job.State != crms.StateSucceeded {
		t.Fatalf("Wait across the kill: %+v %v", r.job, r.err)
	}
	if got := watcher.Conn().Target(); got != address {
		t.Fatalf("the watching client uses %q after the kill, want %q", got, address)
	}

	tag := fmt.Sprintf("after-kill-%d", time.Now().UnixNano())
	key := "go-failover-" + tag
	a, existing, err := c.SubmitIdempotent(ctx, key, heldJob(t, tag))
	if err != nil || existing {
		t.Fatalf("first submit of %s: %v existing=%v", key, err, existing)
	}
	b, existing, err := c.SubmitIdempotent(ctx, key, heldJob(t, tag))
	if err != nil || !existing || b.ID != a.ID {
		t.Fatalf("second submit of %s: %+v %v existing=%v", key, b, err, existing)
	}
	if jobs := jobsTagged(t, tag); len(jobs) != 1 {
		t.Fatalf("%d jobs for request id %s", len(jobs), key)
	}
}
