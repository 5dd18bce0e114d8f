package crms_test

// The tests of this package run against a live cluster that TestMain starts:
// `node bin/crms.js dev` (etcd, the TypeScript control plane and a
// TypeScript worker) on free ports in a temporary directory, plus the Go
// worker (cmd/crms-worker-go, built here) with the label impl=go. Failover
// tests add control-plane replicas on the same etcd (startReplica).
// They need node (with the repository's npm dependencies installed) and etcd.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crms-dev/crms/clients/go/crms"
)

var (
	repoRoot   string // the crms repository
	tmpDir     string
	address    string // control plane, localhost:PORT
	etcdURL    string // the dev cluster's etcd, http://127.0.0.1:PORT
	goWorker   string // name of the Go worker TestMain started
	workerBin  string // built cmd/crms-worker-go
	conformBin string // built cmd/conformance
	client     *crms.Client
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) (code int) {
	var err error
	repoRoot, err = filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		fmt.Fprintln(os.Stderr, "setup:", err)
		return 1
	}
	tmpDir, err = os.MkdirTemp("", "crms-go-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "setup:", err)
		return 1
	}
	keep := false
	defer func() {
		if !keep {
			os.RemoveAll(tmpDir)
		}
	}()
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "setup: "+format+"\n", args...)
		fmt.Fprintf(os.Stderr, "setup: logs kept in %s\n", tmpDir)
		keep = true
		return 1
	}

	// Build the Go binaries under test.
	workerBin = filepath.Join(tmpDir, "crms-worker-go")
	conformBin = filepath.Join(tmpDir, "conformance")
	build := exec.Command("go", "build", "-o", tmpDir, "../cmd/crms-worker-go", "../cmd/conformance")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fail("go build: %v", err)
	}

	// The dev cluster.
	port := freePort()
	etcdPort := freePortPair()
	address = fmt.Sprintf("localhost:%d", port)
	etcdURL = fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	devLog := filepath.Join(tmpDir, "dev.log")
	logFile, err := os.Create(devLog)
	if err != nil {
		return fail("%v", err)
	}
	defer logFile.Close()
	dev := exec.Command("node", filepath.Join(repoRoot, "bin", "crms.js"), "dev",
		"--port", strconv.Itoa(port), "--etcd-port", strconv.Itoa(etcdPort), "--http-port", "0",
		"--data-dir", filepath.Join(tmpDir, "dev"), "--slots", "4")
	dev.Dir = repoRoot
	dev.Stdout, dev.Stderr = logFile, logFile
	dev.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := dev.Start(); err != nil {
		return fail("starting the dev cluster (is node installed?): %v", err)
	}
	devDone := make(chan struct{})
	go func() { _ = dev.Wait(); close(devDone) }()
	defer stopProcess(dev, devDone, syscall.SIGINT, 30*time.Second)
	if !waitForLine(devLog, "crms dev cluster is up:", 90*time.Second, devDone) {
		log, _ := os.ReadFile(devLog)
		return fail("the dev cluster did not come up:\n%s", log)
	}

	// The Go worker.
	goWorker = fmt.Sprintf("go-worker-%d", os.Getpid())
	w, wDone, err := startGoWorker(goWorker, "4", address, "impl=go")
	if err != nil {
		return fail("starting the Go worker: %v", err)
	}
	defer stopProcess(w, wDone, syscall.SIGTERM, 30*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client, err = crms.Dial(ctx, address, crms.WithWaitReady())
	if err != nil {
		return fail("dial %s: %v", address, err)
	}
	defer client.Close()
	if err := waitWorkerUp(ctx, goWorker); err != nil {
		log, _ := os.ReadFile(filepath.Join(tmpDir, goWorker+".log"))
		return fail("the Go worker did not attach: %v\n%s", err, log)
	}

	code = m.Run()
	if code != 0 {
		keep = true
		fmt.Fprintf(os.Stderr, "logs kept in %s\n", tmpDir)
	}
	return code
}

// startGoWorker starts the Go worker binary; its log goes to tmpDir/NAME.log.
func startGoWorker(name, slots, servers string, labels ...string) (*exec.Cmd, chan struct{}, error) {
	args := []string{"--name", name, "--slots", slots, "--server", servers,
		"--data-dir", filepath.Join(tmpDir, "data-"+name), "--verbose", "--heartbeat", "1s"}
	for _, l := range labels {
		args = append(args, "--label", l)
	}
	logFile, err := os.Create(filepath.Join(tmpDir, name+".log"))
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(workerBin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, nil, err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(done)
	}()
	return cmd, done, nil
}

// startReplica starts another control-plane replica, `node bin/crms.js
// server` on 127.0.0.1:port, on the dev cluster's etcd with the default key
// prefix (as the dev cluster's server), so it serves the same jobs and
// workers. It returns once the replica serves; the test's cleanup stops it.
// Its log is tmpDir/replica-PORT.log.
func startReplica(t *testing.T, port int) (addr string, cmd *exec.Cmd, done chan struct{}) {
	t.Helper()
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	logPath := filepath.Join(tmpDir, fmt.Sprintf("replica-%d.log", port))
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command("node", filepath.Join(repoRoot, "bin", "crms.js"), "server",
		"--listen", addr, "--etcd", etcdURL, "--no-history") // a second replica: embedded history is for one alone
	cmd.Dir = repoRoot
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("starting a replica: %v", err)
	}
	done = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(done)
	}()
	t.Cleanup(func() { stopProcess(cmd, done, syscall.SIGTERM, 30*time.Second) })
	if !waitForLine(logPath, "control plane serving", 60*time.Second, done) {
		log, _ := os.ReadFile(logPath)
		t.Fatalf("the replica on %s did not come up:\n%s", addr, log)
	}
	return addr, cmd, done
}

// stopProcess signals a process (its group for the dev cluster), waits, and
// kills the group if it does not exit in time.
func stopProcess(cmd *exec.Cmd, done chan struct{}, sig syscall.Signal, timeout time.Duration) {
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(timeout):
		fmt.Fprintf(os.Stderr, "%s did not exit after %s; killing it\n", cmd.Path, sig)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Process.Kill()
		<-done
	}
}

func waitWorkerUp(ctx context.Context, name string) error {
	for {
		w, err := client.Worker(ctx, name)
		if err == nil && w.State == crms.WorkerUp {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("worker %s: %v (last error %v)", name, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func waitForLine(path, line string, timeout time.Duration, exited chan struct{}) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if data, err := os.ReadFile(path); err == nil {
			sc := bufio.NewScanner(bytes.NewReader(data))
			for sc.Scan() {
				if strings.Contains(sc.Text(), line) {
					return true
				}
			}
		}
		select {
		case <-exited:
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
	return false
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// freePortPair finds P such that P and P+1 are free (etcd's client and peer ports).
func freePortPair() int {
	for range 200 {
		p := 20000 + rand.IntN(20000)
		a, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		b, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1))
		a.Close()
		if err != nil {
			continue
		}
		b.Close()
		return p
	}
	panic("no free port pair")
}

// groupAlive reports whether a live (non-zombie) process is in the process group.
func groupAlive(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); err != nil {
		return !errors.Is(err, syscall.ESRCH)
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) >= 3 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" && f[0] != "X" {
			return true
		}
	}
	return false
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
