package worker

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	crmsv1 "github.com/crms-dev/crms/clients/go/gen/crms/v1"
	"golang.org/x/sys/unix"
)

// credentialName matches environment variable names the worker never passes
// on to jobs (the same rule as the TypeScript worker).
var credentialName = regexp.MustCompile(`(?i)TOKEN|SECRET|PASSWORD|KEY|CRMS_`)

var plainName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

const (
	defaultTailBytes         = 2048
	defaultTimeoutGrace      = 5 * time.Second
	leftoverGrace            = 2 * time.Second
	groupPoll                = 50 * time.Millisecond
	maxChunkBytes            = 64 * 1024
	followPoll               = 100 * time.Millisecond
	errKilledBeforeItStarted = "killed before it started"
)

// runDirOf is the directory of one run's output files:
// <dataDir>/runs/<jobId>.<attempt>. It refuses a job id that is not a plain
// file name.
func runDirOf(dataDir, jobID string, attempt uint32) (string, error) {
	if !plainName.MatchString(jobID) || jobID == "." || jobID == ".." {
		return "", fmt.Errorf("invalid job id for a run directory: %q", jobID)
	}
	return filepath.Join(dataDir, "runs", jobID+"."+strconv.FormatUint(uint64(attempt), 10)), nil
}

// jobEnv is the environment of a job: the worker's minus credentials, plus
// the spec's, plus CRMS_JOB_ID, CRMS_ATTEMPT and CRMS_WORKER.
func jobEnv(base []string, specEnv map[string]string, jobID string, attempt uint32, workerName string) []string {
	env := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := env[k]; !ok {
			order = append(order, k)
		}
		env[k] = v
	}
	for _, kv := range base {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || credentialName.MatchString(k) {
			continue
		}
		set(k, v)
	}
	for k, v := range specEnv {
		set(k, v)
	}
	set("CRMS_JOB_ID", jobID)
	set("CRMS_ATTEMPT", strconv.FormatUint(uint64(attempt), 10))
	set("CRMS_WORKER", workerName)
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+env[k])
	}
	return out
}

func envValue(env []string, name string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == name {
			return v, true
		}
	}
	return "", false
}

// lookPath finds program in the job's PATH (as execvp in the child would),
// relative entries resolved against cwd. A program with a slash is used as is.
func lookPath(program string, env []string, cwd string) (string, error) {
	if strings.Contains(program, "/") {
		return program, nil
	}
	pathVar, ok := envValue(env, "PATH")
	if !ok {
		pathVar = "/usr/local/bin:/usr/bin:/bin"
	}
	denied := false
	for _, dir := range filepath.SplitList(pathVar) {
		if dir == "" {
			dir = "."
		}
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(cwd, dir)
		}
		candidate := filepath.Join(dir, program)
		info, err := os.Stat(candidate)
		if err != nil || info.IsDir() {
			continue
		}
		if info.Mode()&0o111 == 0 || unix.Access(candidate, unix.X_OK) != nil {
			denied = true
			continue
		}
		return candidate, nil
	}
	if denied {
		return "", syscall.EACCES
	}
	return "", syscall.ENOENT
}

func spawnError(program string, err error) string {
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, fs.ErrNotExist), errors.Is(err, exec.ErrNotFound):
		return "command not found: " + program
	case errors.Is(err, syscall.EACCES), errors.Is(err, fs.ErrPermission):
		return "permission denied: " + program
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		if name := unix.ErrnoName(errno); name != "" {
			return fmt.Sprintf("cannot start %s: %s", program, name)
		}
	}
	return fmt.Sprintf("cannot start %s: %s", program, strings.SplitN(err.Error(), "\n", 2)[0])
}

// errnoText names a file error's errno (ENOENT, ...) like the TypeScript
// worker does, or gives the error's text.
func errnoText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		if name := unix.ErrnoName(errno); name != "" {
			return name
		}
	}
	return err.Error()
}

func signalGroup(pgid int, sig syscall.Signal) {
	if pgid <= 0 {
		return
	}
	_ = syscall.Kill(-pgid, sig)
}

