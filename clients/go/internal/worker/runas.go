package worker

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// RunAs is the account jobs run as (crms-worker-go --run-as USER), so that a
// job does not run with the worker's (root) privileges.
type RunAs struct {
	User string
	UID  uint32
	GID  uint32
	Home string
}

// LookupRunAs looks a user name (or numeric uid) up in /etc/passwd, like
// resolveRunAs in src/worker/run-as.ts.
func LookupRunAs(name string) (*RunAs, error) {
	u, err := user.Lookup(name)
	var unknownName user.UnknownUserError
	if errors.As(err, &unknownName) {
		if _, parseErr := strconv.ParseUint(name, 10, 32); parseErr == nil { // a uid
			u, err = user.LookupId(name)
		}
	}
	if err != nil {
		var unknownID user.UnknownUserIdError
		if errors.As(err, &unknownName) || errors.As(err, &unknownID) {
			return nil, fmt.Errorf("--run-as: no user %q in /etc/passwd", name)
		}
		return nil, fmt.Errorf("--run-as: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("--run-as: user %q has uid %q", name, u.Uid)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("--run-as: user %q has gid %q", name, u.Gid)
	}
	home := u.HomeDir
	if home == "" {
		home = "/"
	}
	return &RunAs{User: u.Username, UID: uint32(uid), GID: uint32(gid), Home: home}, nil
}

// CheckCanRunAs checks that a worker running as workerUID (os.Getuid()) may
// switch to the account: it must be root, unless it already is that user.
func CheckCanRunAs(ra *RunAs, workerUID int) error {
	if workerUID != 0 && workerUID != int(ra.UID) {
		return fmt.Errorf("--run-as %s needs the worker to run as root (it runs as uid %d)", ra.User, workerUID)
	}
	return nil
}

// CheckReachable checks that the account may enter dataDir, which must exist:
// a job switches user before it changes into its run directory there, so a
// directory on the way that the user cannot search (the default data
// directory of root under /root, mode 0700) would fail every job with a
// misleading "permission denied: PROGRAM". It checks the search (x) bit of
// the owner, the group or others, as for the user's uid and primary gid
// (not supplementary groups or ACLs), of / and each directory down to
// dataDir, along the path as given and, if it goes through symbolic links,
// along the resolved one too. Root passes.
func CheckReachable(ra *RunAs, dataDir string) error {
	if ra.UID == 0 {
		return nil
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return fmt.Errorf("--run-as %s: %w", ra.User, err)
	}
	paths := []string{abs}
	if resolved, err := filepath.EvalSymlinks(abs); err == nil && resolved != abs {
		paths = append(paths, resolved)
	}
	for _, path := range paths {
		for _, dir := range pathDirs(path) {
			var st syscall.Stat_t
			if err := syscall.Stat(dir, &st); err != nil {
				return fmt.Errorf("--run-as %s: %w", ra.User, &os.PathError{Op: "stat", Path: dir, Err: err})
			}
			if !canSearch(ra, &st) {
				return fmt.Errorf("--run-as %s: the data directory %s is not reachable by %s (%s is mode %04o); give --data-dir in a directory %s can enter",
					ra.User, abs, ra.User, dir, st.Mode&0o7777, ra.User)
			}
		}
	}
	return nil
}

// pathDirs lists / and each directory down to the clean absolute path.
func pathDirs(path string) []string {
	dirs := []string{"/"}
	prefix := ""
	for part := range strings.SplitSeq(strings.TrimPrefix(path, "/"), "/") {
		if part == "" {
			continue
		}
		prefix += "/" + part
		dirs = append(dirs, prefix)
	}
	return dirs
}

// canSearch tells whether the account may search a directory: the owner's x
// bit if it owns it, else the group's if its gid is the directory's, else
// others'.
func canSearch(ra *RunAs, st *syscall.Stat_t) bool {
	switch {
	case st.Uid == ra.UID:
		return st.Mode&0o100 != 0
	case st.Gid == ra.GID:
		return st.Mode&0o010 != 0
	default:
		return st.Mode&0o001 != 0
	}
}
