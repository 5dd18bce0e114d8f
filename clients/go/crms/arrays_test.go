package crms_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/crms-dev/crms/clients/go/crms"
)

func TestArrayAndAfterOnGoWorker(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	arr, err := crms.ParseArraySpec("2-5%2")
	if err != nil {
		t.Fatal(err)
	}
	spec := onGo("sh", "-c", `echo "$CRMS_ARRAY_ID/$CRMS_ARRAY_INDEX"`)
	spec.Array = arr
	parent, err := client.Submit(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if parent.Spec.Array == nil || *parent.Spec.Array != (crms.ArraySpec{First: 2, Last: 5, MaxRunning: 2}) ||
		parent.ArrayCounts == nil || parent.ArrayCounts.Total != 4 {
		t.Fatalf("parent: %+v counts %+v", parent.Spec.Array, parent.ArrayCounts)
	}
	dep, err := crms.ParseDependency(parent.ID + ":finished")
	if err != nil {
		t.Fatal(err)
	}
	after := onGo("true")
	after.After = []crms.Dependency{{JobID: parent.ID}, dep}
	chained, err := client.Submit(ctx, after)
	if err != nil {
		t.Fatal(err)
	}
	want := []crms.Dependency{{JobID: parent.ID, Condition: crms.AfterSucceeded}, {JobID: parent.ID, Condition: crms.AfterFinished}}
	if !slices.Equal(chained.Spec.After, want) {
		t.Fatalf("after: %+v", chained.Spec.After)
	}
	done, err := client.Wait(ctx, chained.ID)
	if err != nil || done.State != crms.StateSucceeded {
		t.Fatalf("chained job: %+v %v", done, err)
	}
	p, err := client.GetJob(ctx, parent.ID)
	if err != nil || p.State != crms.StateSucceeded || p.ArrayCounts.Succeeded != 4 || done.StartTime.Before(p.EndTime) {
		t.Fatalf("array parent: %+v %v", p, err)
	}
	tasks, err := client.ListJobs(ctx, crms.JobFilter{ArrayParent: parent.ID, PageSize: 3})
	if err != nil || len(tasks) != 4 {
		t.Fatalf("tasks: %d %v", len(tasks), err)
	}
	for _, task := range tasks {
		if task.ArrayParent != parent.ID || string(task.StdoutTail) != fmt.Sprintf("%s/%d\n", parent.ID, task.ArrayIndex) {
			t.Fatalf("task %s index %d output %q", task.ID, task.ArrayIndex, task.StdoutTail)
		}
	}

	bad := onGo("true")
	bad.After = []crms.Dependency{{JobID: "999999999999"}}
	if _, err := client.Submit(ctx, bad); !errors.Is(err, crms.ErrNotFound) {
		t.Fatalf("dependency on an unknown job: %v", err)
	}
	if _, err := crms.ParseDependency("12:sometime"); err == nil {
		t.Fatal("bad condition accepted")
	}
}
