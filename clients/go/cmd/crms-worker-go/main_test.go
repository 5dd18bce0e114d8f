package main

import (
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunAsAnUnknownUserIsAUsageError(t *testing.T) {
	var stderr strings.Builder
	code := run([]string{"--run-as", "no-such-user-crms", "--server", "localhost:1"}, &stderr)
	want := "crms-worker-go: --run-as: no user \"no-such-user-crms\" in /etc/passwd\n"
	if code != 2 || stderr.String() != want {
		t.Fatalf("exit code %d, stderr %q; want 2, %q", code, stderr.String(), want)
	}
}

func TestRunAsAUserWhoCannotReachTheDataDirectoryIsRefused(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root, to run jobs as nobody")
	}
	if _, err := user.Lookup("nobody"); err != nil {
		t.Skip(err)
	}
	private := t.TempDir() // owned by root
	for dir, mode := range map[string]os.FileMode{filepath.Dir(private): 0o755, private: 0o700} {
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(private, "worker")
	var stderr strings.Builder
	code := run([]string{"--run-as", "nobody", "--data-dir", dir, "--server", "localhost:1"}, &stderr)
	want := "crms-worker-go: --run-as nobody: the data directory " + dir + " is not reachable by nobody (" +
		private + " is mode 0700); give --data-dir in a directory nobody can enter\n"
	if code != 2 || stderr.String() != want {
		t.Fatalf("exit code %d, stderr %q; want 2, %q", code, stderr.String(), want)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("the data directory was not made: %v", err)
	}
}

func TestAnInvalidNameCreatesNothingAndExitsWithTheReason(t *testing.T) {
	for name, why := range map[string]string{
		"x/../../escape": `contains '/'`,
		"a/b":            `contains '/'`,
		"..":             `'.' and '..'`,
	} {
		base := t.TempDir()
		t.Setenv("CRMS_HOME", filepath.Join(base, "home"))
		var stderr strings.Builder
		code := run([]string{"--name", name, "--server", "localhost:1"}, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), why) {
			t.Errorf("--name %q: exit code %d, stderr %q; want 2 and %q", name, code, stderr.String(), why)
		}
		if entries, _ := os.ReadDir(base); len(entries) != 0 {
			t.Errorf("--name %q created %v under %s", name, entries, base)
		}
	}
}
