package crms_test

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crms-dev/crms/clients/go/crms"
	crmsv1 "github.com/crms-dev/crms/clients/go/gen/crms/v1"
	"google.golang.org/grpc"
)

func openssl(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl %v: %v\n%s", args, err, out)
	}
}

// issue makes a CA (once per label) and a certificate signed by it.
func issue(t *testing.T, dir, label, name string, server bool) (cert, key string) {
	if _, err := os.Stat(filepath.Join(dir, label+"-ca.pem")); err != nil {
		openssl(t, dir, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", label+"-ca.key",
			"-out", label+"-ca.pem", "-days", "2", "-subj", "/CN="+label+" CA")
	}
	ext := "extendedKeyUsage=clientAuth\n"
	if server {
		ext = "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
	}
	if err := os.WriteFile(filepath.Join(dir, name+".ext"), []byte(ext), 0o600); err != nil {
		t.Fatal(err)
	}
	openssl(t, dir, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", name+".key", "-out", name+".csr", "-subj", "/CN="+name)
	openssl(t, dir, "x509", "-req", "-in", name+".csr", "-CA", label+"-ca.pem", "-CAkey", label+"-ca.key",
		"-CAcreateserial", "-out", name+".pem", "-days", "2", "-extfile", name+".ext")
	return filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
}

func startProc(t *testing.T, logPath string, name string, args ...string) (*exec.Cmd, chan struct{}) {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = repoRoot
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logFile.Close(); close(done) }()
	t.Cleanup(func() { stopProcess(cmd, done, syscall.SIGTERM, 20*time.Second) })
	return cmd, done
}

// TestTLSAndTokens runs a control plane with mutual TLS and a bootstrap admin
// token, and checks the Go client's and the Go worker's TLS and token options.
func TestTLSAndTokens(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("needs openssl")
	}
	dir := t.TempDir()
	ca := filepath.Join(dir, "good-ca.pem")
	serverCert, serverKey := issue(t, dir, "good", "server", true)
	clientCert, clientKey := issue(t, dir, "good", "client", false)
	evilCert, evilKey := issue(t, dir, "evil", "evil-client", false)

	etcdPort := freePortPair()
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	etcdBin := os.Getenv("ETCD_BIN")
	if etcdBin == "" {
		etcdBin = "etcd"
	}
	startProc(t, filepath.Join(dir, "etcd.log"), etcdBin, "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPort+1),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPort+1),
		"--initial-cluster", fmt.Sprintf("default=http://127.0.0.1:%d", etcdPort+1))
	for i := 0; ; i++ {
		if res, err := http.Get(etcdURL + "/health"); err == nil && res.StatusCode == 200 {
			res.Body.Close()
			break
		}
		if i > 200 {
			t.Fatal("etcd did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}
	port := freePort()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	tokenFile := filepath.Join(dir, "admin.token")
	serverLog := filepath.Join(dir, "server.log")
	_, serverDone := startProc(t, serverLog, "node", filepath.Join(repoRoot, "bin", "crms.js"), "server",
		"--listen", addr, "--etcd", etcdURL, "--tls-cert", serverCert, "--tls-key", serverKey,
		"--client-ca", ca, "--admin-token-file", tokenFile, "--no-history")
	if !waitForLine(serverLog, "control plane serving", 60*time.Second, serverDone) {
		log, _ := os.ReadFile(serverLog)
		t.Fatalf("server did not start:\n%s", log)
	}
	adminToken, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	admin := crms.Security{CA: ca, Cert: clientCert, Key: clientKey, Token: strings.TrimSpace(string(adminToken))}
	ctx := testCtx(t, 90*time.Second)

	c, err := crms.Dial(ctx, addr, crms.WithSecurity(admin))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.ListJobs(ctx, crms.JobFilter{}); err != nil {
		t.Fatalf("mTLS + admin token: %v", err)
	}

	// No token: UNAUTHENTICATED. A certificate of another CA: no connection.
	noToken := admin
	noToken.Token = ""
	anon, err := crms.Dial(ctx, addr, crms.WithSecurity(noToken))
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	if _, err := anon.ListJobs(ctx, crms.JobFilter{}); !errors.Is(err, crms.ErrUnauthenticated) {
		t.Fatalf("without a token: got %v, want UNAUTHENTICATED", err)
	}
	evil := admin
	evil.Cert, evil.Key = evilCert, evilKey
	stranger, err := crms.Dial(ctx, addr, crms.WithSecurity(evil))
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	if _, err := stranger.ListJobs(ctx, crms.JobFilter{}); !errors.Is(err, crms.ErrUnavailable) {
		t.Fatalf("certificate from another CA: got %v, want UNAVAILABLE", err)
	}

	// A worker token for the Go worker, which attaches over mTLS and runs a job.
	opts, err := admin.DialOptions()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	name := fmt.Sprintf("go-tls-%d", os.Getpid())
	made, err := crmsv1.NewAdminServiceClient(conn).CreateToken(ctx, &crmsv1.CreateTokenRequest{Name: name, Role: "worker", Worker: name})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = startProc(t, filepath.Join(dir, "worker.log"), workerBin, "--name", name, "--server", addr,
		"--data-dir", filepath.Join(dir, "data"), "--heartbeat", "1s",
		"--ca", ca, "--cert", clientCert, "--key", clientKey, "--token", made.Secret)
	job, err := c.Submit(ctx, crms.JobSpec{Command: []string{"sh", "-c", "echo tls-ok; env"}, TargetWorker: name})
	if err != nil {
		t.Fatal(err)
	}
	done, err := c.Wait(ctx, job.ID)
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "worker.log"))
		t.Fatalf("wait: %v\n%s", err, log)
	}
	if done.ExitCode == nil || *done.ExitCode != 0 {
		t.Fatalf("job ended %+v", done)
	}
	out, err := c.ReadOutput(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out.Stdout), "tls-ok\n") || strings.Contains(string(out.Stdout), made.Secret) {
		t.Fatalf("job output %q: want tls-ok and no token", out.Stdout)
	}

	// A submitter's jobs carry its token's name as their user; queues are
	// read by every role and changed only by an admin.
	t.Run("JobUserAndQueueRoles", func(t *testing.T) {
		submitter, err := crmsv1.NewAdminServiceClient(conn).CreateToken(ctx, &crmsv1.CreateTokenRequest{Name: "go-submitter", Role: "submitter"})
		if err != nil {
			t.Fatal(err)
		}
		asSubmitter := admin
		asSubmitter.Token = submitter.Secret
		sc, err := crms.Dial(ctx, addr, crms.WithSecurity(asSubmitter))
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		mine, err := sc.Submit(ctx, crms.JobSpec{Command: []string{"true"}, Hold: true, Labels: map[string]string{"crms.io/owner": "someone-else"}})
		if err != nil {
			t.Fatal(err)
		}
		if mine.User != "go-submitter" {
			t.Errorf("a submitter's job has user %q, want its token's name go-submitter", mine.User)
		}
		if _, err := sc.CreateQueue(ctx, crms.Queue{Name: "go-not-allowed"}); !errors.Is(err, crms.ErrPermissionDenied) {
			t.Errorf("CreateQueue as a submitter: %v, want ErrPermissionDenied", err)
		}
		if qs, err := sc.ListQueues(ctx); err != nil || len(qs) == 0 || qs[0].Name != "default" {
			t.Errorf("ListQueues as a submitter: %v %v", qs, err)
		}
		if _, err := c.CreateQueue(ctx, crms.Queue{Name: "go-allowed"}); err != nil {
			t.Errorf("CreateQueue as the admin: %v", err)
		}
	})
}
