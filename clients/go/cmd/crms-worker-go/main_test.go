package main

import (
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
