package worker

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	crmsv1 "github.com/crms-dev/crms/clients/go/gen/crms/v1"
)

type outputChunk struct {
	stream string
	data   string
	offset int64
}

func readChunks(r *Run, follow bool) ([]outputChunk, error) {
	var got []outputChunk
	err := readOutput(context.Background(), r.dir, follow, r.ended.Load, func(s crmsv1.OutputStream, d []byte, off int64) bool {
		name := "stdout"
		if s == crmsv1.OutputStream_OUTPUT_STREAM_STDERR {
			name = "stderr"
		}
		got = append(got, outputChunk{name, string(d), off})
		return true
	})
	return got, err
}

// Each write waits until the one before reached its file (the job's cwd is
// the run directory): the shim keeps the order it read in, which is the
// order written only for writes further apart than it takes to read them.
var interleaved = []string{"sh", "-c", "w() { while [ $(cat stdout stderr | wc -c) -lt $1 ]; do sleep 0.01; done; }; echo a; w 2; echo b >&2; w 4; echo c; w 6; echo d >&2"}

func TestReadOutputInWrittenOrderThroughTheShim(t *testing.T) {
	shim := buildShim(t)
	r, err := startRun(runOptions{
		jobID: "1", attempt: 1, spec: &crmsv1.JobSpec{Command: interleaved}, dataDir: t.TempDir(),
		workerName: "w", baseEnv: os.Environ(), shim: shim,
	})
	if err != nil {
		t.Fatal(err)
	}
	followed := make(chan []outputChunk, 1)
	go func() {
		got, err := readChunks(r, true)
		if err != nil {
			got = append(got, outputChunk{stream: "error", data: err.Error()})
		}
		followed <- got
	}()
	waitDone(t, r, 10*time.Second)
	want := []outputChunk{{"stdout", "a\n", 0}, {"stderr", "b\n", 0}, {"stdout", "c\n", 2}, {"stderr", "d\n", 2}}
	if got, err := readChunks(r, false); err != nil || !slices.Equal(got, want) {
		t.Fatalf("finished run: chunks %v (%v), want %v", got, err, want)
	}
	select {
	case got := <-followed:
		if !slices.Equal(got, want) {
			t.Fatalf("followed: chunks %v, want %v", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not end with the run")
	}
}

func TestReadOutputWithoutOrderIndexIsStdoutThenStderr(t *testing.T) {
	r := runFor(t, &crmsv1.JobSpec{Command: interleaved}, nil)
	waitDone(t, r, 10*time.Second)
	want := []outputChunk{{"stdout", "a\nc\n", 0}, {"stderr", "b\nd\n", 0}}
	if got, err := readChunks(r, false); err != nil || !slices.Equal(got, want) {
		t.Fatalf("chunks %v (%v), want %v", got, err, want)
	}
}
