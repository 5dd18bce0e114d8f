package worker

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
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
