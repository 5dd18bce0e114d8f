package crms_test

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/crms-dev/crms/clients/go/crms"
	crmsv1 "github.com/crms-dev/crms/clients/go/gen/crms/v1"
)

// never is a constraint no worker has: a job with it stays PENDING until killed.
var never = map[string]string{"crms-go-test-never": "true"}

// testQueue is a fresh queue name; the queue, if the test made it, is
// deleted by the test's cleanup.
func testQueue(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("go-%d", time.Now().UnixNano()%1e12)
	t.Cleanup(func() { _ = client.DeleteQueue(testCtx(t, 10*time.Second), name) })
	return name
}

// eventually polls cond every 100 ms until it holds or d has passed.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
	}
}

func TestParseMemory(t *testing.T) {
	for text, want := range map[string]uint64{
		"0": 0, "1234": 1234, "100B": 100, "1.5K": 1536, "512M": 512 << 20, "4G": 4 << 30, "4g": 4 << 30,
		"4GiB": 4 << 30, "4 GB": 4 << 30, "2T": 2 << 40, "2Ki": 2048, "2kb": 2048,
		"1.0000001K": 1024, // rounded down to whole bytes
	} {
		got, err := crms.ParseMemory(text)
		if err != nil || got != want {
			t.Errorf("ParseMemory(%q) = %d, %v; want %d", text, got, err, want)
		}
	}
	for _, bad := range []string{"", "4X", "-1G", "G", "1.2.3M", "4 G B", "1.5", "1P", "99999999999T"} {
		if got, err := crms.ParseMemory(bad); err == nil {
			t.Errorf("ParseMemory(%q) = %d, want an error", bad, got)
		}
	}
}

func TestNewFieldsConvertBothWays(t *testing.T) {
	spec := crms.JobSpec{
		Command:     []string{"true"},
		Resources:   &crms.Resources{CPUs: 2, MemoryBytes: 4 << 30, GPUs: 1, Named: map[string]uint64{"license": 3}},
		Queue:       "gpu",
		Preemptible: true,
	}
	p := spec.Proto()
	if p.GetResources().GetCpus() != 2 || p.GetResources().GetNamed()["license"] != 3 || p.GetQueue() != "gpu" || !p.GetPreemptible() {
		t.Fatalf("proto %v", p)
	}
	if back := crms.JobSpecFromProto(p); !reflect.DeepEqual(back, spec) {
		t.Fatalf("round trip %+v, want %+v", back, spec)
	}
	if (&crms.JobSpec{Command: []string{"true"}}).Proto().Resources != nil {
		t.Fatal("a spec without Resources must leave them unset")
	}

	usage := &crmsv1.Usage{CpuSeconds: 1.5, MaxRssBytes: 1 << 20, WallSeconds: 2, GpuSeconds: 4}
	job := crms.JobFromProto(&crmsv1.Job{
		Id: "7", User: "alice", Queue: "gpu", Usage: usage, PreemptRequested: true, Preemptions: 1, QueuePosition: 3,
		Attempts: []*crmsv1.Attempt{{Number: 1, Outcome: crmsv1.JobState_JOB_STATE_PREEMPTED, Usage: usage, GpuIndices: []uint32{0, 2}}, {Number: 2}},
	})
	wantUsage := &crms.Usage{CPUSeconds: 1.5, MaxRSSBytes: 1 << 20, WallSeconds: 2, GPUSeconds: 4}
	if job.User != "alice" || job.Queue != "gpu" || !job.PreemptRequested || job.Preemptions != 1 || job.QueuePosition != 3 ||
		!reflect.DeepEqual(job.Usage, wantUsage) {
		t.Fatalf("job %+v", job)
	}
	a := job.Attempts[0]
	if a.Outcome != crms.StatePreempted || a.Outcome.String() != "PREEMPTED" || a.Outcome.Final() ||
		!reflect.DeepEqual(a.Usage, wantUsage) || !reflect.DeepEqual(a.GPUIndices, []uint32{0, 2}) {
		t.Fatalf("attempt %+v", a)
	}
	if job.Attempts[1].Usage != nil || crms.JobFromProto(&crmsv1.Job{Id: "8"}).Usage != nil {
		t.Fatal("unset usage must be nil")
	}

	w := crms.WorkerFromProto(&crmsv1.Worker{Capacity: &crmsv1.Resources{Cpus: 8, MemoryBytes: 1 << 30}, Allocated: &crmsv1.Resources{Cpus: 2}})
	if w.Capacity.CPUs != 8 || w.Capacity.MemoryBytes != 1<<30 || w.Allocated.CPUs != 2 {
		t.Fatalf("worker %+v", w)
	}

	q := crms.QueueFromProto(&crmsv1.Queue{Name: "gpu", Weight: 2, MaxGpus: 4, Status: &crmsv1.QueueStatus{
		Pending: 5, TargetShare: 0.5, Users: []*crmsv1.UserShare{{User: "alice", Pending: 5, DecayedUsage: 7}},
	}})
	if q.Weight != 2 || q.MaxGPUs != 4 || !q.CreateTime.IsZero() || q.Status.Pending != 5 ||
		q.Status.Users[0] != (crms.UserShare{User: "alice", Pending: 5, DecayedUsage: 7}) {
		t.Fatalf("queue %+v", q)
	}
	if !reflect.DeepEqual(q.Proto(), &crmsv1.Queue{Name: "gpu", Weight: 2, MaxGpus: 4}) {
		t.Fatalf("queue proto %v", q.Proto())
	}

	for _, g := range []crms.UsageGrouping{crms.UsageByUser, crms.UsageByQueue, crms.UsageByWorker} {
		if back, err := crms.ParseUsageGrouping(g.String()); err != nil || back != g {
			t.Errorf("grouping %v: %v %v", g, back, err)
		}
	}
	if _, err := crms.ParseUsageGrouping("planet"); err == nil {
		t.Error("ParseUsageGrouping(planet): no error")
	}
}

