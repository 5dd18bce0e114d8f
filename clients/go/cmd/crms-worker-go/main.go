// Command crms-worker-go is a crms worker written in Go: it attaches to a
// control plane (WorkerService.Attach), runs the jobs it is assigned, each in
// its own process group with stdout and stderr in files under the data
// directory, and reports back. Same protocol and behaviour as `crms worker`.
//
//	crms-worker-go --name NAME --slots N --server HOST:PORT[,HOST:PORT...] \
//	    [--label K=V ...] [--data-dir DIR] [--run-as USER] [--verbose] \
//	    [--cpus N] [--memory 32G] [--gpus N] [--resource NAME=N ...]
//
// It offers the CPUs, memory and GPUs it detects (runtime.NumCPU(),
// MemTotal of /proc/meminfo, the lines of `nvidia-smi -L`) unless --cpus,
// --memory (bytes, or K, M, G, T: powers of 1024) and --gpus say otherwise,
// and named resources given by --resource; --slots stays the number of jobs
// at once. A job's memory reservation is its limit (the run shim's cgroup v2
// memory.max or RLIMIT_AS; see cmd/crms-shim/limits.go), its reserved GPUs
// its CUDA_VISIBLE_DEVICES, and each report carries what the run used.
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
	"strconv"
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

// resourceFlag is --resource NAME=N (repeatable).
type resourceFlag map[string]uint64

func (r resourceFlag) String() string {
	parts := make([]string, 0, len(r))
	for k, v := range r {
		parts = append(parts, k+"="+strconv.FormatUint(v, 10))
	}
	return strings.Join(parts, ",")
}

func (r resourceFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || !worker.ResourceName.MatchString(k) {
		return fmt.Errorf("expected NAME=N with a name of 1 to 63 of a-z 0-9 _ . -, got %q", s)
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return fmt.Errorf("expected a whole number after %s=, got %q", k, v)
	}
	r[k] = n
	return nil
}

// bytesFlag is --memory: bytes, or a size with K, M, G or T.
type bytesFlag struct{ v uint64 }

func (b *bytesFlag) String() string { return strconv.FormatUint(b.v, 10) }

func (b *bytesFlag) Set(s string) (err error) {
	b.v, err = worker.ParseBytes(s)
	return err
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
	cpus := fs.Uint("cpus", 0, "CPUs offered to jobs (default: runtime.NumCPU())")
	memory := &bytesFlag{}
	fs.Var(memory, "memory", "memory offered to jobs: `BYTES`, or 512M, 32G (powers of 1024) (default: the machine's total)")
	gpus := fs.Uint("gpus", 0, "GPUs offered to jobs (default: the lines of nvidia-smi -L, 0 without it)")
	named := resourceFlag{}
	fs.Var(named, "resource", "a named countable resource `NAME=N` offered to jobs (repeatable)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: crms-worker-go [--name NAME] [--slots N] [--server HOST:PORT[,...]] [--label K=V ...] [--data-dir DIR] [--run-as USER]\n"+
			"                      [--cpus N] [--memory 32G] [--gpus N] [--resource NAME=N ...]\n\n")
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
	resources := worker.DetectResources(*slots)
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "cpus":
			resources.Cpus = uint32(*cpus)
		case "memory":
			resources.MemoryBytes = memory.v
		case "gpus":
			resources.Gpus = uint32(*gpus)
		}
	})
	if len(named) > 0 {
		resources.Named = named
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
		Resources:   resources,
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
