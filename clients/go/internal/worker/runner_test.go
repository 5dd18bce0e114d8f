package worker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	crmsv1 "github.com/crms-dev/crms/clients/go/gen/crms/v1"
)

func runFor(t *testing.T, spec *crmsv1.JobSpec, onStart func(int)) *Run {
	t.Helper()
	r, err := startRun(runOptions{
		jobID: "1", attempt: 1, spec: spec, dataDir: t.TempDir(), workerName: "w",
		baseEnv: append(os.Environ(), "MY_TOKEN=secret", "CRMS_SERVER=x"), onStart: onStart,
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func waitDone(t *testing.T, r *Run, d time.Duration) Outcome {
	t.Helper()
	select {
	case <-r.Done():
		return r.Outcome()
	case <-time.After(d):
		t.Fatalf("run did not end within %s", d)
		return Outcome{}
	}
}

func TestRunExitCodeTailsAndEnv(t *testing.T) {
	var started int
	r := runFor(t, &crmsv1.JobSpec{
		Command: []string{"sh", "-c", `echo "$CRMS_JOB_ID/$CRMS_ATTEMPT/$CRMS_WORKER/$EXTRA/${MY_TOKEN:-none}/${CRMS_SERVER:-none}"; echo e >&2; exit 3`},
		Env:     map[string]string{"EXTRA": "yes"},
	}, func(pid int) { started = pid })
	o := waitDone(t, r, 10*time.Second)
	if o.ExitCode == nil || *o.ExitCode != 3 || o.Signal != "" || o.Error != "" || o.Killed || o.TimedOut {
		t.Fatalf("outcome %+v", o)
	}
	if string(o.StdoutTail) != "1/1/w/yes/none/none\n" || string(o.StderrTail) != "e\n" {
		t.Fatalf("tails %q %q", o.StdoutTail, o.StderrTail)
	}
	if started == 0 || started != o.PID {
		t.Fatalf("onStart pid %d, outcome pid %d", started, o.PID)
	}
	data, err := os.ReadFile(filepath.Join(r.dir, "stdout"))
	if err != nil || string(data) != string(o.StdoutTail) {
		t.Fatalf("stdout file %q %v", data, err)
	}
}

func TestRunTailIsCapped(t *testing.T) {
	r := runFor(t, &crmsv1.JobSpec{Command: []string{"sh", "-c", `head -c 5000 /dev/zero | tr '\0' a; printf END`}}, nil)
	o := waitDone(t, r, 10*time.Second)
	if len(o.StdoutTail) != defaultTailBytes || !strings.HasSuffix(string(o.StdoutTail), "aEND") {
		t.Fatalf("tail of %d bytes: ...%q", len(o.StdoutTail), o.StdoutTail[max(0, len(o.StdoutTail)-8):])
	}
}

func TestRunStartErrors(t *testing.T) {
	cases := []struct {
		spec *crmsv1.JobSpec
		want string
	}{
		{&crmsv1.JobSpec{}, "empty command"},
		{&crmsv1.JobSpec{Command: []string{"no-such-program-crms"}}, "command not found: no-such-program-crms"},
		{&crmsv1.JobSpec{Command: []string{"/etc/passwd"}}, "permission denied: /etc/passwd"},
		{&crmsv1.JobSpec{Command: []string{"true"}, WorkingDir: "/no/such/dir"}, "working directory does not exist: /no/such/dir"},
		{&crmsv1.JobSpec{Command: []string{"true"}, WorkingDir: "/etc/passwd"}, "working directory is not a directory: /etc/passwd"},
	}
	for _, c := range cases {
		r := runFor(t, c.spec, func(int) { t.Errorf("%v started", c.spec.Command) })
		o := waitDone(t, r, 10*time.Second)
		if o.Error != c.want || o.PID != 0 || o.ExitCode != nil {
			t.Errorf("%v: outcome %+v, want error %q", c.spec.Command, o, c.want)
		}
	}
	if _, err := startRun(runOptions{jobID: "../x", attempt: 1, dataDir: t.TempDir()}); err == nil {
		t.Error("a job id with a slash was accepted")
	}
}

func TestRunWorkingDirRelative(t *testing.T) {
	r := runFor(t, &crmsv1.JobSpec{Command: []string{"sh", "-c", "mkdir -p sub && pwd"}}, nil)
	o := waitDone(t, r, 10*time.Second)
	if strings.TrimSpace(string(o.StdoutTail)) != r.dir {
		t.Fatalf("default cwd %q, want the run dir %q", o.StdoutTail, r.dir)
	}
}

func TestRunKillReachesTheGroup(t *testing.T) {
	pids := make(chan int, 1)
	r := runFor(t, &crmsv1.JobSpec{Command: []string{"sh", "-c", `trap "" TERM; sleep 300 & sleep 300; wait`}}, func(pid int) { pids <- pid })
	pid := <-pids
	time.Sleep(200 * time.Millisecond) // let the shell start its children
	if !processGroupAlive(pid) {
		t.Fatal("group not alive")
	}
	start := time.Now()
	r.Kill(500*time.Millisecond, "stop it")
	o := waitDone(t, r, 10*time.Second)
	if !o.Killed || o.Error != "stop it" || o.Signal != "SIGKILL" {
		t.Fatalf("outcome %+v", o)
	}
	if took := time.Since(start); took < 400*time.Millisecond || took > 5*time.Second {
		t.Fatalf("kill took %s with a 500ms grace", took)
	}
	if processGroupAlive(pid) {
		t.Fatal("processes of the group outlived the run")
	}
}

func TestRunLeftoversAreEnded(t *testing.T) {
	// The leader exits at once, leaving a background process in its group.
	pids := make(chan int, 1)
	r := runFor(t, &crmsv1.JobSpec{Command: []string{"sh", "-c", "sleep 300 & echo started"}}, func(pid int) { pids <- pid })
	pid := <-pids
	o := waitDone(t, r, 10*time.Second)
	if o.ExitCode == nil || *o.ExitCode != 0 || o.Killed {
		t.Fatalf("outcome %+v", o)
	}
	if processGroupAlive(pid) {
		t.Fatal("the background process outlived the run")
	}
}

func TestRunTimeout(t *testing.T) {
	r := runFor(t, &crmsv1.JobSpec{Command: []string{"sleep", "30"}, TimeoutSeconds: 1}, nil)
	o := waitDone(t, r, 10*time.Second)
	if !o.TimedOut || o.Killed || o.Error != "timed out after 1s" || o.Signal != "SIGTERM" {
		t.Fatalf("outcome %+v", o)
	}
}

func TestRunKilledBeforeStart(t *testing.T) {
	r, err := startRun(runOptions{jobID: "2", attempt: 1, dataDir: t.TempDir(), workerName: "w",
		spec: &crmsv1.JobSpec{Command: []string{"sleep", "30"}}, onStart: func(int) {}})
	if err != nil {
		t.Fatal(err)
	}
	r.Kill(0, "killed")
	o := waitDone(t, r, 10*time.Second)
	// Either it never started, or it started and was killed at once.
	if !o.Killed || (o.PID == 0 && o.Error != errKilledBeforeItStarted) || (o.PID != 0 && o.Signal == "") {
		t.Fatalf("outcome %+v", o)
	}
}

// runAsNobody starts a run as the user nobody, in a data directory that
// nobody can reach (t.TempDir is 0700); it skips unless the test runs as root.
func runAsNobody(t *testing.T, spec *crmsv1.JobSpec, onStart func(int)) (*Run, *RunAs) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("running a job as another user needs root")
	}
	ra, err := LookupRunAs("nobody")
	if err != nil {
		t.Skip(err)
	}
	dataDir, err := os.MkdirTemp("", "crms-run-as-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dataDir) })
	if err := os.Chmod(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	r, err := startRun(runOptions{
		jobID: "1", attempt: 1, spec: spec, dataDir: dataDir, workerName: "w",
		baseEnv: append(os.Environ(), "USER=root", "LOGNAME=root", "HOME=/root"), runAs: ra, onStart: onStart,
	})
	if err != nil {
		t.Fatal(err)
	}
	return r, ra
}

func TestRunAsGivesTheJobTheUsersIDsEnvAndRunDir(t *testing.T) {
	r, ra := runAsNobody(t, &crmsv1.JobSpec{
		Command: []string{"sh", "-c", `echo "$(id -u) $(id -g) $(id -G)"; echo "$USER $LOGNAME $HOME"; echo made > file && cat file`},
		Env:     map[string]string{"HOME": "/from-the-spec"},
	}, nil)
	o := waitDone(t, r, 10*time.Second)
	want := fmt.Sprintf("%d %d %d\nnobody nobody %s\nmade\n", ra.UID, ra.GID, ra.GID, ra.Home)
	if o.ExitCode == nil || *o.ExitCode != 0 || string(o.StdoutTail) != want {
		t.Fatalf("outcome %+v, stdout %q, stderr %q; want stdout %q", o, o.StdoutTail, o.StderrTail, want)
	}
	for _, name := range []string{"", "stdout", "stderr", "file"} {
		info, err := os.Stat(filepath.Join(r.dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st := info.Sys().(*syscall.Stat_t); st.Uid != ra.UID || st.Gid != ra.GID {
			t.Errorf("%s/%s is owned by %d:%d, want %d:%d", r.dir, name, st.Uid, st.Gid, ra.UID, ra.GID)
		}
	}
}

func TestRunAsKillStillReachesTheGroup(t *testing.T) {
	pids := make(chan int, 1)
	r, _ := runAsNobody(t, &crmsv1.JobSpec{Command: []string{"sh", "-c", `trap "" TERM; sleep 300 & sleep 300; wait`}}, func(pid int) { pids <- pid })
	pid := <-pids
	time.Sleep(200 * time.Millisecond) // let the shell start its children
	r.Kill(300*time.Millisecond, "stop it")
	o := waitDone(t, r, 10*time.Second)
	if !o.Killed || o.Error != "stop it" || o.Signal != "SIGKILL" {
		t.Fatalf("outcome %+v", o)
	}
	if processGroupAlive(pid) {
		t.Fatal("processes of the group outlived the run")
	}
}

func TestReadOutputFollow(t *testing.T) {
	r := runFor(t, &crmsv1.JobSpec{Command: []string{"sh", "-c", "echo a; sleep 0.3; echo b >&2; sleep 0.3; echo c"}}, nil)
	type chunk struct {
		stream crmsv1.OutputStream
		data   string
		offset int64
	}
	var got []chunk
	err := readOutput(context.Background(), r.dir, true, r.ended.Load, func(s crmsv1.OutputStream, d []byte, off int64) bool {
		got = append(got, chunk{s, string(d), off})
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr string
	for _, c := range got {
		if c.stream == crmsv1.OutputStream_OUTPUT_STREAM_STDOUT {
			if c.offset != int64(len(stdout)) {
				t.Fatalf("stdout offset %d after %d bytes", c.offset, len(stdout))
			}
			stdout += c.data
		} else {
			stderr += c.data
		}
	}
	if stdout != "a\nc\n" || stderr != "b\n" || len(got) < 3 {
		t.Fatalf("chunks %+v", got)
	}
	if !r.ended.Load() {
		t.Fatal("follow ended before the run")
	}

	// Big output: chunks of at most 64 KiB.
	big := runFor(t, &crmsv1.JobSpec{Command: []string{"head", "-c", "200000", "/dev/zero"}}, nil)
	waitDone(t, big, 10*time.Second)
	var sizes []int
	err = readOutput(context.Background(), big.dir, false, func() bool { return true }, func(_ crmsv1.OutputStream, d []byte, _ int64) bool {
		sizes = append(sizes, len(d))
		return true
	})
	if err != nil || !slices.Equal(sizes, []int{65536, 65536, 65536, 3392}) {
		t.Fatalf("chunk sizes %v %v", sizes, err)
	}

	// A run this worker never had.
	err = readOutput(context.Background(), filepath.Join(t.TempDir(), "runs", "9.1"), false, func() bool { return true }, func(crmsv1.OutputStream, []byte, int64) bool { return true })
	if err == nil || !strings.Contains(err.Error(), "no output on this worker") {
		t.Fatalf("missing run: %v", err)
	}
}

func TestJobEnvFiltersCredentials(t *testing.T) {
	env := jobEnv([]string{"PATH=/bin", "API_KEY=k", "my_secret=s", "DB_PASSWORD=p", "CRMS_X=1", "HOME=/h"},
		map[string]string{"HOME": "/override"}, "5", 2, "wk")
	want := []string{"PATH=/bin", "HOME=/override", "CRMS_JOB_ID=5", "CRMS_ATTEMPT=2", "CRMS_WORKER=wk"}
	if !slices.Equal(env, want) {
		t.Fatalf("env %v, want %v", env, want)
	}
}