func TestSubmitWithResourcesQueueAndPreemptibleReadsThemBack(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	name := testQueue(t)
	if _, err := client.CreateQueue(ctx, crms.Queue{Name: name}); err != nil {
		t.Fatal(err)
	}
	mem, err := crms.ParseMemory("256M")
	if err != nil {
		t.Fatal(err)
	}
	want := crms.Resources{CPUs: 1, MemoryBytes: mem}
	spec := onGo("true")
	spec.Resources, spec.Queue, spec.Preemptible, spec.Hold = &want, name, true, true
	spec.Labels = map[string]string{"crms.io/owner": "go-alice"}
	job, err := client.Submit(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	got, err := client.GetJob(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range []*crms.Job{job, got} {
		if j.Spec.Resources == nil || !reflect.DeepEqual(*j.Spec.Resources, want) || j.Spec.Queue != name || !j.Spec.Preemptible {
			t.Fatalf("spec %+v (resources %+v)", j.Spec, j.Spec.Resources)
		}
		if j.Queue != name || j.User != "go-alice" {
			t.Fatalf("job queue %q user %q, want %q go-alice", j.Queue, j.User, name)
		}
	}
	if _, err := client.Release(ctx, job.ID); err != nil {
		t.Fatal(err)
	}
	done, err := client.Wait(ctx, job.ID)
	if err != nil || done.State != crms.StateSucceeded || done.Queue != name {
		t.Fatalf("ran: %+v %v", done, err)
	}

	// Unset resources and queue: the spec keeps them unset, the job is in "default".
	plain, err := client.Submit(ctx, crms.JobSpec{Command: []string{"true"}, Hold: true})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Kill(ctx, plain.ID, 0)
	if plain.Spec.Resources != nil || plain.Spec.Queue != "" || plain.Queue != "default" {
		t.Fatalf("plain job: resources %+v spec queue %q queue %q", plain.Spec.Resources, plain.Spec.Queue, plain.Queue)
	}
}

func TestPendingJobsSayWhereTheyStandInTheirQueue(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	name := testQueue(t)
	if _, err := client.CreateQueue(ctx, crms.Queue{Name: name}); err != nil {
		t.Fatal(err)
	}
	owner := "go-bob-" + name
	var ids []string
	for _, labels := range []map[string]string{nil, {"crms.io/owner": owner}} { // the first has no user
		job, err := client.Submit(ctx, crms.JobSpec{Command: []string{"true"}, Constraints: never, Queue: name, Labels: labels})
		if err != nil {
			t.Fatal(err)
		}
		defer client.Kill(ctx, job.ID, 0)
		ids = append(ids, job.ID)
	}
	var first, second *crms.Job
	eventually(t, 30*time.Second, "queue positions", func() bool {
		first, _ = client.GetJob(ctx, ids[0])
		second, _ = client.GetJob(ctx, ids[1])
		return first != nil && second != nil && first.QueuePosition > 0
	})
	if first.QueuePosition >= second.QueuePosition {
		t.Fatalf("positions %d and %d: the older job should be ahead", first.QueuePosition, second.QueuePosition)
	}
	q, err := client.GetQueue(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if q.Status == nil || q.Status.Pending != 2 || q.Status.Running != 0 {
		t.Fatalf("queue status %+v, want 2 pending", q.Status)
	}
	// By name: "" is the job without a user.
	if len(q.Status.Users) != 2 || q.Status.Users[0].User != "" || q.Status.Users[1].User != owner ||
		q.Status.Users[0].Pending != 1 || q.Status.Users[1].Pending != 1 {
		t.Fatalf("users %+v, want \"\" and %s with 1 pending each", q.Status.Users, owner)
	}
}

func TestSubmitErrorsForQueuesAndResources(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	_, err := client.Submit(ctx, crms.JobSpec{Command: []string{"true"}, Queue: "no-such-queue-go"})
	if !errors.Is(err, crms.ErrNotFound) {
		t.Errorf("unknown queue: %v, want ErrNotFound", err)
	}
	// No worker of the test cluster has a GPU or a "go-test-license": refused at submit.
	_, err = client.Submit(ctx, crms.JobSpec{Command: []string{"true"}, Resources: &crms.Resources{GPUs: 1}})
	if !errors.Is(err, crms.ErrInvalidArgument) {
		t.Errorf("a GPU on a cluster without one: %v, want ErrInvalidArgument", err)
	}
	_, err = client.Submit(ctx, crms.JobSpec{Command: []string{"true"}, Resources: &crms.Resources{Named: map[string]uint64{"go-test-license": 1}}})
	if !errors.Is(err, crms.ErrInvalidArgument) {
		t.Errorf("a resource no worker offers: %v, want ErrInvalidArgument", err)
	}
}

func TestQueueCreateGetListUpdateDelete(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	name := testQueue(t)
	made, err := client.CreateQueue(ctx, crms.Queue{Name: name, Weight: 2, MaxRunning: 3, MaxCPUs: 4, Preemptible: true})
	if err != nil {
		t.Fatal(err)
	}
	if made.Name != name || made.Weight != 2 || made.MaxRunning != 3 || made.MaxCPUs != 4 || made.MaxGPUs != 0 || !made.Preemptible ||
		made.CreateTime.IsZero() || made.CreateTime.After(time.Now().Add(time.Second)) {
		t.Fatalf("created %+v", made)
	}
	if _, err := client.CreateQueue(ctx, crms.Queue{Name: name}); !errors.Is(err, crms.ErrAlreadyExists) {
		t.Fatalf("second create: %v, want ErrAlreadyExists", err)
	}

	got, err := client.GetQueue(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if got.Weight != 2 || got.MaxRunning != 3 || got.MaxCPUs != 4 || !got.Preemptible || got.Status == nil ||
		got.Status.Running != 0 || got.Status.Pending != 0 {
		t.Fatalf("got %+v (status %+v)", got, got.Status)
	}
	queues, err := client.ListQueues(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, q := range queues {
		found = found || q.Name == name
	}
	if len(queues) < 2 || queues[0].Name != "default" || !queues[0].CreateTime.IsZero() || !found {
		t.Fatalf("ListQueues: %d queues, first %+v, %s found: %v", len(queues), queues[0], name, found)
	}

	// UpdateQueue replaces every setting: change what GetQueue returned.
	got.Weight, got.MaxGPUs = 0.5, 1
	changed, err := client.UpdateQueue(ctx, *got)
	if err != nil {
		t.Fatal(err)
	}
	if changed.Weight != 0.5 || changed.MaxGPUs != 1 || changed.MaxRunning != 3 || changed.MaxCPUs != 4 || !changed.Preemptible {
		t.Fatalf("updated %+v", changed)
	}
	if again, err := client.GetQueue(ctx, name); err != nil || again.Weight != 0.5 || again.MaxGPUs != 1 {
		t.Fatalf("read after update: %+v %v", again, err)
	}

	// A queue with an unfinished job cannot go; once the job ended it can.
	job, err := client.Submit(ctx, crms.JobSpec{Command: []string{"true"}, Queue: name, Hold: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.DeleteQueue(ctx, name); !errors.Is(err, crms.ErrFailedPrecondition) {
		t.Fatalf("delete with a held job: %v, want ErrFailedPrecondition", err)
	}
	if _, err := client.Kill(ctx, job.ID, 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "delete once its job ended", func() bool {
		err = client.DeleteQueue(ctx, name)
		return !errors.Is(err, crms.ErrFailedPrecondition)
	})
	if err != nil {
		t.Fatal(err)
	}

	if _, err := client.GetQueue(ctx, name); !errors.Is(err, crms.ErrNotFound) {
		t.Errorf("get deleted: %v, want ErrNotFound", err)
	}
	if err := client.DeleteQueue(ctx, name); !errors.Is(err, crms.ErrNotFound) {
		t.Errorf("delete deleted: %v, want ErrNotFound", err)
	}
	if _, err := client.UpdateQueue(ctx, crms.Queue{Name: name, Weight: 1}); !errors.Is(err, crms.ErrNotFound) {
		t.Errorf("update deleted: %v, want ErrNotFound", err)
	}
	if err := client.DeleteQueue(ctx, "default"); !errors.Is(err, crms.ErrFailedPrecondition) {
		t.Errorf("delete default: %v, want ErrFailedPrecondition", err)
	}
	if _, err := client.CreateQueue(ctx, crms.Queue{Name: "Not A Name!"}); !errors.Is(err, crms.ErrInvalidArgument) {
		t.Errorf("bad name: %v, want ErrInvalidArgument", err)
	}
	if _, err := client.CreateQueue(ctx, crms.Queue{Name: name, Weight: -1}); !errors.Is(err, crms.ErrInvalidArgument) {
		t.Errorf("negative weight: %v, want ErrInvalidArgument", err)
	}
}

func TestGetUsageSumsFinishedJobsByUserQueueAndWorker(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	name := testQueue(t)
	if _, err := client.CreateQueue(ctx, crms.Queue{Name: name}); err != nil {
		t.Fatal(err)
	}
	user := "go-usage-" + name
	var done []*crms.Job
	for _, cmd := range []string{"i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done", "exit 3"} {
		spec := onGo("sh", "-c", cmd)
		spec.Queue, spec.Labels = name, map[string]string{"crms.io/owner": user}
		job, err := client.Submit(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		if job, err = client.Wait(ctx, job.ID); err != nil {
			t.Fatal(err)
		}
		done = append(done, job)
	}
	if done[0].State != crms.StateSucceeded || done[1].State != crms.StateFailed {
		t.Fatalf("jobs ended %s and %s", done[0].State, done[1].State)
	}
	// Usage measured by the worker, on the job and on its attempt.
	if u := done[0].Usage; u == nil || u.WallSeconds <= 0 {
		t.Errorf("job usage %+v, want wall seconds", u)
	}
	if u := done[0].Attempts[0].Usage; u == nil || u.WallSeconds <= 0 {
		t.Errorf("attempt usage %+v, want wall seconds", u)
	}

	// The leader writes finished jobs to the history as they end: poll until both are counted.
	var row *crms.UsageRow
	eventually(t, 30*time.Second, "usage of queue "+name, func() bool {
		report, err := client.GetUsage(ctx, crms.UsageOptions{Since: time.Now().Add(-time.Hour), GroupBy: crms.UsageByQueue})
		if err != nil {
			t.Fatal(err)
		}
		row = report.Row(name)
		return row != nil && row.Jobs == 2
	})
	if row.Succeeded != 1 || row.Failed != 1 || row.Killed != 0 || row.CPUHours < 0 || row.WallHours <= 0 || row.GPUHours != 0 {
		t.Fatalf("queue row %+v", row)
	}

	byUser, err := client.GetUsage(ctx, crms.UsageOptions{Since: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if r := byUser.Row(user); r == nil || r.Jobs != 2 {
		t.Fatalf("user row %+v", r)
	}
	if byUser.Since.IsZero() || byUser.Since.After(time.Now().Add(-59*time.Minute)) {
		t.Errorf("since %v, want about an hour ago", byUser.Since)
	}
	for i := 1; i < len(byUser.Rows); i++ {
		if byUser.Rows[i].CPUHours > byUser.Rows[i-1].CPUHours {
			t.Errorf("rows not by CPU hours, largest first: %+v", byUser.Rows)
		}
	}
	byWorker, err := client.GetUsage(ctx, crms.UsageOptions{Since: time.Now().Add(-time.Hour), GroupBy: crms.UsageByWorker})
	if err != nil {
		t.Fatal(err)
	}
	if r := byWorker.Row(goWorker); r == nil || r.Jobs < 2 {
		t.Fatalf("worker row %+v", r)
	}
	if lastWeek, err := client.GetUsage(ctx, crms.UsageOptions{}); err != nil || lastWeek.Row(user) == nil {
		t.Fatalf("the server's default window: %+v %v", lastWeek, err)
	}

	// Nothing ended in the future: a well-formed empty answer.
	future, err := client.GetUsage(ctx, crms.UsageOptions{Since: time.Now().Add(24 * time.Hour)})
	if err != nil || len(future.Rows) != 0 || future.Since.IsZero() {
		t.Fatalf("future: %+v %v", future, err)
	}
}