// processGroupAlive reports whether any live process is in the group.
// kill(-pgid, 0) alone also counts zombies, which stay forever under a PID 1
// that does not reap orphans (many containers), so on Linux a positive answer
// is checked against /proc.
func processGroupAlive(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); err != nil {
		return !errors.Is(err, syscall.ESRCH) // EPERM: it exists, but is not ours
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, e := range entries {
		name := e.Name()
		if name == "" || name[0] < '0' || name[0] > '9' {
			continue
		}
		data, err := os.ReadFile("/proc/" + name + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		line := string(data)
		// Fields after the command name (which may hold spaces and parentheses): state ppid pgrp ...
		i := strings.LastIndexByte(line, ')')
		if i < 0 || i+2 > len(line) {
			continue
		}
		fields := strings.Fields(line[i+2:])
		if len(fields) < 3 {
			continue
		}
		if pgrp, err := strconv.Atoi(fields[2]); err == nil && pgrp == pgid && fields[0] != "Z" && fields[0] != "X" {
			return true
		}
	}
	return false
}

// waitGroupGone waits until the group has no live process or the deadline
// passes; true if it emptied.
func waitGroupGone(pgid int, deadline time.Time) bool {
	for {
		if !processGroupAlive(pgid) {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		time.Sleep(min(groupPoll, left))
	}
}

// tailOf is the last n bytes of an open file.
func tailOf(f *os.File, n int) []byte {
	info, err := f.Stat()
	if err != nil {
		return nil
	}
	size := info.Size()
	length := min(size, int64(n))
	if length <= 0 {
		return nil
	}
	buf := make([]byte, length)
	read, _ := f.ReadAt(buf, size-length)
	return buf[:read]
}

// Outcome is how a run ended.
type Outcome struct {
	// Exit code, when the process exited on its own.
	ExitCode *int32
	// Signal name (SIGKILL, ...) when a signal ended it.
	Signal string
	// Why it failed to start or was ended, in one line.
	Error    string
	TimedOut bool
	Killed   bool
	// Ended because the worker was cut off for the grace (fencing).
	Fenced     bool
	StdoutTail []byte
	StderrTail []byte
	// Process id; 0 if it never started.
	PID int
	// What it used (wait4 rusage, from the shim's record or ProcessState);
	// nil when it never ran or the shim's record has none.
	Usage *crmsv1.Usage
}

// runOptions is what startRun needs.
type runOptions struct {
	jobID      string
	attempt    uint32
	spec       *crmsv1.JobSpec
	dataDir    string
	workerName string
	tailBytes  int
	baseEnv    []string
	// Between SIGTERM and SIGKILL when the timeout fires.
	timeoutGrace time.Duration
	// Called once the process exists, with its pid (= its process group id).
	onStart func(pid int)
	// Run the job as this account (the worker must be root); the run
	// directory and its output files are given to it.
	runAs *RunAs
	// The run shim (see shim.go): the run outlives the worker; "" runs it as
	// the worker's child.
	shim string
	// The worker's lease file, given to the shim for fencing; "" for none.
	leaseFile string
	// GPU indices reserved for the run (Assign.gpu_indices):
	// CUDA_VISIBLE_DEVICES, and gpu_seconds.
	gpuIndices []uint32
}

// Run is one run of one job attempt: a process in its own process group,
// stdout and stderr written straight to files in its run directory. done is
// closed (and outcome set) once the process and every process of its group
// are gone.
type Run struct {
	jobID   string
	attempt uint32
	dir     string
	opts    runOptions

	mu           sync.Mutex
	pid          int
	killed       bool
	fenced       bool
	timedOut     bool
	killReason   string
	killDeadline time.Time
	killTimer    *time.Timer

	ended   atomic.Bool
	done    chan struct{}
	outcome Outcome

	// Re-adopted from an earlier worker process.
	adopted     bool
	shimProcess *os.Process
	detached    chan struct{}
	detachOnce  sync.Once
}

// Detach stops watching the run (it goes on in its shim); Done never closes.
func (r *Run) Detach() {
	r.detachOnce.Do(func() { close(r.detached) })
	if p := r.shimProcess; p != nil {
		_ = p.Release()
	}
}

// finish records the outcome and closes done.
func (r *Run) finish(out Outcome) {
	r.mu.Lock()
	out.TimedOut = r.timedOut
	out.Killed = r.killed
	out.Fenced = r.fenced
	out.PID = r.pid
	if r.killTimer != nil {
		r.killTimer.Stop()
	}
	r.mu.Unlock()
	r.outcome = out
	r.ended.Store(true)
	close(r.done)
}

// startRun starts one run. It returns an error only for a job id that cannot
// name a run directory; every other problem ends up in the outcome.
func startRun(opts runOptions) (*Run, error) {
	dir, err := runDirOf(opts.dataDir, opts.jobID, opts.attempt)
	if err != nil {
		return nil, err
	}
	if opts.tailBytes <= 0 {
		opts.tailBytes = defaultTailBytes
	}
	if opts.timeoutGrace <= 0 {
		opts.timeoutGrace = defaultTimeoutGrace
	}
	if opts.spec == nil {
		opts.spec = &crmsv1.JobSpec{}
	}
	r := &Run{jobID: opts.jobID, attempt: opts.attempt, dir: dir, opts: opts, done: make(chan struct{}), detached: make(chan struct{})}
	go func() { r.finish(r.execute()) }()
	return r, nil
}

// PID is the process id (and process group id) once started, else 0.
func (r *Run) PID() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pid
}

// Done is closed when the run has ended; Outcome is valid then.
func (r *Run) Done() <-chan struct{} { return r.done }

// Outcome is how the run ended; valid once Done is closed.
func (r *Run) Outcome() Outcome { <-r.done; return r.outcome }

// Kill ends the run: SIGTERM to its process group now, SIGKILL to the group
// after grace. Before the process exists, it is simply never started. A
// second call can only shorten the grace.
func (r *Run) Kill(grace time.Duration, reason string) {
	if r.ended.Load() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.timedOut && !r.killed {
		r.killed = true
		r.killReason = reason
	}
	r.terminateLocked(grace)
}

func (r *Run) terminateLocked(grace time.Duration) {
	deadline := time.Now().Add(max(0, grace))
	if !r.killDeadline.IsZero() && !deadline.Before(r.killDeadline) {
		return
	}
	r.killDeadline = deadline
	if r.pid == 0 {
		return // spawnAndWait checks the deadline (under mu) before it starts the process
	}
	pid := r.pid
	signalGroup(pid, syscall.SIGTERM)
	if r.killTimer != nil {
		r.killTimer.Stop()
	}
	r.killTimer = time.AfterFunc(time.Until(deadline), func() {
		if !r.ended.Load() {
			signalGroup(pid, syscall.SIGKILL)
		}
	})
}

func (r *Run) execute() Outcome {
	spec := r.opts.spec
	command := spec.GetCommand()
	if len(command) == 0 || command[0] == "" {
		return Outcome{Error: "empty command"}
	}
	program := command[0]
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return Outcome{Error: fmt.Sprintf("cannot create run directory %s: %s", r.dir, errnoText(err))}
	}
	if err := r.giveToRunAs(r.dir); err != nil {
		return Outcome{Error: fmt.Sprintf("cannot create run directory %s: %s", r.dir, errnoText(err))}
	}
	cwd := r.dir
	if wd := spec.GetWorkingDir(); wd != "" {
		if filepath.IsAbs(wd) {
			cwd = filepath.Clean(wd)
		} else {
			cwd = filepath.Join(r.dir, wd)
		}
		info, err := os.Stat(cwd)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return Outcome{Error: "working directory does not exist: " + cwd}
		case err != nil:
			return Outcome{Error: fmt.Sprintf("working directory not usable: %s (%s)", cwd, errnoText(err))}
		case !info.IsDir():
			return Outcome{Error: "working directory is not a directory: " + cwd}
		}
	}
	r.mu.Lock()
	killedEarly := !r.killDeadline.IsZero()
	r.mu.Unlock()
	if killedEarly {
		return Outcome{Error: errKilledBeforeItStarted}
	}

	stdout, err := os.OpenFile(filepath.Join(r.dir, "stdout"), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return Outcome{Error: fmt.Sprintf("cannot create output files in %s: %s", r.dir, errnoText(err))}
	}
	defer stdout.Close()
	stderr, err := os.OpenFile(filepath.Join(r.dir, "stderr"), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return Outcome{Error: fmt.Sprintf("cannot create output files in %s: %s", r.dir, errnoText(err))}
	}
	defer stderr.Close()
	for _, f := range []*os.File{stdout, stderr} {
		if err := r.giveToRunAs(f.Name()); err != nil {
			return Outcome{Error: fmt.Sprintf("cannot create output files in %s: %s", r.dir, errnoText(err))}
		}
	}

	out := r.spawnAndWait(program, command, cwd, stdout, stderr)
	out.StdoutTail = tailOf(stdout, r.opts.tailBytes)
	out.StderrTail = tailOf(stderr, r.opts.tailBytes)
	return out
}

