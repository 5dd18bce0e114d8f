package worker

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// passwdEntry is the /etc/passwd line of name, split, read without os/user.
func passwdEntry(t *testing.T, name string) []string {
	t.Helper()
	data, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Skip(err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if fields := strings.Split(line, ":"); len(fields) >= 6 && fields[0] == name {
			return fields
		}
	}
	t.Skipf("no user %s in /etc/passwd", name)
	return nil
}

func TestLookupRunAsFindsAUserByNameOrUID(t *testing.T) {
	fields := passwdEntry(t, "nobody")
	uid, _ := strconv.ParseUint(fields[2], 10, 32)
	gid, _ := strconv.ParseUint(fields[3], 10, 32)
	want := RunAs{User: "nobody", UID: uint32(uid), GID: uint32(gid), Home: fields[5]}
	for _, key := range []string{"nobody", fields[2]} {
		ra, err := LookupRunAs(key)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if *ra != want {
			t.Errorf("%s: %+v, want %+v", key, *ra, want)
		}
	}
}

func TestLookupRunAsRefusesAnUnknownUser(t *testing.T) {
	for _, name := range []string{"no-such-user-crms", "4000000000"} {
		_, err := LookupRunAs(name)
		if want := `--run-as: no user "` + name + `" in /etc/passwd`; err == nil || err.Error() != want {
			t.Errorf("%s: error %v, want %s", name, err, want)
		}
	}
}

func TestCheckCanRunAsNeedsRootForAnotherUser(t *testing.T) {
	ra := &RunAs{User: "nobody", UID: 65534, GID: 65534, Home: "/"}
	if err := CheckCanRunAs(ra, 0); err != nil {
		t.Errorf("as root: %v", err)
	}
	if err := CheckCanRunAs(ra, 65534); err != nil {
		t.Errorf("as the user itself: %v", err)
	}
	err := CheckCanRunAs(ra, 1000)
	if want := "--run-as nobody needs the worker to run as root (it runs as uid 1000)"; err == nil || err.Error() != want {
		t.Errorf("as uid 1000: error %v, want %s", err, want)
	}
}

// reachableTree makes base/parent/data with base mode 0755 and parent of the
// given mode, owned by root, and returns parent and data; it skips unless the
// test runs as root and nobody can reach the temporary directory.
func reachableTree(t *testing.T, ra *RunAs, parentMode os.FileMode) (parent, data string) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root, to own a directory nobody cannot enter")
	}
	if err := CheckReachable(ra, os.TempDir()); err != nil {
		t.Skipf("the temporary directory is not reachable: %v", err)
	}
	base, err := os.MkdirTemp("", "crms-reachable-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	parent = filepath.Join(base, "parent")
	data = filepath.Join(parent, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	for dir, mode := range map[string]os.FileMode{base: 0o755, parent: parentMode} {
		if err := os.Chmod(dir, mode); err != nil { // MkdirTemp and the umask
			t.Fatal(err)
		}
	}
	return parent, data
}

func TestCheckReachableNamesTheFirstDirectoryTheUserCannotEnter(t *testing.T) {
	passwdEntry(t, "nobody")
	ra, err := LookupRunAs("nobody")
	if err != nil {
		t.Fatal(err)
	}
	parent, data := reachableTree(t, ra, 0o700)
	err = CheckReachable(ra, data)
	want := "--run-as nobody: the data directory " + data + " is not reachable by nobody (" + parent +
		" is mode 0700); give --data-dir in a directory nobody can enter"
	if err == nil || err.Error() != want {
		t.Fatalf("error %v, want %s", err, want)
	}
	if err := CheckReachable(&RunAs{User: "root", UID: 0, GID: 0, Home: "/root"}, data); err != nil {
		t.Errorf("root: %v", err)
	}
	// Searchable by others: passes.
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := CheckReachable(ra, data); err != nil {
		t.Errorf("with %s at 0755: %v", parent, err)
	}
}

func TestCanSearchUsesTheOwnerThenTheGroupThenOthersBits(t *testing.T) {
	ra := &RunAs{User: "u", UID: 1000, GID: 100}
	for _, c := range []struct {
		uid, gid uint32
		mode     uint32
		want     bool
	}{
		{1000, 0, 0o700, true},
		{1000, 100, 0o071, false}, // the owner's bits alone count for the owner
		{0, 100, 0o750, true},
		{0, 100, 0o701, false}, // the group's bits alone count for the group
		{0, 0, 0o751, true},
		{0, 0, 0o770, false},
	} {
		st := &syscall.Stat_t{Uid: c.uid, Gid: c.gid, Mode: syscall.S_IFDIR | c.mode}
		if got := canSearch(ra, st); got != c.want {
			t.Errorf("uid %d gid %d mode %04o: %v, want %v", c.uid, c.gid, c.mode, got, c.want)
		}
	}
}
