package worker

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	crmsv1 "github.com/crms-dev/crms/clients/go/gen/crms/v1"
)

// The run shim (cmd/crms-shim) owns a run's process group so the run
// outlives the worker; it records pid and exit in the run directory. This
// file starts runs through it, re-adopts them and reads its records; the
// TypeScript worker (src/worker/shim.ts) does the same with the same files.

// ackedFile marks a run whose report the control plane acknowledged.
const ackedFile = "acked"

// adoptedPoll is how often a re-adopted run's records are checked.
const adoptedPoll = 200 * time.Millisecond

// fencedError is the error of a run ended because the worker was cut off.
const fencedError = "fenced: the worker was cut off from the control plane for its grace period"

// pidRecord is <run dir>/pid.
type pidRecord struct {
	PID       int   `json:"pid"`
	Start     int64 `json:"start"`
	Shim      int   `json:"shim"`
	StartedMs int64 `json:"started_ms"`
}

// exitRecord is <run dir>/exit.
type exitRecord struct {
	ExitCode *int32 `json:"exit_code"`
	Signal   string `json:"signal"`
	TimedOut bool   `json:"timed_out"`
	Fenced   bool   `json:"fenced"`
	Killed   bool   `json:"killed"`
	Error    string `json:"error"`
	EndedMs  int64  `json:"ended_ms"`
	// Usage, absent from an older shim's record and when the command never ran.
	CPUSeconds  *float64 `json:"cpu_seconds"`
	MaxRSSBytes uint64   `json:"max_rss_bytes"`
	WallSeconds *float64 `json:"wall_seconds"`
	GPUSeconds  float64  `json:"gpu_seconds"`
	// How -memory was enforced: "cgroup" or "rlimit".
	MemoryLimit string `json:"memory_limit"`
}

// usage is the record's usage; nil when it has none.
func (rec *exitRecord) usage() *crmsv1.Usage {
	if rec.CPUSeconds == nil || rec.WallSeconds == nil {
		return nil
	}
	return &crmsv1.Usage{CpuSeconds: *rec.CPUSeconds, MaxRssBytes: rec.MaxRSSBytes, WallSeconds: *rec.WallSeconds, GpuSeconds: rec.GPUSeconds}
}

func readRecord[T any](path string) (*T, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, false
	}
	var v T
	if json.Unmarshal(data, &v) != nil {
		return nil, false
	}
	return &v, true
}

// FindShim is the run shim to use: explicit, else $CRMS_SHIM, else
// crms-shim next to this executable; "" when none exists.
func FindShim(explicit string) string {
	if explicit != "" {
		return explicit
	}
	if env := os.Getenv("CRMS_SHIM"); env != "" {
		return env
	}
	if exe, err := os.Executable(); err == nil {
		candidate := filepath.Join(filepath.Dir(exe), "crms-shim")
		if _, err := os.Stat(candidate); err == nil {
			return candidate
		}
	}
	return ""
}

// processAlive: pid is a live (not zombie) process that started at start
// ticks (0: any start).
func processAlive(pid int, start int64) bool {
	if pid <= 0 {
		return false
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	line := string(data)
	i := strings.LastIndexByte(line, ')')
	if i < 0 || i+2 > len(line) {
		return false
	}
	f := strings.Fields(line[i+2:])
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return false
	}
	return start == 0 || f[19] == strconv.FormatInt(start, 10)
}

// lease is <dataDir>/lease: a deadline in Unix ms until which runs may go on,
// moved forward with each acknowledged heartbeat (see the shim).
type lease struct {
	file     string
	deadline int64
}

func (l *lease) extend(until time.Time) error {
	ms := until.UnixMilli()
	if ms <= l.deadline {
		return nil
	}
	l.deadline = ms
	tmp := l.file + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(ms, 10)+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, l.file)
}

// shimArgs is the shim's command line for a run.
func (r *Run) shimArgs(command []string) []string {
	spec := r.opts.spec
	// The run directory is fd 4 (a run as another user may not reach it by its path).
	args := []string{"-dir-fd", "4", "-notify-fd", "3", "-kill-grace", strconv.Itoa(int(ShutdownGrace / time.Second))}
	if r.opts.leaseFile != "" {
		args = append(args, "-lease", r.opts.leaseFile)
	}
	if spec.GetKeepOnDisconnect() {
		args = append(args, "-keep")
	}
	if t := spec.GetTimeoutSeconds(); t > 0 {
		args = append(args, "-timeout", strconv.Itoa(int(t)), "-timeout-grace", strconv.FormatFloat(r.opts.timeoutGrace.Seconds(), 'f', -1, 64))
	}
	if m := spec.GetResources().GetMemoryBytes(); m > 0 {
		args = append(args, "-memory", strconv.FormatUint(m, 10))
	}
	if n := len(r.opts.gpuIndices); n > 0 {
		args = append(args, "-gpus", strconv.Itoa(n))
	}
	return append(append(args, "--"), command...)
}

