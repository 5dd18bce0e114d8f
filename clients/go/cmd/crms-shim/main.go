// Command crms-shim owns one run of a crms job, so that the run outlives the
// worker process that started it (as containerd-shim and Nomad's executor do
// for their agents). The worker starts it in a session of its own with the
// job's environment, working directory and output files (stdout and stderr);
// the shim starts the job's command in a process group of its own, copies its
// stdout and stderr to those files through pipes (see output.go: it keeps
// the order the two were written in, in output.order), and records in the
// run directory:
//
//	pid   {"pid":N,"start":TICKS,"shim":N,"started_ms":MS} once the command runs
//	      (start is field 22 of /proc/N/stat: with pid, it names the process
//	      even after the pid is reused)
//	exit  {"exit_code":N|"signal":"SIGTERM","ended_ms":MS,"timed_out":B,
//	      "fenced":B,"killed":B,"error":"...","cpu_seconds":F,"max_rss_bytes":N,
//	      "wall_seconds":F,"gpu_seconds":F,"memory_limit":"cgroup"|"rlimit"}
//	      once the command and every process of its group are gone (the
//	      usage fields when the command ran, from wait4's rusage: see
//	      limits.go; memory_limit with -memory; readers ignore fields they do
//	      not know, and take absent usage as not measured)
//
// Both are written to a temporary name and renamed, so a reader sees all or
// nothing. The shim also enforces the job's timeout (counted from the start,
// so it holds while no worker runs) and the worker's lease: -lease names a
// file holding a deadline in Unix milliseconds, which the worker moves forward
// while the control plane acknowledges its heartbeats. Past it the worker is
// dead or cut off, the control plane is about to rerun the job elsewhere, and
// the shim ends the run (SIGTERM, then SIGKILL after -kill-grace seconds) and
// records fenced. -keep (the job's keep_on_disconnect) ignores the lease.
// SIGTERM or SIGINT to the shim ends the run the same way (killed).
// -memory BYTES limits the run's memory (limits.go: cgroup v2 memory.max where
// writable, else RLIMIT_AS); -gpus N is the number of GPUs reserved for it,
// for gpu_seconds. `crms-shim -memory-check` prints which limit runs get here.
//
// Usage:
//
//	crms-shim -dir RUNDIR | -dir-fd N  [-lease FILE] [-kill-grace S] [-timeout S]
//	          [-timeout-grace S] [-keep] [-notify-fd N] [-memory BYTES]
//	          [-gpus N] [-cgroup-root DIR] -- PROGRAM [ARGS...]
//	crms-shim -memory-check [-cgroup-root DIR]
//
// It uses only the standard library's os, syscall and strconv (no fmt, no
// reflection) to stay small: about 1.5 MB resident per run.
package main

import (
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	dir          string
	dirFd        int
	lease        string
	killGrace    time.Duration
	timeout      time.Duration
	timeoutGrace time.Duration
	keep         bool
	notifyFd     int
	memory       uint64
	gpus         int
	cgroupRoot   string
	argv         []string
}

func usage(msg string) {
	os.Stderr.WriteString("crms-shim: " + msg + "\nusage: crms-shim -dir RUNDIR [-lease FILE] [-kill-grace S] [-timeout S] [-timeout-grace S] [-keep] [-notify-fd N] [-memory BYTES] [-gpus N] [-cgroup-root DIR] -- PROGRAM [ARGS...]\n")
	os.Exit(2)
}

func seconds(flag, v string) time.Duration {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 {
		usage(flag + " needs a number of seconds, got " + strconv.Quote(v))
	}
	return time.Duration(f * float64(time.Second))
}

