package crms_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// The Go worker sends a finished run's whole output to the control plane, so
// that it is served in full after the worker is gone (not only the tails
// kept in the job record).
func TestGoWorkerOutputIsKeptAfterTheWorkerIsGone(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	name := "go-ship-" + time.Now().Format("150405.000000")
	cmd, done, err := startGoWorker(name, "1", address)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); <-done }()
	// 20,000 bytes on stdout, more than the record's tail; a line on stderr.
	job, err := client.Submit(ctx, crms.JobSpec{
		Command:      []string{"sh", "-c", "i=0; while [ $i -lt 2000 ]; do echo 123456789; i=$((i+1)); done; echo oops >&2"},
		TargetWorker: name,
	})
	if err != nil {
		t.Fatal(err)
	}
	if j, err := client.Wait(ctx, job.ID); err != nil || j.State != crms.StateSucceeded {
		t.Fatalf("wait: %v %+v", err, j)
	}
	want := bytes.Repeat([]byte("123456789\n"), 2000)
	// The upload goes on after the finish report: wait until the worker says
	// the control plane has kept the output (its --verbose log), then take
	// the worker away and read again.
	kept := fmt.Sprintf("job %s attempt 1 output kept by the control plane", job.ID)
	for {
		logText, _ := os.ReadFile(filepath.Join(tmpDir, name+".log"))
		if strings.Contains(string(logText), kept) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("worker %s never shipped the output (%q not in its log):\n%s", name, kept, logText)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	<-done
	for {
		out, err := client.ReadOutput(ctx, job.ID)
		if err == nil && !out.Truncated && bytes.Equal(out.Stdout, want) && string(out.Stderr) == "oops\n" {
			return
		}
		if ctx.Err() != nil {
			if out != nil {
				t.Fatalf("output after the worker is gone: %v, truncated=%v, %d stdout bytes, stderr %q", err, out.Truncated, len(out.Stdout), out.Stderr)
			}
			t.Fatalf("output after the worker is gone: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
