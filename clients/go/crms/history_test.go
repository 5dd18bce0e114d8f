package crms_test

import (
	"errors"
	"testing"
	"time"

	"github.com/crms-dev/crms/clients/go/crms"
)

func TestHistoryListsFinishedJobsNewestFirst(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	tag := map[string]string{"test": "go-history-" + time.Now().Format("150405.000000")}
	var ids []string
	for _, cmd := range []string{"exit 3", "true"} {
		job, err := client.Submit(ctx, crms.JobSpec{Command: []string{"sh", "-c", cmd}, Name: "go-hist", Labels: tag})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.Wait(ctx, job.ID); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, job.ID)
	}
	// The leader writes finished jobs to the history as they end: poll until both are there.
	var got []*crms.Job
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		got = got[:0]
		for job, err := range client.History(ctx, crms.HistoryFilter{Labels: tag, Since: time.Now().Add(-time.Hour), PageSize: 1}) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, job)
		}
		if len(got) == 2 || time.Now().After(deadline) {
			break
		}
	}
	if len(got) != 2 || got[0].ID != ids[1] || got[1].ID != ids[0] {
		t.Fatalf("history %v, want newest first %v", got, ids)
	}
	if got[1].State != crms.StateFailed || got[1].ExitCode == nil || *got[1].ExitCode != 3 {
		t.Fatalf("failed job from history: %+v", got[1])
	}
	for _, err := range client.History(ctx, crms.HistoryFilter{States: []crms.JobState{crms.StateRunning}}) {
		if !errors.Is(err, crms.ErrInvalidArgument) {
			t.Fatalf("RUNNING filter: %v, want ErrInvalidArgument", err)
		}
	}
}
