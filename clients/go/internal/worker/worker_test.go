package worker

// Protocol tests against a scripted WorkerService in this process: every
// message the worker sends is checked, and the control plane's side is
// played by the test.

import (
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	crmsv1 "github.com/crms-dev/crms/clients/go/gen/crms/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeSession is one Attach stream seen by the fake control plane.
type fakeSession struct {
	recv chan *crmsv1.AttachRequest
	send chan *crmsv1.AttachResponse
	end  chan error // the handler returns this
}

type fakeServer struct {
	crmsv1.UnimplementedWorkerServiceServer
	sessions chan *fakeSession
}

func (f *fakeServer) Attach(stream crmsv1.WorkerService_AttachServer) error {
	s := &fakeSession{
		recv: make(chan *crmsv1.AttachRequest, 100),
		send: make(chan *crmsv1.AttachResponse, 100),
		end:  make(chan error, 1),
	}
	f.sessions <- s
	go func() {
		defer close(s.recv)
		for {
			msg, err := stream.Recv()
			if err != nil {
				return
			}
			s.recv <- msg
		}
	}()
	for {
		select {
		case msg := <-s.send:
			if err := stream.Send(msg); err != nil {
				return err
			}
		case err := <-s.end:
			return err
		case <-stream.Context().Done():
			return nil
		}
	}
}

func startFake(t *testing.T) (*fakeServer, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{sessions: make(chan *fakeSession, 10)}
	srv := grpc.NewServer()
	crmsv1.RegisterWorkerServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return f, lis.Addr().String()
}

func (f *fakeServer) next(t *testing.T) *fakeSession {
	t.Helper()
	select {
	case s := <-f.sessions:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no Attach stream")
		return nil
	}
}

// expect returns the next message of the wanted kind, skipping heartbeats.
func expect[T any](t *testing.T, s *fakeSession, get func(*crmsv1.AttachRequest) T) T {
	t.Helper()
	var zero T
	deadline := time.After(10 * time.Second)
	for {
		select {
		case msg, ok := <-s.recv:
			if !ok {
				t.Fatal("stream closed while waiting for a message")
				return zero
			}
			if msg.GetHeartbeat() != nil {
				continue
			}
			v := get(msg)
			if any(v) == any(zero) {
				t.Fatalf("unexpected message %v", msg)
			}
			return v
		case <-deadline:
			t.Fatal("timed out waiting for a message")
			return zero
		}
	}
}

func hello(m *crmsv1.AttachRequest) *crmsv1.Hello          { return m.GetHello() }
func started(m *crmsv1.AttachRequest) *crmsv1.JobStarted   { return m.GetStarted() }
func finished(m *crmsv1.AttachRequest) *crmsv1.JobFinished { return m.GetFinished() }
func output(m *crmsv1.AttachRequest) *crmsv1.OutputData    { return m.GetOutput() }

func welcome(hb uint32) *crmsv1.AttachResponse {
	return &crmsv1.AttachResponse{Msg: &crmsv1.AttachResponse_Welcome{Welcome: &crmsv1.Welcome{Replica: "fake", HeartbeatSeconds: hb}}}
}

func assign(job string, attempt uint32, command ...string) *crmsv1.AttachResponse {
	return &crmsv1.AttachResponse{Msg: &crmsv1.AttachResponse_Assign{Assign: &crmsv1.Assign{
		JobId: job, Attempt: attempt, Spec: &crmsv1.JobSpec{Command: command}}}}
}

func ack(job string, attempt uint32) *crmsv1.AttachResponse {
	return &crmsv1.AttachResponse{Msg: &crmsv1.AttachResponse_Ack{Ack: &crmsv1.Ack{JobId: job, Attempt: attempt}}}
}

func kill(job string, attempt, grace uint32) *crmsv1.AttachResponse {
	return &crmsv1.AttachResponse{Msg: &crmsv1.AttachResponse_Kill{Kill: &crmsv1.Kill{JobId: job, Attempt: attempt, GraceSeconds: grace, Reason: "killed by request"}}}
}

func newTestWorker(t *testing.T, servers ...string) *Worker {
	t.Helper()
	w, err := New(Options{
		Name: "gw", Slots: 2, Servers: servers, Labels: map[string]string{"impl": "go"},
		DataDir: t.TempDir(), Version: "test", Hostname: "host1",
		Heartbeat: 5 * time.Second, AckTimeout: 2 * time.Second,
		Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		done := make(chan struct{})
		go func() { w.Stop(true, "test over"); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("worker did not stop")
		}
	})
	return w
}

func TestProtocol(t *testing.T) {
	f, addr := startFake(t)
	w := newTestWorker(t, addr)

	// Hello -> Welcome; heartbeats at the Welcome's pace.
	s := f.next(t)
	h := expect(t, s, hello)
	if h.Name != "gw" || h.Slots != 2 || h.Labels["impl"] != "go" || h.Hostname != "host1" || h.Version != "test" || len(h.Running) != 0 || len(h.Finished) != 0 {
		t.Fatalf("hello %v", h)
	}
	s.send <- welcome(1)
	select {
	case msg := <-s.recv:
		if msg.GetHeartbeat() == nil {
			t.Fatalf("expected a heartbeat, got %v", msg)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no heartbeat within 3 s with heartbeat_seconds 1")
	}
	if w.State() != StateRunning {
		t.Fatalf("state %s", w.State())
	}

	// Assign -> JobStarted -> JobFinished (kept until Ack).
	s.send <- assign("1", 1, "sh", "-c", "echo out; echo err >&2")
	st := expect(t, s, started)
	if st.JobId != "1" || st.Attempt != 1 || st.Pid <= 0 {
		t.Fatalf("started %v", st)
	}
	fin := expect(t, s, finished)
	if fin.JobId != "1" || fin.GetExitCode() != 0 || fin.ExitCode == nil || string(fin.StdoutTail) != "out\n" || string(fin.StderrTail) != "err\n" || fin.Pid != st.Pid || fin.Killed {
		t.Fatalf("finished %v", fin)
	}

	// OutputRequest -> OutputData chunks, then eof.
	s.send <- &crmsv1.AttachResponse{Msg: &crmsv1.AttachResponse_OutputRequest{OutputRequest: &crmsv1.OutputRequest{RequestId: 7, JobId: "1", Attempt: 1}}}
	got := map[crmsv1.OutputStream]string{}
	for {
		o := expect(t, s, output)
		if o.RequestId != 7 {
			t.Fatalf("output for request %d", o.RequestId)
		}
		if o.Eof {
			if o.Error != "" {
				t.Fatalf("eof error %q", o.Error)
			}
			break
		}
		got[o.Stream] += string(o.Data)
	}
	if got[crmsv1.OutputStream_OUTPUT_STREAM_STDOUT] != "out\n" || got[crmsv1.OutputStream_OUTPUT_STREAM_STDERR] != "err\n" {
		t.Fatalf("output %v", got)
	}
	// Output of a run this worker never had: eof with an error.
	s.send <- &crmsv1.AttachResponse{Msg: &crmsv1.AttachResponse_OutputRequest{OutputRequest: &crmsv1.OutputRequest{RequestId: 8, JobId: "77", Attempt: 1}}}
	if o := expect(t, s, output); !o.Eof || o.Error == "" || o.RequestId != 8 {
		t.Fatalf("output of an unknown run: %v", o)
	}

	// Kill of a run it does not have.
	s.send <- kill("2", 1, 5)
	fin2 := expect(t, s, finished)
	if fin2.JobId != "2" || !fin2.Killed || fin2.Error != "killed before it started" {
		t.Fatalf("kill of an unknown run: %v", fin2)
	}

	// A running job survives the stream; the next Hello reports it and the
	// unacknowledged reports.
	s.send <- assign("3", 1, "sleep", "30")
	st3 := expect(t, s, started)
	s.end <- status.Error(codes.Unavailable, "replica going away")
	s = f.next(t)
	h = expect(t, s, hello)
	if len(h.Running) != 1 || h.Running[0].JobId != "3" || h.Running[0].Pid != st3.Pid {
		t.Fatalf("hello.running %v", h.Running)
	}
	var fins []string
	for _, f := range h.Finished {
		fins = append(fins, f.JobId)
	}
	slices.Sort(fins)
	if !slices.Equal(fins, []string{"1", "2"}) {
		t.Fatalf("hello.finished %v", fins)
	}
	s.send <- welcome(0)
	s.send <- ack("1", 1)
	s.send <- ack("2", 1)
	if !w.waitFor(func() bool { return len(w.unacked) == 0 }, 5*time.Second) {
		t.Fatal("acks not applied")
	}

	// A repeated Assign of a running job: JobStarted again, no second process.
	s.send <- assign("3", 1, "sleep", "30")
	if again := expect(t, s, started); again.Pid != st3.Pid {
		t.Fatalf("repeated assign started pid %d, running pid %d", again.Pid, st3.Pid)
	}

	// Kill with a grace: SIGTERM ends sleep.
	s.send <- kill("3", 1, 5)
	fin3 := expect(t, s, finished)
	if !fin3.Killed || fin3.Signal != "SIGTERM" || fin3.Error != "killed by request" || fin3.ExitCode != nil {
		t.Fatalf("killed run: %v", fin3)
	}
	s.send <- ack("3", 1)

	// Drain, then Shutdown: the running job is killed and reported, the worker stops.
	s.send <- &crmsv1.AttachResponse{Msg: &crmsv1.AttachResponse_Drain{Drain: &crmsv1.Drain{}}}
	s.send <- assign("4", 1, "sleep", "30")
	expect(t, s, started)
	if w.State() != StateDraining {
		t.Fatalf("state %s after Drain", w.State())
	}
	s.send <- &crmsv1.AttachResponse{Msg: &crmsv1.AttachResponse_Shutdown{Shutdown: &crmsv1.Shutdown{Reason: "stopped by request"}}}
	fin4 := expect(t, s, finished)
	if fin4.JobId != "4" || !fin4.Killed || fin4.Error != "stopped by request" {
		t.Fatalf("run ended by shutdown: %v", fin4)
	}
	s.send <- ack("4", 1)
	select {
	case <-w.Stopped():
	case <-time.After(10 * time.Second):
		t.Fatal("worker did not stop after Shutdown")
	}
	if w.State() != StateStopped {
		t.Fatalf("state %s", w.State())
	}
}

func TestFailoverAndPendingReports(t *testing.T) {
	// The first address refuses connections; the worker moves on to the second.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	f, addr := startFake(t)
	w := newTestWorker(t, deadAddr, addr)
	s := f.next(t)
	expect(t, s, hello)
	s.send <- welcome(0)
	if !w.Attached(5 * time.Second) {
		t.Fatal("not attached")
	}
	s.send <- assign("6", 1, "sleep", "3")
	expect(t, s, started)
	// ALREADY_EXISTS (another stream holds the name): the worker retries.
	s.end <- status.Error(codes.AlreadyExists, "worker gw is attached elsewhere")
	s = f.next(t)
	if h := expect(t, s, hello); len(h.Running) != 1 {
		t.Fatalf("hello.running %v", h.Running)
	}
	// The run ends before Welcome: its report waits for the Welcome.
	deadline := time.Now().Add(10 * time.Second)
	for w.Running() > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	select {
	case msg := <-s.recv:
		t.Fatalf("sent %v before Welcome", msg)
	default:
	}
	s.send <- welcome(0)
	if fin := expect(t, s, finished); fin.JobId != "6" || fin.GetExitCode() != 0 {
		t.Fatalf("finished %v", fin)
	}
	s.send <- ack("6", 1)
	s.send <- assign("5", 1, "true")
	expect(t, s, started)
	fin := expect(t, s, finished)
	if fin.GetExitCode() != 0 || fin.ExitCode == nil {
		t.Fatalf("finished %v", fin)
	}
	s.send <- ack("5", 1)
}

func TestAttachRefusedWithInvalidArgumentOrPermissionDeniedIsFinal(t *testing.T) {
	for _, code := range []codes.Code{codes.InvalidArgument, codes.PermissionDenied} {
		t.Run(code.String(), func(t *testing.T) {
			f, addr := startFake(t)
			w := newTestWorker(t, addr)
			s := f.next(t)
			expect(t, s, hello)
			s.end <- status.Error(code, "the server's reason")
			select {
			case <-w.Stopped():
			case <-time.After(10 * time.Second):
				t.Fatal("the worker did not stop after a final refusal")
			}
			if got := w.Refusal(); !strings.Contains(got, "the server's reason") || !strings.Contains(got, "not retrying") {
				t.Errorf("Refusal() = %q", got)
			}
			select {
			case <-f.sessions:
				t.Error("the worker attached again after a final refusal")
			case <-time.After(1 * time.Second):
			}
		})
	}
}

func TestANameTheServerWouldRefuseIsRefusedBeforeAnythingIsMade(t *testing.T) {
	for name, want := range map[string]string{
		"a/b":                    `contains '/'`,
		"x/../../escape":         `contains '/'`,
		"..":                     `'.' and '..'`,
		".hidden":                "must start with a letter or a digit",
		"":                       "is required",
		"ok-name.1_2":            "",
		strings.Repeat("n", 129): "longer than 128 bytes",
	} {
		err := ValidateName(name)
		if want == "" {
			if err != nil {
				t.Errorf("ValidateName(%q) = %v; want nil", name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateName(%q) = %v; want an error containing %q", name, err, want)
		}
	}
}