func parseArgs(args []string) options {
	o := options{killGrace: 10 * time.Second, timeoutGrace: 5 * time.Second, notifyFd: -1, dirFd: -1}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			o.argv = args[i+1:]
			break
		}
		if a == "-keep" {
			o.keep = true
			continue
		}
		if i+1 >= len(args) {
			usage(a + " needs a value")
		}
		v := args[i+1]
		i++
		switch a {
		case "-dir":
			o.dir = v
		case "-lease":
			o.lease = v
		case "-kill-grace":
			o.killGrace = seconds(a, v)
		case "-timeout":
			o.timeout = seconds(a, v)
		case "-timeout-grace":
			o.timeoutGrace = seconds(a, v)
		case "-memory":
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				usage("-memory needs a number of bytes, got " + strconv.Quote(v))
			}
			o.memory = n
		case "-gpus":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				usage("-gpus needs a whole number, got " + strconv.Quote(v))
			}
			o.gpus = n
		case "-cgroup-root":
			o.cgroupRoot = v
		case "-notify-fd", "-dir-fd":
			n, err := strconv.Atoi(v)
			if err != nil || n < 3 {
				usage(a + " needs a file descriptor number of 3 or more")
			}
			if a == "-dir-fd" {
				o.dirFd = n
			} else {
				o.notifyFd = n
			}
		default:
			usage("unknown flag " + a)
		}
	}
	if o.dir == "" && o.dirFd < 0 {
		usage("-dir or -dir-fd is required")
	}
	if len(o.argv) == 0 || o.argv[0] == "" {
		usage("no command after --")
	}
	return o
}

// jsonString quotes s as a JSON string.
func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			b.WriteString("\\u00")
			b.WriteByte("0123456789abcdef"[r>>4])
			b.WriteByte("0123456789abcdef"[r&15])
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// writeRecord writes name in the run directory through a temporary file and
// a rename. With -dir-fd the directory is an open descriptor: a run as
// another user (--run-as) may not be able to reach it by its path.
func writeRecord(o *options, name, content string) {
	tmp := "." + name + ".tmp"
	if o.dirFd < 0 {
		if err := os.WriteFile(o.dir+"/"+tmp, []byte(content+"\n"), 0o644); err == nil {
			_ = os.Rename(o.dir+"/"+tmp, o.dir+"/"+name)
		}
		return
	}
	fd, err := syscall.Openat(o.dirFd, tmp, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_TRUNC|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return
	}
	_, err = syscall.Write(fd, []byte(content+"\n"))
	_ = syscall.Close(fd)
	if err == nil {
		_ = syscall.Renameat(o.dirFd, tmp, o.dirFd, name)
	}
}

// startTicks is field 22 of /proc/PID/stat: the process start time in clock
// ticks after boot. 0 when unknown.
func startTicks(pid int) uint64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(data)
	end := strings.LastIndexByte(s, ')')
	if end < 0 || end+2 > len(s) {
		return 0
	}
	fields := strings.Fields(s[end+2:])
	// fields[0] is field 3 (state); starttime is field 22.
	if len(fields) < 20 {
		return 0
	}
	n, _ := strconv.ParseUint(fields[19], 10, 64)
	return n
}

// groupAlive reports whether a live (not zombie) process is in group pgid.
func groupAlive(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); err == syscall.ESRCH {
		return false
	}
	d, err := os.Open("/proc")
	if err != nil {
		return true
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return true
	}
	for _, n := range names {
		if n[0] < '0' || n[0] > '9' {
			continue
		}
		data, err := os.ReadFile("/proc/" + n + "/stat")
		if err != nil {
			continue
		}
		s := string(data)
		end := strings.LastIndexByte(s, ')')
		if end < 0 || end+2 > len(s) {
			continue
		}
		f := strings.Fields(s[end+2:])
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" && f[0] != "X" {
			return true
		}
	}
	return false
}

var signalNames = map[syscall.Signal]string{
	syscall.SIGHUP: "SIGHUP", syscall.SIGINT: "SIGINT", syscall.SIGQUIT: "SIGQUIT", syscall.SIGILL: "SIGILL",
	syscall.SIGTRAP: "SIGTRAP", syscall.SIGABRT: "SIGABRT", syscall.SIGBUS: "SIGBUS", syscall.SIGFPE: "SIGFPE",
	syscall.SIGKILL: "SIGKILL", syscall.SIGUSR1: "SIGUSR1", syscall.SIGSEGV: "SIGSEGV", syscall.SIGUSR2: "SIGUSR2",
	syscall.SIGPIPE: "SIGPIPE", syscall.SIGALRM: "SIGALRM", syscall.SIGTERM: "SIGTERM", syscall.SIGCHLD: "SIGCHLD",
	syscall.SIGCONT: "SIGCONT", syscall.SIGSTOP: "SIGSTOP", syscall.SIGTSTP: "SIGTSTP", syscall.SIGTTIN: "SIGTTIN",
	syscall.SIGTTOU: "SIGTTOU", syscall.SIGURG: "SIGURG", syscall.SIGXCPU: "SIGXCPU", syscall.SIGXFSZ: "SIGXFSZ",
	syscall.SIGVTALRM: "SIGVTALRM", syscall.SIGPROF: "SIGPROF", syscall.SIGWINCH: "SIGWINCH", syscall.SIGIO: "SIGIO",
	syscall.SIGSYS: "SIGSYS",
}

