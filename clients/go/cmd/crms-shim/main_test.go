package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
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
