package worker

import (
	"os"
	"strconv"
	"strings"
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