// giveToRunAs makes the run-as account (if any) the owner of a file of the run.
func (r *Run) giveToRunAs(path string) error {
	if ra := r.opts.runAs; ra != nil {
		return os.Chown(path, int(ra.UID), int(ra.GID))
	}
	return nil
}

func (r *Run) spawnAndWait(program string, command []string, cwd string, stdout, stderr *os.File) Outcome {
	// Pdeathsig fires when the OS thread that forked the child exits, not the
	// process: keep this goroutine on its thread until the child is reaped,
	// so the Go runtime never retires that thread under a live run.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	spec := r.opts.spec
	env := jobEnv(r.opts.baseEnv, spec.GetEnv(), r.jobID, r.attempt, r.opts.workerName)
	var credential *syscall.Credential
	if ra := r.opts.runAs; ra != nil {
		// exec.Cmd keeps the last value of a name.
		env = append(env, "USER="+ra.User, "LOGNAME="+ra.User, "HOME="+ra.Home)
		// No Groups: root's supplementary groups are dropped (setgroups needs
		// root, so a worker that already runs as the user keeps its own).
		credential = &syscall.Credential{Uid: ra.UID, Gid: ra.GID, NoSetGroups: os.Getuid() != 0}
	}
	if gpus := gpuEnv(r.opts.gpuIndices); gpus != "" {
		env = append(env, gpus)
	}
	if r.opts.shim != "" {
		return r.spawnShimAndWait(command, env, cwd, credential, stdout, stderr)
	}
	path, err := lookPath(program, env, cwd)
	if err != nil {
		return Outcome{Error: spawnError(program, err)}
	}
	args := command
	if memory := spec.GetResources().GetMemoryBytes(); memory > 0 {
		path, args = limitedArgv(memory, command)
	}
	cmd := &exec.Cmd{
		Path:   path,
		Args:   args,
		Env:    env,
		Dir:    cwd,
		Stdin:  nil, // /dev/null
		Stdout: stdout,
		Stderr: stderr,
		SysProcAttr: &syscall.SysProcAttr{
			// Its own process group, so a kill reaches every process it starts.
			Setpgid: true,
			// If the worker dies without ending its runs, the leader goes too
			// (the control plane requeues the job; it must not run twice).
			// (Go sets it after the switch to Credential, which clears it.)
			Pdeathsig:  syscall.SIGKILL,
			Credential: credential,
		},
	}

	r.mu.Lock()
	if !r.killDeadline.IsZero() {
		// Killed while the run was being prepared: never start it.
		r.mu.Unlock()
		return Outcome{Error: errKilledBeforeItStarted}
	}
	if err := cmd.Start(); err != nil {
		r.mu.Unlock()
		return Outcome{Error: spawnError(program, err)}
	}
	pid := cmd.Process.Pid
	startedAt := time.Now()
	r.pid = pid
	var timeoutTimer *time.Timer
	if t := spec.GetTimeoutSeconds(); t > 0 {
		timeoutTimer = time.AfterFunc(time.Duration(t)*time.Second, func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.killed || r.ended.Load() {
				return
			}
			r.timedOut = true
			r.terminateLocked(r.opts.timeoutGrace)
		})
	}
	r.mu.Unlock()
	if r.opts.onStart != nil {
		r.opts.onStart(pid)
	}

	_ = cmd.Wait() // the status is in ProcessState; a non-zero exit is not an error here
	wall := time.Since(startedAt)
	if timeoutTimer != nil {
		timeoutTimer.Stop()
	}

	// The leader is gone; no process of its group may outlive the run.
	if processGroupAlive(pid) {
		r.mu.Lock()
		deadline := r.killDeadline
		if deadline.IsZero() {
			signalGroup(pid, syscall.SIGTERM)
			deadline = time.Now().Add(leftoverGrace)
		}
		r.mu.Unlock()
		if !waitGroupGone(pid, deadline) {
			signalGroup(pid, syscall.SIGKILL)
			waitGroupGone(pid, time.Now().Add(time.Second))
		}
	}

	out := Outcome{}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		out.Usage = &crmsv1.Usage{
			CpuSeconds:  (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds(),
			MaxRssBytes: uint64(ru.Maxrss) * 1024,
			WallSeconds: wall.Seconds(),
			GpuSeconds:  wall.Seconds() * float64(len(r.opts.gpuIndices)),
		}
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
		switch {
		case ws.Exited():
			code := int32(ws.ExitStatus())
			out.ExitCode = &code
		case ws.Signaled():
			out.Signal = unix.SignalName(ws.Signal())
			if out.Signal == "" {
				out.Signal = "SIG" + strconv.Itoa(int(ws.Signal()))
			}
		}
	}
	r.mu.Lock()
	switch {
	case r.timedOut:
		out.Error = fmt.Sprintf("timed out after %ds", spec.GetTimeoutSeconds())
	case r.killed:
		out.Error = r.killReason
	case r.fenced:
		out.Error = fencedError
	}
	r.mu.Unlock()
	return out
}