func signalName(s syscall.Signal) string {
	if n, ok := signalNames[s]; ok {
		return n
	}
	return "SIG" + strconv.Itoa(int(s))
}

// lookPath finds program as a shell would: as given when it holds a slash,
// else in PATH. The error is the one a run reports.
func lookPath(program string) (string, string) {
	check := func(p string) syscall.Errno {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			return syscall.ENOENT
		}
		if st.Mode&syscall.S_IFMT == syscall.S_IFDIR || syscall.Access(p, 1) != nil {
			return syscall.EACCES
		}
		return 0
	}
	if strings.Contains(program, "/") {
		switch check(program) {
		case 0:
			return program, ""
		case syscall.EACCES:
			return "", "permission denied: " + program
		default:
			return "", "command not found: " + program
		}
	}
	denied := false
	for _, dir := range strings.Split(os.Getenv("PATH"), ":") {
		if dir == "" {
			dir = "."
		}
		p := dir + "/" + program
		switch check(p) {
		case 0:
			return p, ""
		case syscall.EACCES:
			denied = true
		}
	}
	if denied {
		return "", "permission denied: " + program
	}
	return "", "command not found: " + program
}

func nowMs() int64 { return time.Now().UnixMilli() }

// leaseExpired reads the lease file: a deadline in Unix milliseconds. A file
// that cannot be read or parsed does not expire the lease (the worker writes
// it before it starts any run, and replaces it by rename).
func leaseExpired(path string) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	deadline, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return false
	}
	return nowMs() > deadline
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == limitExecFlag {
		limitExec(os.Args[2:])
	}
	if len(os.Args) > 1 && os.Args[1] == "-memory-check" {
		root := ""
		if len(os.Args) > 3 && os.Args[2] == "-cgroup-root" {
			root = os.Args[3]
		}
		os.Stdout.WriteString(describeMemoryLimits(root) + "\n")
		return
	}
	o := parseArgs(os.Args[1:])
	// The job inherits stdin, stdout and stderr only.
	for _, fd := range []int{o.notifyFd, o.dirFd} {
		if fd >= 0 {
			syscall.CloseOnExec(fd)
		}
	}
	// Caught and dropped rather than ignored: an ignored signal stays ignored
	// across exec, and the job must get SIGPIPE (and SIGHUP) as it would
	// anywhere else.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP, syscall.SIGPIPE)
	stop := make(chan os.Signal, 2)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)

	notify := func(line string) {
		if o.notifyFd < 0 {
			return
		}
		f := os.NewFile(uintptr(o.notifyFd), "notify")
		_, _ = f.WriteString(line + "\n")
		_ = f.Close()
		o.notifyFd = -1
	}
	finish := func(fields string) {
		writeRecord(&o, "exit", "{"+fields+`,"ended_ms":`+strconv.FormatInt(nowMs(), 10)+"}")
		notify("0")
		os.Exit(0)
	}

	path, lookErr := lookPath(o.argv[0])
	if lookErr != "" {
		finish(`"error":` + jsonString(lookErr))
	}
	devnull, err := syscall.Open("/dev/null", syscall.O_RDONLY, 0)
	if err != nil {
		finish(`"error":` + jsonString("cannot open /dev/null: "+err.Error()))
	}
	files := []uintptr{uintptr(devnull), 1, 2}
	out, jobEnds := newOutput(&o)
	if out != nil {
		files[1], files[2] = uintptr(jobEnds[0]), uintptr(jobEnds[1])
	}
	becomeSubreaper()
	argv := o.argv
	var limit *memoryLimit
	if o.memory > 0 {
		limit = newMemoryLimit(o.memory, o.cgroupRoot)
		argv = limit.argv(path, o.argv)
		path = argv[0]
	}
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: files,
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	_ = syscall.Close(devnull)
	if out != nil {
		_ = syscall.Close(jobEnds[0])
		_ = syscall.Close(jobEnds[1])
		if err == nil {
			go out.run()
		}
	}
	if err != nil {
		if limit != nil {
			limit.release()
		}
		msg := "cannot start " + o.argv[0] + ": " + err.Error()
		if err == syscall.ENOENT {
			msg = "command not found: " + o.argv[0]
		} else if err == syscall.EACCES {
			msg = "permission denied: " + o.argv[0]
		}
		finish(`"error":` + jsonString(msg))
	}
	started := nowMs()
	startedAt := time.Now()
	writeRecord(&o, "pid", `{"pid":`+strconv.Itoa(pid)+`,"start":`+strconv.FormatUint(startTicks(pid), 10)+
		`,"shim":`+strconv.Itoa(os.Getpid())+`,"started_ms":`+strconv.FormatInt(started, 10)+"}")
	notify(strconv.Itoa(pid))

	exited := make(chan syscall.WaitStatus, 1)
	go func() {
		var ws syscall.WaitStatus
		for {
			_, err := syscall.Wait4(pid, &ws, 0, nil)
			if err != syscall.EINTR {
				break
			}
		}
		exited <- ws
	}()
	var wall time.Duration

	var timedOut, fenced, killed bool
	var killAt time.Time // when SIGKILL follows the SIGTERM sent; zero before any
	terminate := func(grace time.Duration) {
		at := time.Now().Add(grace)
		if !killAt.IsZero() && !at.Before(killAt) {
			return
		}
		killAt = at
		_ = syscall.Kill(-pid, syscall.SIGTERM)
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var ws syscall.WaitStatus
wait:
	for {
		select {
		case ws = <-exited:
			wall = time.Since(startedAt)
			break wait
		case <-stop:
			if !timedOut && !fenced {
				killed = true
			}
			terminate(o.killGrace)
		case <-tick.C:
			now := time.Now()
			if !killAt.IsZero() && now.After(killAt) {
				_ = syscall.Kill(-pid, syscall.SIGKILL)
			}
			if o.timeout > 0 && !timedOut && !killed && !fenced && now.Sub(time.UnixMilli(started)) >= o.timeout {
				timedOut = true
				terminate(o.timeoutGrace)
			}
			if o.lease != "" && !o.keep && !fenced && !timedOut && !killed && leaseExpired(o.lease) {
				fenced = true
				terminate(o.killGrace)
			}
		}
	}
	// The leader is gone; no process of its group may outlive the run.
	if groupAlive(pid) {
		if killAt.IsZero() {
			killAt = time.Now().Add(2 * time.Second)
			_ = syscall.Kill(-pid, syscall.SIGTERM)
		}
		for groupAlive(pid) && time.Now().Before(killAt) {
			time.Sleep(50 * time.Millisecond)
		}
		if groupAlive(pid) {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			for i := 0; i < 20 && groupAlive(pid); i++ {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	if out != nil {
		out.stop()
	}
	reapOrphans()
	oom := false
	if limit != nil {
		oom = limit.oomKilled()
		limit.release()
	}
	fields := ""
	if ws.Signaled() {
		fields = `"signal":` + jsonString(signalName(ws.Signal()))
	} else {
		fields = `"exit_code":` + strconv.Itoa(ws.ExitStatus())
	}
	errText := ""
	switch {
	case timedOut:
		errText = "timed out after " + strconv.FormatFloat(o.timeout.Seconds(), 'f', -1, 64) + "s"
	case fenced:
		errText = "fenced: the worker was cut off from the control plane for its grace period"
	case killed:
		errText = "killed: the run shim was told to stop"
	case oom:
		errText = "out of memory: the run passed its memory limit of " + strconv.FormatUint(o.memory, 10) + " bytes (cgroup memory.max)"
	}
	fields += `,"timed_out":` + strconv.FormatBool(timedOut) + `,"fenced":` + strconv.FormatBool(fenced) +
		`,"killed":` + strconv.FormatBool(killed) + `,"error":` + jsonString(errText) + "," + usageFields(wall, o.gpus)
	if limit != nil {
		fields += `,"memory_limit":` + jsonString(limit.kind())
	}
	finish(fields)
}
