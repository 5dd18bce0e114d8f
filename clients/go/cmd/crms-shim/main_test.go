package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var shimBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "crms-shim-test-")
	if err != nil {
		panic(err)
	}
	shimBin = filepath.Join(dir, "crms-shim")
	if out, err := exec.Command("go", "build", "-o", shimBin, ".").CombinedOutput(); err != nil {
		panic("go build: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

type record map[string]any

func readRec(t *testing.T, dir, name string) record {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatalf("no %s record: %v", name, err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s record %q: %v", name, b, err)
	}
	return r
}

func runShim(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(shimBin, append([]string{"-dir", dir}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("shim: %v\n%s", err, out)
	}
}

func TestRecordsPidStartAndExit(t *testing.T) {
	dir := t.TempDir()
	runShim(t, dir, "--", "sh", "-c", "cat /proc/$$/stat > "+filepath.Join(dir, "self")+"; exit 3")
	pid := readRec(t, dir, "pid")
	exit := readRec(t, dir, "exit")
	if exit["exit_code"] != float64(3) || exit["fenced"] != false || exit["timed_out"] != false {
		t.Fatalf("exit %v", exit)
	}
	// The recorded start time is the process's own (field 22 of /proc/PID/stat).
	self, _ := os.ReadFile(filepath.Join(dir, "self"))
	s := string(self)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 20 || fields[19] != strconv.FormatInt(int64(pid["start"].(float64)), 10) {
		t.Fatalf("pid record %v, /proc stat %q", pid, s)
	}
}

func TestTimeoutAndCommandNotFound(t *testing.T) {
	dir := t.TempDir()
	runShim(t, dir, "-timeout", "0.3", "--", "sleep", "30")
	exit := readRec(t, dir, "exit")
	if exit["timed_out"] != true || exit["signal"] != "SIGTERM" {
		t.Fatalf("exit %v", exit)
	}
	runShim(t, dir, "--", "no-such-program-here")
	if exit := readRec(t, dir, "exit"); exit["error"] != "command not found: no-such-program-here" {
		t.Fatalf("exit %v", exit)
	}
}

func TestLeaseFencesUnlessKeep(t *testing.T) {
	dir := t.TempDir()
	lease := filepath.Join(dir, "lease")
	soon := strconv.FormatInt(time.Now().Add(500*time.Millisecond).UnixMilli(), 10)
	if err := os.WriteFile(lease, []byte(soon), 0o644); err != nil {
		t.Fatal(err)
	}
	// SIGTERM ignored: SIGKILL after the kill grace.
	runShim(t, dir, "-lease", lease, "-kill-grace", "0.5", "--", "sh", "-c", "trap '' TERM; sleep 30")
	exit := readRec(t, dir, "exit")
	if exit["fenced"] != true || exit["signal"] != "SIGKILL" {
		t.Fatalf("exit %v", exit)
	}
	runShim(t, dir, "-lease", lease, "-keep", "--", "sh", "-c", "sleep 1; exit 5")
	if exit := readRec(t, dir, "exit"); exit["fenced"] != false || exit["exit_code"] != float64(5) {
		t.Fatalf("keep: exit %v", exit)
	}
}

// runWithFiles runs the shim with stdout and stderr files in dir, as a worker does.
func runWithFiles(t *testing.T, dir string, args ...string) time.Duration {
	t.Helper()
	files := [2]*os.File{}
	for i, name := range []string{"stdout", "stderr"} {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files[i] = f
	}
	cmd := exec.Command(shimBin, append([]string{"-dir", dir}, args...)...)
	cmd.Stdout, cmd.Stderr, cmd.Dir = files[0], files[1], dir
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("shim: %v", err)
	}
	return time.Since(t0)
}

// inOrder is the output of a run as the order index tells it.
func inOrder(t *testing.T, dir string) []string {
	t.Helper()
	var streams [2][]byte
	for i, name := range []string{"stdout", "stderr"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		streams[i] = b
	}
	index, err := os.ReadFile(filepath.Join(dir, orderFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(index)%orderRecordBytes != 0 {
		t.Fatalf("order index of %d bytes", len(index))
	}
	var runs []string
	var at [2]int64
	for r := 0; r < len(index); r += orderRecordBytes {
		s := int(index[r]) - 1
		var end int64
		for _, b := range index[r+1 : r+orderRecordBytes] {
			end = end<<8 | int64(b)
		}
		if s < 0 || s > 1 || end < at[s] || end > int64(len(streams[s])) {
			t.Fatalf("record %d: stream %d end %d (at %d of %d)", r/orderRecordBytes, s+1, end, at[s], len(streams[s]))
		}
		runs = append(runs, string(streams[s][at[s]:end]))
		at[s] = end
	}
	if at[0] != int64(len(streams[0])) || at[1] != int64(len(streams[1])) {
		t.Fatalf("index covers %v of %d and %d bytes", at, len(streams[0]), len(streams[1]))
	}
	return runs
}

func TestOutputKeepsTheOrderWritten(t *testing.T) {
	dir := t.TempDir()
	// Each write waits until the one before reached its file (the job's cwd is dir).
	runWithFiles(t, dir, "--", "sh", "-c", "w() { while [ $(cat stdout stderr | wc -c) -lt $1 ]; do sleep 0.01; done; }; "+
		"echo a; w 2; echo b >&2; w 4; echo c; echo c2; w 9; echo d >&2; exit 4")
	if got := inOrder(t, dir); !slices.Equal(got, []string{"a\n", "b\n", "c\nc2\n", "d\n"}) {
		t.Fatalf("runs %q", got)
	}
	if exit := readRec(t, dir, "exit"); exit["exit_code"] != float64(4) {
		t.Fatalf("exit %v", exit)
	}

	// Much output on both streams at once: every byte reaches its file, and the index covers it.
	runWithFiles(t, dir, "--", "sh", "-c", "head -c 3000000 /dev/zero & head -c 2000000 /dev/zero >&2; wait")
	total := 0
	for _, run := range inOrder(t, dir) {
		total += len(run)
	}
	if total != 5_000_000 {
		t.Fatalf("%d bytes copied", total)
	}
}

func TestOutputEndsWithTheGroupEvenIfAnEscapedProcessHoldsIt(t *testing.T) {
	dir := t.TempDir()
	took := runWithFiles(t, dir, "--", "sh", "-c", "echo before; setsid sleep 5 & sleep 0.2; echo after >&2")
	if took > 3*time.Second {
		t.Fatalf("the shim waited %s for a process outside the group", took)
	}
	if got := inOrder(t, dir); !slices.Equal(got, []string{"before\n", "after\n"}) {
		t.Fatalf("runs %q", got)
	}
}

func TestTheJobGetsDefaultSignalDispositions(t *testing.T) {
	dir := t.TempDir()
	runWithFiles(t, dir, "--", "sh", "-c", "grep SigIgn /proc/self/status; yes | head -1")
	if out, _ := os.ReadFile(filepath.Join(dir, "stdout")); string(out) != "SigIgn:\t0000000000000000\ny\n" {
		t.Fatalf("stdout %q", out)
	}
	if errs, _ := os.ReadFile(filepath.Join(dir, "stderr")); len(errs) != 0 {
		t.Fatalf("stderr %q", errs)
	}
}

func num(t *testing.T, r record, name string) float64 {
	t.Helper()
	v, ok := r[name].(float64)
	if !ok {
		t.Fatalf("no %s in %v", name, r)
	}
	return v
}

func TestUsageInTheExitRecord(t *testing.T) {
	dir := t.TempDir()
	// The job's own utime+stime (fields 14 and 15 of /proc/self/stat, in ticks of 1/100 s) at its end.
	runShim(t, dir, "-gpus", "2", "--", "sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; cat /proc/$$/stat > "+filepath.Join(dir, "self"))
	exit := readRec(t, dir, "exit")
	self, _ := os.ReadFile(filepath.Join(dir, "self"))
	s := string(self)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	seen := float64(utime+stime) / 100
	cpu, wall := num(t, exit, "cpu_seconds"), num(t, exit, "wall_seconds")
	// The loop takes 0.47 s of CPU on the slow day of this machine and 0.19 s
	// on the fast one (CI saw it): 0.1 s only proves the job burnt something.
	if seen < 0.1 || cpu < seen || cpu > seen*1.1+0.02 {
		t.Fatalf("cpu_seconds %v, /proc saw %v", cpu, seen)
	}
	if wall < seen-0.02 || num(t, exit, "max_rss_bytes") <= 0 {
		t.Fatalf("exit %v", exit)
	}
	if gpu := num(t, exit, "gpu_seconds"); gpu < 2*wall-0.002 || gpu > 2*wall+0.002 {
		t.Fatalf("gpu_seconds %v for 2 GPUs and %v s", gpu, wall)
	}
	// Orphans count: the shim is the run's subreaper. The subshell exits at
	// once, leaving the loop an orphan; the job waits for its record.
	orphan := filepath.Join(dir, "orphan")
	runShim(t, dir, "--", "sh", "-c", "(sh -c 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; cat /proc/$$/stat > "+orphan+".tmp; mv "+orphan+".tmp "+orphan+"' &); "+
		"while [ ! -e "+orphan+" ]; do sleep 0.05; done; sleep 0.1")
	o, _ := os.ReadFile(orphan)
	f = strings.Fields(string(o)[strings.LastIndexByte(string(o), ')')+2:])
	utime, _ = strconv.Atoi(f[11])
	stime, _ = strconv.Atoi(f[12])
	if burnt, cpu2 := float64(utime+stime)/100, num(t, readRec(t, dir, "exit"), "cpu_seconds"); burnt < 0.05 || cpu2 < burnt {
		t.Fatalf("cpu_seconds %v with an orphan that burnt %v", cpu2, burnt)
	}
	// A command that never ran has no usage.
	runShim(t, dir, "--", "no-such-program-here")
	if exit := readRec(t, dir, "exit"); exit["cpu_seconds"] != nil {
		t.Fatalf("exit %v", exit)
	}
}

func TestMemoryLimit(t *testing.T) {
	dir := t.TempDir()
	check, err := exec.Command(shimBin, "-memory-check").Output()
	if err != nil {
		t.Fatal(err)
	}
	runWithFiles(t, dir, "-memory", strconv.Itoa(64<<20), "--", "sh", "-c", "ulimit -v; cat /proc/self/cgroup")
	exit := readRec(t, dir, "exit")
	out, _ := os.ReadFile(filepath.Join(dir, "stdout"))
	switch exit["memory_limit"] {
	case "rlimit":
		if !strings.HasPrefix(string(check), "address-space limit (RLIMIT_AS), best effort: ") || !strings.HasPrefix(string(out), "65536\n") {
			t.Fatalf("-memory-check %q, stdout %q", check, out)
		}
	case "cgroup":
		if !strings.HasPrefix(string(check), "cgroup v2 memory.max") || !strings.Contains(string(out), "/crms/") {
			t.Fatalf("-memory-check %q, stdout %q", check, out)
		}
	default:
		t.Fatalf("exit %v", exit)
	}
	if exit["exit_code"] != float64(0) {
		t.Fatalf("exit %v", exit)
	}
	// A job past its limit fails.
	runWithFiles(t, dir, "-memory", strconv.Itoa(16<<20), "--", "sh", "-c", "echo started; x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo allocated")
	if out, _ := os.ReadFile(filepath.Join(dir, "stdout")); string(out) != "started\n" {
		t.Fatalf("stdout %q, exit %v", out, readRec(t, dir, "exit"))
	}
	// An unknown program still says so, limit or not.
	runShim(t, dir, "-memory", "1000000", "--", "no-such-program-here")
	if exit := readRec(t, dir, "exit"); exit["error"] != "command not found: no-such-program-here" {
		t.Fatalf("exit %v", exit)
	}
}

// The limit mode starts the program every time under a limit smaller than
// the shim's own address space: setting it and executing must not leave the Go
// runtime room to allocate in between (before, 4 of 600 starts of `true` under
// a 64 MiB limit ended in "fatal error: runtime: out of memory", exit 2).
func TestLimitModeStartsEveryTime(t *testing.T) {
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{64 << 20, 1 << 30} {
		for i := 0; i < 400; i++ {
			out, err := exec.Command(shimBin, "-limit-exec", truePath, "-rlimit-as", strconv.Itoa(limit), "--", "true").CombinedOutput()
			if err != nil {
				t.Fatalf("limit %d, start %d: %v\n%s", limit, i, err, out)
			}
		}
	}
}

// The cgroup v2 path on a stand-in hierarchy of plain files (this test does
// not need cgroup v2): the run's cgroup is made under the root with its
// memory.max, and the job's process joins it (writes to cgroup.procs) before
// it executes the program.
func TestCgroupPathOnAStandInHierarchy(t *testing.T) {
	dir, fake := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(fake, "cgroup.subtree_control"), []byte("cpu memory\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(fake, "crms")
	if out, _ := exec.Command(shimBin, "-memory-check", "-cgroup-root", root).Output(); string(out) != "cgroup v2 memory.max, one cgroup per run under "+root+"\n" {
		t.Fatalf("-memory-check: %q", out)
	}
	cmd := exec.Command(shimBin, "-dir", dir, "-memory", "1048576", "-cgroup-root", root, "--", "sh", "-c", "exit 7")
	cmd.Env = append(os.Environ(), "CRMS_WORKER=w1", "CRMS_JOB_ID=j/1", "CRMS_ATTEMPT=2")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("shim: %v\n%s", err, out)
	}
	exit := readRec(t, dir, "exit")
	if exit["memory_limit"] != "cgroup" || exit["exit_code"] != float64(7) {
		t.Fatalf("exit %v", exit)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "cgroup.subtree_control")); string(b) != "+memory" {
		t.Fatalf("root's subtree_control %q", b)
	}
	runs, _ := filepath.Glob(filepath.Join(root, "w1.j_1.2-*"))
	if len(runs) != 1 {
		t.Fatalf("run cgroups %v", runs)
	}
	for file, want := range map[string]string{"memory.max": "1048576", "memory.swap.max": "0", "cgroup.procs": "0", "cgroup.kill": "1"} {
		if b, _ := os.ReadFile(filepath.Join(runs[0], file)); string(b) != want {
			t.Errorf("%s: %q, want %q", file, b, want)
		}
	}
}