// spawnShimAndWait starts the run through the shim (in a session of its own,
// so it outlives the worker) and waits for the shim to exit; the shim tells
// the command's pid on fd 3 and enforces the timeout.
func (r *Run) spawnShimAndWait(command []string, env []string, cwd string, credential *syscall.Credential, stdout, stderr *os.File) Outcome {
	pr, pw, err := os.Pipe()
	if err != nil {
		return Outcome{Error: "cannot start the run shim: " + err.Error()}
	}
	defer pr.Close()
	dirFile, err := os.Open(r.dir)
	if err != nil {
		pw.Close()
		return Outcome{Error: fmt.Sprintf("cannot open the run directory %s: %s", r.dir, errnoText(err))}
	}
	defer dirFile.Close()
	cmd := &exec.Cmd{
		Path:        r.opts.shim,
		Args:        append([]string{r.opts.shim}, r.shimArgs(command)...),
		Env:         env,
		Dir:         cwd,
		Stdout:      stdout,
		Stderr:      stderr,
		ExtraFiles:  []*os.File{pw, dirFile},
		SysProcAttr: &syscall.SysProcAttr{Setsid: true, Credential: credential},
	}
	r.mu.Lock()
	if !r.killDeadline.IsZero() {
		r.mu.Unlock()
		pw.Close()
		return Outcome{Error: errKilledBeforeItStarted}
	}
	if err := cmd.Start(); err != nil {
		r.mu.Unlock()
		pw.Close()
		return Outcome{Error: fmt.Sprintf("cannot start the run shim %s: %s", r.opts.shim, errnoText(err))}
	}
	r.mu.Unlock()
	pw.Close()
	r.shimProcess = cmd.Process
	if line, err := bufio.NewReader(pr).ReadString('\n'); err == nil {
		if pid, _ := strconv.Atoi(strings.TrimSpace(line)); pid > 0 {
			r.mu.Lock()
			r.pid = pid
			if !r.killDeadline.IsZero() {
				deadline := r.killDeadline
				r.killDeadline = time.Time{}
				r.terminateLocked(time.Until(deadline))
			}
			r.mu.Unlock()
			if r.opts.onStart != nil {
				r.opts.onStart(pid)
			}
		}
	}
	_ = cmd.Wait()
	rec, ok := readRecord[exitRecord](filepath.Join(r.dir, "exit"))
	if !ok {
		return Outcome{Error: fmt.Sprintf("the run shim exited (%s) without recording how the run ended", cmd.ProcessState)}
	}
	return r.fromRecord(rec)
}

// fromRecord is the outcome of a shim's exit record, merged with what this
// worker knows (a kill it sent).
func (r *Run) fromRecord(rec *exitRecord) Outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rec.TimedOut {
		r.timedOut = true
	}
	if rec.Fenced && !r.timedOut {
		r.fenced = true
	}
	if rec.Killed && !r.timedOut {
		r.killed = true
	}
	out := Outcome{ExitCode: rec.ExitCode, Signal: rec.Signal, Error: rec.Error, Usage: rec.usage()}
	if out.Error == "" && r.killed {
		out.Error = r.killReason
	}
	if out.Error == "" && r.fenced {
		out.Error = fencedError
	}
	return out
}

// adoptRun follows a run an earlier worker process started through the
// shim, until the shim records its end.
func adoptRun(opts runOptions, rec pidRecord) (*Run, error) {
	dir, err := runDirOf(opts.dataDir, opts.jobID, opts.attempt)
	if err != nil {
		return nil, err
	}
	if opts.tailBytes <= 0 {
		opts.tailBytes = defaultTailBytes
	}
	if opts.spec == nil {
		opts.spec = &crmsv1.JobSpec{}
	}
	r := &Run{jobID: opts.jobID, attempt: opts.attempt, dir: dir, opts: opts, done: make(chan struct{}), detached: make(chan struct{}), pid: rec.PID, adopted: true}
	go func() {
		var out Outcome
		for {
			if x, ok := readRecord[exitRecord](filepath.Join(dir, "exit")); ok {
				out = r.fromRecord(x)
				break
			}
			if !processAlive(rec.Shim, 0) {
				if x, ok := readRecord[exitRecord](filepath.Join(dir, "exit")); ok {
					out = r.fromRecord(x)
					break
				}
				if processAlive(rec.PID, rec.Start) {
					signalGroup(rec.PID, syscall.SIGKILL)
				}
				out = Outcome{Error: "the run shim was gone without recording how the run ended"}
				break
			}
			select {
			case <-r.detached:
				return
			case <-time.After(adoptedPoll):
			}
		}
		for i, name := range []string{"stdout", "stderr"} {
			if f, err := os.Open(filepath.Join(dir, name)); err == nil {
				tail := tailOf(f, opts.tailBytes)
				f.Close()
				if i == 0 {
					out.StdoutTail = tail
				} else {
					out.StderrTail = tail
				}
			}
		}
		r.finish(out)
	}()
	return r, nil
}

// fence ends the run because the worker is cut off (like Kill; the outcome
// says fenced, and the control plane records the run LOST).
func (r *Run) fence(grace time.Duration) {
	if r.ended.Load() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.killDeadline.IsZero() {
		return // already being ended
	}
	if !r.timedOut && !r.killed {
		r.fenced = true
	}
	r.terminateLocked(grace)
}

// fenceIfCutOff: past the lease (the last acknowledged heartbeat + the grace)
// the control plane is about to rerun our jobs elsewhere, so end them first.
// The shims do the same from the lease file; re-adopted runs are left to
// theirs (they know whether the job keeps going on a disconnect).
func (w *Worker) fenceIfCutOff() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.graceSeconds == 0 || w.lease.deadline == 0 || time.Now().UnixMilli() <= w.lease.deadline {
		return
	}
	for _, r := range w.runs {
		if r.adopted || r.opts.spec.GetKeepOnDisconnect() {
			continue
		}
		r.mu.Lock()
		stopping := !r.killDeadline.IsZero()
		r.mu.Unlock()
		if stopping || r.ended.Load() {
			continue
		}
		w.logf("fencing %s: cut off from the control plane for %ds", label(r.jobID, r.attempt), w.graceSeconds)
		r.fence(ShutdownGrace)
	}
}
