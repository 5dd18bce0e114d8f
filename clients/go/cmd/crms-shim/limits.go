package main

// A run's memory limit (-memory BYTES), and what the run used.
//
// The limit is cgroup v2's memory.max where the machine allows it: the run
// gets a cgroup of its own under CGROUP_ROOT (default <cgroup2 mount>/crms,
// created with the memory controller enabled, which needs the memory
// controller in the mount root's cgroup.subtree_control and a writable
// hierarchy, as for a root worker on a systemd host). The command's process
// joins it before it executes the job's program, and the cgroup is removed
// (after cgroup.kill of anything left) once the run is over. Elsewhere (cgroup
// v1, no memory controller delegated, no permission) the limit is an
// address-space limit (RLIMIT_AS, as `ulimit -v`): best effort, since address
// space is not resident memory (a program that maps much more than it touches
// fails early; threads' arenas and runtimes such as Go or Java reserve far
// more than they use).
//
// Either way the job's process is started through this same executable in
// its limit mode (see limitExec): it joins the cgroup or sets the limit on
// itself, then executes the program, so nothing of the job runs before the
// limit holds.

import (
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// limitExecFlag starts the limit mode: crms-shim -limit-exec PATH
// [-cgroup DIR] [-rlimit-as N] -- ARGV...
const limitExecFlag = "-limit-exec"

// memoryLimit is how one run's memory is limited.
type memoryLimit struct {
	// The run's cgroup directory; "" for RLIMIT_AS.
	cgroup string
	bytes  uint64
}

// kind names the mechanism in the exit record: "cgroup" or "rlimit".
func (m *memoryLimit) kind() string {
	if m.cgroup != "" {
		return "cgroup"
	}
	return "rlimit"
}

func hasWord(text, word string) bool {
	for _, w := range strings.Fields(text) {
		if w == word {
			return true
		}
	}
	return false
}

func readText(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(b)
}

func writeText(path, text string) error {
	return os.WriteFile(path, []byte(text), 0o644)
}

// cgroup2Mount is where the cgroup v2 hierarchy is mounted (its root as seen
// here), "" when it is not.
func cgroup2Mount() string {
	for _, line := range strings.Split(readText("/proc/self/mountinfo"), "\n") {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
		pre, post, ok := strings.Cut(line, " - ")
		if !ok || !strings.HasPrefix(post, "cgroup2 ") {
			continue
		}
		f := strings.Fields(pre)
		if len(f) >= 5 && f[3] == "/" {
			return f[4]
		}
	}
	return ""
}

// cgroupRoot prepares the directory under which runs get their cgroups:
// root (default <cgroup2 mount>/crms), with the memory controller enabled for
// its children. "" and why when cgroup v2 cannot limit memory here.
func cgroupRoot(root string) (string, string) {
	if root == "" {
		mount := cgroup2Mount()
		if mount == "" {
			return "", "no cgroup v2 hierarchy is mounted"
		}
		root = mount + "/crms"
	}
	root = strings.TrimRight(root, "/")
	parent := root[:strings.LastIndexByte(root, '/')+1]
	if !hasWord(readText(parent+"cgroup.subtree_control"), "memory") {
		return "", "the cgroup v2 memory controller is not enabled in " + parent + "cgroup.subtree_control"
	}
	if err := os.Mkdir(root, 0o755); err != nil && !os.IsExist(err) {
		return "", "cannot create " + root + ": " + err.Error()
	}
	if !hasWord(readText(root+"/cgroup.subtree_control"), "memory") {
		if err := writeText(root+"/cgroup.subtree_control", "+memory"); err != nil {
			return "", "cannot enable the memory controller in " + root + "/cgroup.subtree_control: " + err.Error()
		}
	}
	return root, ""
}

// describeMemoryLimits is the line -memory-check prints: which mechanism runs
// with a memory reservation get on this machine.
func describeMemoryLimits(root string) string {
	dir, why := cgroupRoot(root)
	if dir != "" {
		return "cgroup v2 memory.max, one cgroup per run under " + dir
	}
	return "address-space limit (RLIMIT_AS), best effort: " + why
}

// runCgroupName names a run's cgroup after its worker, job and attempt (from
// the job's environment), else after this shim's pid.
func runCgroupName() string {
	name := os.Getenv("CRMS_WORKER") + "." + os.Getenv("CRMS_JOB_ID") + "." + os.Getenv("CRMS_ATTEMPT")
	if name == ".." {
		name = "run"
	}
	var b strings.Builder
	for _, r := range name {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String() + "-" + strconv.Itoa(os.Getpid())
}

// newMemoryLimit sets up the limit of one run: its own cgroup with
// memory.max where cgroup v2 allows, else RLIMIT_AS.
func newMemoryLimit(bytes uint64, root string) *memoryLimit {
	m := &memoryLimit{bytes: bytes}
	dir, _ := cgroupRoot(root)
	if dir == "" {
		return m
	}
	cg := dir + "/" + runCgroupName()
	if err := os.Mkdir(cg, 0o755); err != nil {
		return m
	}
	if writeText(cg+"/memory.max", strconv.FormatUint(bytes, 10)) != nil {
		_ = os.Remove(cg)
		return m
	}
	// Swap would let the run go past its reservation; not every kernel has it.
	_ = writeText(cg+"/memory.swap.max", "0")
	m.cgroup = cg
	return m
}

// argv is the command line that starts program under the limit.
func (m *memoryLimit) argv(program string, argv []string) []string {
	self := append([]string{"/proc/self/exe", limitExecFlag, program}, argvLimit(m)...)
	return append(append(self, "--"), argv...)
}

func argvLimit(m *memoryLimit) []string {
	if m.cgroup != "" {
		return []string{"-cgroup", m.cgroup}
	}
	return []string{"-rlimit-as", strconv.FormatUint(m.bytes, 10)}
}

// oomKilled reports whether the kernel killed a process of the run's cgroup
// for passing memory.max.
func (m *memoryLimit) oomKilled() bool {
	if m.cgroup == "" {
		return false
	}
	for _, line := range strings.Split(readText(m.cgroup+"/memory.events"), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "oom_kill" && f[1] != "0" {
			return true
		}
	}
	return false
}

// release removes the run's cgroup, ending whatever is still in it.
func (m *memoryLimit) release() {
	if m.cgroup == "" {
		return
	}
	_ = writeText(m.cgroup+"/cgroup.kill", "1")
	for i := 0; i < 40; i++ {
		if err := os.Remove(m.cgroup); err == nil || os.IsNotExist(err) {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// limitExec is the limit mode: join the cgroup or set RLIMIT_AS, then
// execute the program with the argv after "--". It never returns.
//
// The address-space limit is set last, with everything execve needs built
// before and the garbage collector off, and execve follows as a raw system
// call: once the limit holds, this Go process is usually over it already (its
// runtime reserves far more address space than 64 MiB), so any allocation of
// the runtime in between (a heap span, syscall.Exec's own argv copies) failed
// with "fatal error: runtime: out of memory" and exit status 2: 2 of 300
// starts of `true` with a 64 MiB limit did so before.
func limitExec(args []string) {
	fail := func(msg string) {
		os.Stderr.WriteString("crms-shim: " + msg + "\n")
		os.Exit(127)
	}
	if len(args) < 1 {
		fail("-limit-exec needs a program")
	}
	program := args[0]
	var argv []string
	var limit *syscall.Rlimit
	for i := 1; i < len(args); i++ {
		switch {
		case args[i] == "--":
			argv = args[i+1:]
			i = len(args)
		case i+1 >= len(args):
			fail(args[i] + " needs a value")
		case args[i] == "-cgroup":
			if err := writeText(args[i+1]+"/cgroup.procs", "0"); err != nil {
				fail("cannot join the run's cgroup " + args[i+1] + ": " + err.Error())
			}
			i++
		case args[i] == "-rlimit-as":
			n, err := strconv.ParseUint(args[i+1], 10, 64)
			if err != nil {
				fail("-rlimit-as needs a number of bytes")
			}
			limit = &syscall.Rlimit{Cur: n, Max: n}
			i++
		default:
			fail("unknown flag " + args[i])
		}
	}
	if len(argv) == 0 {
		fail("no command after --")
	}
	path, errPath := syscall.BytePtrFromString(program)
	argvp, errArgv := syscall.SlicePtrFromStrings(argv)
	envp, errEnv := syscall.SlicePtrFromStrings(os.Environ())
	for _, err := range []error{errPath, errArgv, errEnv} {
		if err != nil {
			fail("cannot start " + argv[0] + ": " + err.Error())
		}
	}
	debug.SetGCPercent(-1)
	runtime.LockOSThread()
	if limit != nil {
		if _, _, e := syscall.RawSyscall(syscall.SYS_SETRLIMIT, uintptr(syscall.RLIMIT_AS), uintptr(unsafe.Pointer(limit)), 0); e != 0 {
			fail("cannot set the address-space limit: " + e.Error())
		}
	}
	_, _, e := syscall.RawSyscall(
		syscall.SYS_EXECVE,
		uintptr(unsafe.Pointer(path)),
		uintptr(unsafe.Pointer(&argvp[0])),
		uintptr(unsafe.Pointer(&envp[0])),
	)
	fail("cannot start " + argv[0] + ": " + e.Error())
}

// usageFields are the exit record's usage fields: CPU time (user + system)
// and the largest resident set of every process of the run this shim waited
// for (it is their subreaper, so orphans count too), wall time from start to
// end, and GPUs reserved times wall time.
func usageFields(wall time.Duration, gpus int) string {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return `"cpu_seconds":` + strconv.FormatFloat(cpu.Seconds(), 'f', 3, 64) +
		`,"max_rss_bytes":` + strconv.FormatInt(ru.Maxrss*1024, 10) +
		`,"wall_seconds":` + strconv.FormatFloat(wall.Seconds(), 'f', 3, 64) +
		`,"gpu_seconds":` + strconv.FormatFloat(wall.Seconds()*float64(gpus), 'f', 3, 64)
}

// becomeSubreaper makes orphans of the run this process's children, so that
// their usage is counted when they are reaped (reapOrphans).
func becomeSubreaper() {
	const prSetChildSubreaper = 36
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0)
}

// reapOrphans waits for every child that has exited (orphans of the run).
func reapOrphans() {
	var ws syscall.WaitStatus
	for {
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || (err != nil && err != syscall.EINTR) {
			return
		}
	}
}
