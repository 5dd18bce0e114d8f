// Command crms-worker-go is a crms worker written in Go: it attaches to a
// control plane (WorkerService.Attach), runs the jobs it is assigned, each in
// its own process group with stdout and stderr in files under the data
// directory, and reports back. Same protocol and behaviour as `crms worker`.
//
//	crms-worker-go --name NAME --slots N --server HOST:PORT[,HOST:PORT...] \
//	    [--label K=V ...] [--data-dir DIR] [--run-as USER] [--verbose]
//
// With --run-as USER (a name or uid in /etc/passwd; the worker runs as root)
// jobs run with that user's uid and gid, USER, LOGNAME and HOME, and own
// their run directory; the worker refuses to start if the user cannot reach
// the data directory.
//
// SIGINT or SIGTERM (or StopWorker from the control plane) kills the running
// jobs (SIGTERM, SIGKILL after 10 s), reports them and exits.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/crms-dev/crms/clients/go/crms"
	"github.com/crms-dev/crms/clients/go/internal/replicas"
	"github.com/crms-dev/crms/clients/go/internal/worker"
)

// Version is reported to the control plane in Hello.
const Version = "0.1.0-go"

type labelFlag map[string]string

func (l labelFlag) String() string {
	parts := make([]string, 0, len(l))
	for k, v := range l {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}

func (l labelFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("expected KEY=VALUE, got %q", s)
	}
	l[k] = v
	return nil
}

func stateDir() string {
	if d := os.Getenv("CRMS_HOME"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "crms")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = os.TempDir()
	}
	return filepath.Join(home, ".local", "state", "crms")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run is the worker with its arguments; it returns the exit code (2 for a
// usage error).
func run(args []string, stderr io.Writer) int {
	host, _ := os.Hostname()
	labels := labelFlag{}
	fs := flag.NewFlagSet("crms-worker-go", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", host, "unique worker name (default: the host name)")
	slots := fs.Int("slots", runtime.NumCPU(), "jobs run at once")
	servers := fs.String("server", crms.DefaultTarget(), "control-plane address(es), comma-separated; tried in turn on each reconnect (default: $CRMS_SERVER or localhost:7070)")
	fs.Var(labels, "label", "label KEY=VALUE matched by job constraints (repeatable)")
	dataDir := fs.String("data-dir", "", "where runs keep their output (default: $CRMS_HOME/worker-NAME, or ~/.local/state/crms/worker-NAME)")
	runAs := fs.String("run-as", "", "run jobs as this user, a name or uid in /etc/passwd (the worker must run as root); it owns their run directories")
	verbose := fs.Bool("verbose", false, "also log every job start and end")
	shim := fs.String("shim", "", "the run shim (crms-shim) that lets runs outlive the worker, so a restart re-adopts them (default: $CRMS_SHIM, or crms-shim next to this program)")
	heartbeat := fs.Duration("heartbeat", 5*time.Second, "heartbeat interval (a smaller one from the control plane wins)")
	ca := fs.String("ca", "", "PEM CA file to verify the control plane with; turns TLS on (default: $CRMS_CA)")
	cert := fs.String("cert", "", "PEM client certificate for mutual TLS (default: $CRMS_CERT)")
	key := fs.String("key", "", "PEM key of the client certificate (default: $CRMS_KEY)")
	token := fs.String("token", "", "API token of role worker bound to this worker's name (default: $CRMS_TOKEN)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: crms-worker-go [--name NAME] [--slots N] [--server HOST:PORT[,...]] [--label K=V ...] [--data-dir DIR] [--run-as USER]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "crms-worker-go: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	// The server's rule, checked before anything is created (the data directory is named after it).
	if err := worker.ValidateName(*name); err != nil {
		fmt.Fprintf(stderr, "crms-worker-go: --name: %v\n", err)
		return 2
	}
	dir := *dataDir
	if dir == "" {
		dir = filepath.Join(stateDir(), "worker-"+*name)
	}
	var account *worker.RunAs
	if *runAs != "" {
		var err error
		account, err = worker.LookupRunAs(*runAs)
		if err == nil {
			err = worker.CheckCanRunAs(account, os.Getuid())
		}
		if err != nil {
			fmt.Fprintf(stderr, "crms-worker-go: %v\n", err)
			return 2
		}
		// The worker makes the data directory at start anyway (Start); make it
		// now so that the user's way into it can be checked.
		if err := os.MkdirAll(dir, 0o755); err != nil {
			fmt.Fprintf(stderr, "crms-worker-go: %v\n", err)
			return 1
		}
		if err := worker.CheckReachable(account, dir); err != nil {
			fmt.Fprintf(stderr, "crms-worker-go: %v\n", err)
			return 2
		}
	}
	addrs := replicas.Split(*servers)
	logger := log.New(stderr, "", 0)
	logf := func(format string, args ...any) {
		logger.Printf("%s worker %s: %s", time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), *name, fmt.Sprintf(format, args...))
	}
	security, err := crms.SecurityFromEnv(crms.Security{CA: *ca, Cert: *cert, Key: *key, Token: *token}).DialOptions()
	if err != nil {
		fmt.Fprintf(stderr, "crms-worker-go: %v\n", err)
		return 2
	}
	opts := worker.Options{
		DialOptions: security,
		Name:        *name,
		Slots:       *slots,
		Servers:     addrs,
		Labels:      labels,
		DataDir:     dir,
		Version:     Version,
		Heartbeat:   *heartbeat,
		Logf:        logf,
		RunAs:       account,
		Shim:        worker.FindShim(*shim),
	}
	if *verbose {
		opts.Debugf = logf
	}
	w, err := worker.New(opts)
	if err != nil {
		fmt.Fprintf(stderr, "crms-worker-go: %v\n", err)
		return 2
	}
	if err := w.Start(); err != nil {
		fmt.Fprintf(stderr, "crms-worker-go: %v\n", err)
		return 1
	}
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	leave := make(chan os.Signal, 1)
	signal.Notify(leave, syscall.SIGUSR2)
	select {
	case <-leave:
		// Exit at once, leaving the runs to the next worker with this name and data dir (an upgrade).
		w.Leave("SIGUSR2")
	case sig := <-signals:
		logf("%s received", sig)
		go func() {
			// A second signal while stopping: no more grace, SIGKILL the runs.
			<-signals
			logf("second signal: killing runs now")
			w.KillAll(0, "worker stopped by a second signal")
		}()
		w.Stop(true, "worker stopped by "+sig.String())
	case <-w.Stopped():
	}
	if why := w.Refusal(); why != "" {
		fmt.Fprintf(stderr, "crms-worker-go: %s\n", why)
		return 1
	}
	return 0
}
