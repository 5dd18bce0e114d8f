// Package worker is the Go crms worker: one WorkerService.Attach session at a
// time to a control-plane replica, running what it is assigned (see
// runner.go) and reporting back, with the protocol and behaviour of the
// TypeScript worker (src/worker/worker.ts). Runs belong to the worker, not to
// a session: when the stream breaks they keep going, the worker reconnects
// (cycling through its servers, backing off 200 ms to 5 s) and reports them
// in Hello, with every finished report not acknowledged yet.
package worker

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	crmsv1 "github.com/crms-dev/crms/clients/go/gen/crms/v1"
	"github.com/crms-dev/crms/clients/go/internal/replicas"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// State is the lifecycle of a worker process (not the control plane's
// WorkerState, which is its liveness).
type State string

// Lifecycle states. CONNECTING means "no accepted session": it is entered at
// start and whenever a session ends. DRAINING is sticky across reconnects.
const (
	StateInitialized State = "INITIALIZED"
	StateConnecting  State = "CONNECTING"
	StateRunning     State = "RUNNING"
	StateDraining    State = "DRAINING"
	StateStopping    State = "STOPPING"
	StateStopped     State = "STOPPED"
)

var transitions = map[State][]State{
	StateInitialized: {StateConnecting, StateStopped},
	StateConnecting:  {StateRunning, StateDraining, StateStopping},
	StateRunning:     {StateConnecting, StateDraining, StateStopping},
	StateDraining:    {StateConnecting, StateRunning, StateStopping},
	StateStopping:    {StateStopped},
	StateStopped:     {},
}

// ShutdownGrace is what a Shutdown or Stop(killRuns) gives runs between
// SIGTERM and SIGKILL.
const ShutdownGrace = 10 * time.Second

// Options configure a worker.
type Options struct {
	// Unique worker name.
	Name string
	// Parallel slots (the control plane counts them; the worker runs what it
	// is given).
	Slots int
	// What it offers, sent in Hello; nil: DetectResources(Slots) at Start (see
	// the flags of cmd/crms-worker-go for overriding each).
	Resources *crmsv1.Resources
	// Control-plane addresses (host:port), tried in turn on each (re)connect.
	Servers []string
	// Labels matched by job constraints.
	Labels map[string]string
	// Where runs keep their output: <DataDir>/runs/<jobId>.<attempt>/{stdout,stderr}.
	DataDir string
	// Worker software version, reported in Hello.
	Version string
	// Host name reported in Hello; default os.Hostname().
	Hostname string
	// Bytes of each stream sent as tails in JobFinished; default 2048.
	TailBytes int
	// Between heartbeats; default 5 s (a smaller value in Welcome wins).
	Heartbeat time.Duration
	// First reconnect delay, doubled per failure; default 200 ms.
	ReconnectInitial time.Duration
	// Largest reconnect delay; default 5 s.
	ReconnectMax time.Duration
	// A session that gets no Welcome within this is dropped; default 10 s.
	WelcomeTimeout time.Duration
	// How long Stop waits for Acks of the last reports; default 5 s.
	AckTimeout time.Duration
	// Session and lifecycle events; default: to stderr with a timestamp.
	Logf func(format string, args ...any)
	// Per-job events; default: none.
	Debugf func(format string, args ...any)
	// Extra gRPC dial options (default: insecure credentials).
	DialOptions []grpc.DialOption
	// Run jobs as this account (see LookupRunAs; the worker must be root);
	// default: as the worker.
	RunAs *RunAs
	// The run shim (cmd/crms-shim, see FindShim): runs outlive the worker and
	// a worker started again with the same name and data directory re-adopts
	// them. "": runs are the worker's children and die with it.
	Shim string
	// Bytes of a finished run's output (both streams) sent to the control
	// plane to be kept with the job's history: 0 means DefaultShipCap, a
	// negative number sends nothing.
	ShipOutputBytes int64
}

// Worker runs jobs for a crms control plane.
type Worker struct {
	opts Options
	logf func(string, ...any)
	dbgf func(string, ...any)

	mu             sync.Mutex
	changed        chan struct{} // closed and replaced on every change waitFor may care about
	state          State
	drainRequested bool
	closing        bool
	closingCh      chan struct{}
	runs           map[string]*Run
	unacked        map[string]*crmsv1.JobFinished
	session        *session
	sessionCount   int
	replicas       *replicas.Set // one connection per server, made by Start
	stopDone       chan struct{} // closed when STOPPED
	refusal        string        // why the control plane refused this worker for good, if it did
	incarnation    string        // random id of this process, sent in every Hello
	lease          lease         // <DataDir>/lease, moved with acknowledged heartbeats
	graceSeconds   uint32        // the control plane's grace (Welcome); 0: no fencing
	recovering     map[string]bool

	ctx    context.Context
	cancel context.CancelFunc
}

// session is one Attach stream.
type session struct {
	id     int
	target string
	stream crmsv1.WorkerService_AttachClient
	ctx    context.Context
	cancel context.CancelFunc

	// Guarded by Worker.mu.
	welcomed bool
	closed   bool
	pending  []*crmsv1.AttachRequest // reports produced before Welcome
	outputs  map[uint64]*outputRequest

	// The send queue: control messages first, then output (bounded, so output
	// readers wait for the stream).
	qmu        sync.Mutex
	ctrl       []*crmsv1.AttachRequest
	ctrlSignal chan struct{}
	out        chan *crmsv1.AttachRequest
	closeSend  chan struct{}
	closeOnce  sync.Once
	writerDone chan struct{}
}

type outputRequest struct{ cancel context.CancelFunc }

func keyOf(jobID string, attempt uint32) string {
	return jobID + "#" + strconv.FormatUint(uint64(attempt), 10)
}

func label(jobID string, attempt uint32) string {
	return fmt.Sprintf("job %s attempt %d", jobID, attempt)
}

func errorText(err error) string {
	if st, ok := status.FromError(err); ok {
		return fmt.Sprintf("%s (code %s)", st.Message(), st.Code())
	}
	return err.Error()
}

// nameChars are the characters a worker name may hold (worker.proto).
var nameChars = regexp.MustCompile(`^[A-Za-z0-9._-]$`)

// ValidateName checks a worker name by the control plane's rule (1 to 128
// bytes of letters, digits, '.', '_' and '-', starting with a letter or a
// digit), so that a worker never creates a directory for a name the server
// refuses. The error says what is wrong.
func ValidateName(name string) error {
	problem := ""
	switch {
	case name == "":
		problem = "is required"
	case len(name) > 128:
		problem = "is longer than 128 bytes"
	case name == "." || name == "..":
		problem = "is not a name ('.' and '..' are directory references)"
	default:
		for _, c := range name {
			if !nameChars.MatchString(string(c)) {
				problem = fmt.Sprintf("contains %q: a name may hold only letters, digits, '.', '_' and '-'", c)
				break
			}
		}
		if first := name[0]; problem == "" && (first == '.' || first == '_' || first == '-') {
			problem = "must start with a letter or a digit"
		}
	}
	if problem == "" {
		return nil
	}
	return fmt.Errorf("worker name %q %s", name, problem)
}

// Refusal is why the control plane refused this worker for good (Attach
// answered INVALID_ARGUMENT or PERMISSION_DENIED), or "" if it did not.
func (w *Worker) Refusal() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.refusal
}

// New checks the options and makes a worker; Start connects it.
func New(opts Options) (*Worker, error) {
	if err := ValidateName(opts.Name); err != nil {
		return nil, err
	}
	if opts.Slots < 1 {
		return nil, fmt.Errorf("invalid slots: %d", opts.Slots)
	}
	if len(opts.Servers) == 0 {
		return nil, errors.New("no server address given")
	}
	if opts.DataDir == "" {
		return nil, errors.New("no data directory given")
	}
	if opts.Labels == nil {
		opts.Labels = map[string]string{}
	}
	if opts.Hostname == "" {
		opts.Hostname, _ = os.Hostname()
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 5 * time.Second
	}
	if opts.ReconnectInitial <= 0 {
		opts.ReconnectInitial = 200 * time.Millisecond
	}
	if opts.ReconnectMax <= 0 {
		opts.ReconnectMax = 5 * time.Second
	}
	if opts.WelcomeTimeout <= 0 {
		opts.WelcomeTimeout = 10 * time.Second
	}
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = 5 * time.Second
	}
	w := &Worker{
		opts:       opts,
		changed:    make(chan struct{}),
		state:      StateInitialized,
		closingCh:  make(chan struct{}),
		runs:       map[string]*Run{},
		unacked:    map[string]*crmsv1.JobFinished{},
		stopDone:   make(chan struct{}),
		recovering: map[string]bool{},
	}
	var id [16]byte
	_, _ = crand.Read(id[:])
	w.incarnation = hex.EncodeToString(id[:])
	w.lease.file, _ = filepath.Abs(filepath.Join(opts.DataDir, "lease"))
	w.logf = opts.Logf
	if w.logf == nil {
		logger := log.New(os.Stderr, "", 0)
		w.logf = func(format string, args ...any) {
			logger.Printf("%s worker %s: %s", time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), opts.Name, fmt.Sprintf(format, args...))
		}
	}
	w.dbgf = opts.Debugf
	if w.dbgf == nil {
		w.dbgf = func(string, ...any) {}
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	return w, nil
}

// Name is the worker's name.
func (w *Worker) Name() string { return w.opts.Name }

// State is the current lifecycle state.
func (w *Worker) State() State {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state
}

// Running is the number of runs in progress.
func (w *Worker) Running() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.runs)
}

// Unacked is the number of finished reports not acknowledged yet.
func (w *Worker) Unacked() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.unacked)
}

// Stopped is closed once the worker is STOPPED (by Stop or a Shutdown from
// the control plane).
func (w *Worker) Stopped() <-chan struct{} { return w.stopDone }

// Start makes the connections to the servers, prepares the data directory
// and starts connecting in the background.
func (w *Worker) Start() error {
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, w.opts.DialOptions...)
	set, err := replicas.Dial(w.opts.Servers, opts...)
	if err != nil {
		return err
	}
	w.mu.Lock()
	if err := w.transitionLocked(StateConnecting); err != nil {
		w.mu.Unlock()
		_ = set.Close()
		return err
	}
	w.replicas = set
	w.mu.Unlock()
	if err := os.MkdirAll(filepath.Join(w.opts.DataDir, "runs"), 0o755); err != nil {
		w.mu.Lock()
		if w.state == StateConnecting {
			_ = w.transitionLocked(StateStopping)
			w.mu.Unlock()
			w.finishStop()
		} else {
			w.mu.Unlock()
		}
		return err
	}
	if w.opts.Resources == nil {
		w.opts.Resources = DetectResources(w.opts.Slots)
	}
	w.logf("starting: %d slots, %s, servers %v", w.opts.Slots, DescribeResources(w.opts.Resources), w.opts.Servers)
	w.logf("memory reservations: %s", memoryLimits(w.opts.Shim))
	if w.opts.Shim != "" {
		adopted, ended := w.recover()
		w.logf("re-adopted %d runs, reported %d ended", adopted, ended)
	} else {
		w.logf("no run shim (--shim): runs end with this process and cannot be re-adopted")
	}
	go w.connectLoop(set)
	go func() {
		ticker := time.NewTicker(500 * time.Millisecond)
		defer ticker.Stop()
		for {
			select {
			case <-w.ctx.Done():
				return
			case <-ticker.C:
				w.fenceIfCutOff()
			}
		}
	}()
	return nil
}

// recover finds the runs an earlier process of this worker left in the data
// directory: adopts the live ones and reads how the others ended, for Hello.
// A run directory without records is left to the control plane (LOST).
func (w *Worker) recover() (adopted, ended int) {
	entries, _ := os.ReadDir(filepath.Join(w.opts.DataDir, "runs"))
	var undecided [][2]string
	count := func(found string) {
		switch found {
		case "live":
			adopted++
		case "ended":
			ended++
		}
	}
	for _, e := range entries {
		name := e.Name()
		dot := strings.LastIndexByte(name, '.')
		if dot <= 0 {
			continue
		}
		if _, err := strconv.ParseUint(name[dot+1:], 10, 32); err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(w.opts.DataDir, "runs", name, ackedFile)); err == nil {
			continue
		}
		found := w.recoverRun(name[:dot], name[dot+1:])
		if found == "none" {
			undecided = append(undecided, [2]string{name[:dot], name[dot+1:]})
		}
		count(found)
	}
	if len(undecided) > 0 {
		time.Sleep(time.Second) // a shim started just before the old worker died may still be writing
		for _, u := range undecided {
			found := w.recoverRun(u[0], u[1])
			count(found)
			if found == "none" {
				_ = os.WriteFile(filepath.Join(w.opts.DataDir, "runs", u[0]+"."+u[1], ackedFile), nil, 0o644)
			}
		}
	}
	return adopted, ended
}

// recoverRun re-adopts one attempt from its run directory: "live" (now in
// runs), "ended" (its end reported), or "none" (no records).
func (w *Worker) recoverRun(jobID, attemptText string) string {
	n, _ := strconv.ParseUint(attemptText, 10, 32)
	attempt := uint32(n)
	dir := filepath.Join(w.opts.DataDir, "runs", jobID+"."+attemptText)
	pid, hasPid := readRecord[pidRecord](filepath.Join(dir, "pid"))
	_, hasExit := readRecord[exitRecord](filepath.Join(dir, "exit"))
	if !hasPid && !hasExit {
		return "none"
	}
	if !hasPid {
		pid = &pidRecord{}
	}
	key := keyOf(jobID, attempt)
	w.mu.Lock()
	if _, ok := w.runs[key]; ok {
		w.mu.Unlock()
		return "live"
	}
	run, err := adoptRun(runOptions{jobID: jobID, attempt: attempt, dataDir: w.opts.DataDir, tailBytes: w.opts.TailBytes}, *pid)
	if err != nil {
		w.mu.Unlock()
		return "none"
	}
	w.trackLocked(key, run)
	w.mu.Unlock()
	if hasExit {
		<-run.Done()
		w.waitFor(func() bool { _, ok := w.runs[key]; return !ok }, time.Second)
		return "ended"
	}
	w.dbgf("%s re-adopted, pid %d", label(jobID, attempt), pid.PID)
	return "live"
}

// trackLocked keeps a run until it ends, then reports it.
func (w *Worker) trackLocked(key string, run *Run) {
	w.runs[key] = run
	w.notifyLocked()
	go func() {
		select {
		case <-run.Done():
			w.onRunEnd(key, run)
		case <-run.detached:
		}
	}()
}

// Leave makes the worker exit at once leaving its runs going in their
// shims, for the next worker with its name and data directory to re-adopt
// (stop --keep-runs, SIGUSR2). Without a shim it stops killing the runs.
func (w *Worker) Leave(reason string) {
	w.mu.Lock()
	if w.opts.Shim == "" || w.state == StateInitialized {
		w.mu.Unlock()
		w.Stop(true, reason)
		return
	}
	if w.state == StateStopping || w.state == StateStopped {
		w.mu.Unlock()
		<-w.stopDone
		return
	}
	_ = w.transitionLocked(StateStopping)
	w.logf("stopping (%s), leaving %d runs to the next worker named %s", reason, len(w.runs), w.opts.Name)
	for _, r := range w.runs {
		r.Detach()
	}
	w.runs = map[string]*Run{}
	s := w.session
	w.mu.Unlock()
	if s != nil {
		s.cancel()
		w.waitFor(func() bool { return s.closed }, time.Second)
	}
	w.finishStop()
}

// extendLeaseLocked: the control plane heard us; runs may go on until now + grace.
func (w *Worker) extendLeaseLocked() {
	if w.graceSeconds == 0 {
		return
	}
	until := time.Now().Add(time.Duration(w.graceSeconds) * time.Second)
	if w.opts.Shim == "" {
		w.lease.deadline = max(w.lease.deadline, until.UnixMilli()) // the worker fences its own children
		return
	}
	if err := w.lease.extend(until); err != nil {
		w.logf("cannot write the lease file %s: %s", w.lease.file, err)
	}
}

// assignedAgain handles an Assign for an attempt whose run directory exists:
// it is never run again, only adopted or reported.
func (w *Worker) assignedAgain(jobID string, attempt uint32) {
	key := keyOf(jobID, attempt)
	w.mu.Lock()
	if w.recovering[key] {
		w.mu.Unlock()
		return
	}
	w.recovering[key] = true
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.recovering, key)
		w.mu.Unlock()
	}()
	switch w.recoverRun(jobID, strconv.FormatUint(uint64(attempt), 10)) {
	case "live":
		w.logf("%s already has a run here; adopted, not started again", label(jobID, attempt))
		w.mu.Lock()
		if r, ok := w.runs[key]; ok && r.PID() != 0 {
			w.sendLocked(startedMsg(jobID, attempt, r.PID()))
		}
		w.mu.Unlock()
	case "none":
		w.logf("%s already has a run directory here; not started again", label(jobID, attempt))
		w.mu.Lock()
		w.reportLocked(&crmsv1.JobFinished{JobId: jobID, Attempt: attempt, Error: "this attempt already has a run directory on the worker"})
		w.mu.Unlock()
	default:
		w.logf("%s already ran here; its end reported again", label(jobID, attempt))
	}
}

// Attached waits until a session is accepted, or timeout passes (false).
func (w *Worker) Attached(timeout time.Duration) bool {
	return w.waitFor(func() bool { return w.session != nil && w.session.welcomed }, timeout)
}

// Stop stops the worker: takes no new jobs, kills runs if asked (else waits
// for them), reports their ends, waits briefly for Acks, closes the stream.
// It returns when the worker is STOPPED. A call while stopping waits for
// that stop (and escalates to killing runs if asked).
func (w *Worker) Stop(killRuns bool, reason string) {
	if reason == "" {
		reason = "worker stopping"
	}
	w.mu.Lock()
	switch w.state {
	case StateStopped:
		w.mu.Unlock()
		return
	case StateStopping:
		if killRuns {
			w.killAllLocked(reason)
		}
		w.mu.Unlock()
		<-w.stopDone
		return
	case StateInitialized:
		_ = w.transitionLocked(StateStopped)
		w.mu.Unlock()
		w.cancel()
		close(w.stopDone)
		return
	}
	_ = w.transitionLocked(StateStopping)
	n := len(w.runs)
	if killRuns {
		w.logf("stopping (%s), killing %d runs", reason, n)
		w.killAllLocked(reason)
	} else {
		w.logf("stopping (%s)", reason)
	}
	w.mu.Unlock()

	if n > 0 {
		w.logf("waiting for %d runs to end", n)
	}
	w.waitFor(func() bool { return len(w.runs) == 0 }, 0)
	if !w.waitFor(func() bool { return len(w.unacked) == 0 }, w.opts.AckTimeout) {
		w.logf("%d finished reports were not acknowledged", w.Unacked())
	}
	w.mu.Lock()
	w.closing = true
	close(w.closingCh)
	s := w.session
	w.mu.Unlock()
	if s != nil {
		s.requestCloseSend()
		if !w.waitFor(func() bool { return s.closed }, time.Second) {
			s.cancel()
			w.waitFor(func() bool { return s.closed }, time.Second)
		}
	}
	w.finishStop()
}

func (w *Worker) finishStop() {
	w.mu.Lock()
	if !w.closing {
		w.closing = true
		close(w.closingCh)
	}
	set := w.replicas
	_ = w.transitionLocked(StateStopped)
	w.mu.Unlock()
	w.cancel()
	if set != nil {
		_ = set.Close()
	}
	w.logf("stopped")
	close(w.stopDone)
}

// KillAll ends every run: SIGTERM to its process group, SIGKILL after grace
// (a run already being killed only gets a shorter grace).
func (w *Worker) KillAll(grace time.Duration, reason string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range w.runs {
		r.Kill(grace, reason)
	}
}

func (w *Worker) killAllLocked(reason string) {
	for _, r := range w.runs {
		r.Kill(ShutdownGrace, reason)
	}
}

func (w *Worker) transitionLocked(to State) error {
	from := w.state
	for _, allowed := range transitions[from] {
		if allowed == to {
			w.state = to
			w.notifyLocked()
			return nil
		}
	}
	return fmt.Errorf("worker cannot go from %s to %s", from, to)
}

// --- waiting -----------------------------------------------------------------

func (w *Worker) notifyLocked() {
	close(w.changed)
	w.changed = make(chan struct{})
}

// waitFor waits until pred (called with mu held) holds; timeout 0 waits
// forever. It returns whether pred held.
func (w *Worker) waitFor(pred func() bool, timeout time.Duration) bool {
	var deadline <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	for {
		w.mu.Lock()
		ok := pred()
		ch := w.changed
		w.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-deadline:
			w.mu.Lock()
			defer w.mu.Unlock()
			return pred()
		}
	}
}

// --- sessions ----------------------------------------------------------------

func (w *Worker) wantsConnectionLocked() bool {
	return !w.closing && w.refusal == "" && w.state != StateInitialized && w.state != StateStopped
}

// connectLoop runs one session after another, each on the server after
// the previous one's.
func (w *Worker) connectLoop(set *replicas.Set) {
	failures := 0
	for {
		w.mu.Lock()
		want := w.wantsConnectionLocked()
		w.mu.Unlock()
		if !want {
			return
		}
		index := set.Current()
		welcomed := w.runSession(set.Address(index), set.Conn(index))
		set.MoveOn(index)
		if welcomed {
			failures = 0
		}
		w.mu.Lock()
		want = w.wantsConnectionLocked()
		w.mu.Unlock()
		if !want {
			return
		}
		base := min(w.opts.ReconnectMax, w.opts.ReconnectInitial<<min(failures, 30))
		if base <= 0 { // overflow
			base = w.opts.ReconnectMax
		}
		failures++
		// Jitter in [base/2, base): workers cut off together do not return together.
		delay := base/2 + time.Duration(rand.Int64N(int64(base/2)+1))
		select {
		case <-time.After(delay):
		case <-w.closingCh:
			return
		}
	}
}

// runSession runs one Attach stream until it ends; it reports whether the
// session was welcomed.
func (w *Worker) runSession(target string, conn *grpc.ClientConn) bool {
	ctx, cancel := context.WithCancel(w.ctx)
	stream, err := crmsv1.NewWorkerServiceClient(conn).Attach(ctx)
	if err != nil {
		cancel()
		w.logf("cannot open a stream to %s: %s", target, errorText(err))
		return false
	}
	s := &session{
		target:     target,
		stream:     stream,
		ctx:        ctx,
		cancel:     cancel,
		outputs:    map[uint64]*outputRequest{},
		ctrlSignal: make(chan struct{}, 1),
		out:        make(chan *crmsv1.AttachRequest, 8),
		closeSend:  make(chan struct{}),
		writerDone: make(chan struct{}),
	}
	w.mu.Lock()
	if !w.wantsConnectionLocked() {
		w.mu.Unlock()
		cancel()
		return false
	}
	w.sessionCount++
	s.id = w.sessionCount
	w.session = s
	hello := w.helloLocked()
	s.enqueue(&crmsv1.AttachRequest{Msg: &crmsv1.AttachRequest_Hello{Hello: hello}})
	w.mu.Unlock()
	w.dbgf("connecting to %s (%d running, %d unacknowledged reports)", target, len(hello.Running), len(hello.Finished))

	go s.writer(w)
	welcomeTimer := time.AfterFunc(w.opts.WelcomeTimeout, func() {
		w.mu.Lock()
		welcomed := s.welcomed
		w.mu.Unlock()
		if !welcomed {
			w.logf("no Welcome from %s within %s", target, w.opts.WelcomeTimeout)
			cancel()
		}
	})
	why := ""
	for {
		msg, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				why = "stream ended by the server"
			} else {
				why = errorText(err)
				if code := status.Code(err); code == codes.InvalidArgument || code == codes.PermissionDenied {
					w.refused(target, why)
				}
			}
			break
		}
		w.onMessage(s, msg)
	}
	welcomeTimer.Stop()
	return w.endSession(s, why)
}

// refused records that the control plane refused this worker for good (no
// retry can change it) and stops the worker, killing its runs.
func (w *Worker) refused(target, why string) {
	w.mu.Lock()
	if w.refusal != "" {
		w.mu.Unlock()
		return
	}
	w.refusal = fmt.Sprintf("%s refused this worker: %s; not retrying", target, why)
	w.mu.Unlock()
	w.logf("%s", w.Refusal())
	go w.Stop(true, "refused by the control plane")
}

func (w *Worker) endSession(s *session, why string) bool {
	w.mu.Lock()
	s.closed = true
	for _, o := range s.outputs {
		o.cancel()
	}
	s.outputs = map[uint64]*outputRequest{}
	if w.session == s {
		w.session = nil
	}
	if !w.closing {
		w.logf("disconnected from %s: %s", s.target, why)
	}
	if w.state == StateRunning || w.state == StateDraining {
		_ = w.transitionLocked(StateConnecting)
	}
	welcomed := s.welcomed
	w.notifyLocked()
	w.mu.Unlock()
	s.cancel()
	<-s.writerDone
	return welcomed
}

func (w *Worker) helloLocked() *crmsv1.Hello {
	hello := &crmsv1.Hello{
		Name:          w.opts.Name,
		Slots:         uint32(w.opts.Slots),
		Resources:     w.opts.Resources,
		Labels:        w.opts.Labels,
		Hostname:      w.opts.Hostname,
		Version:       w.opts.Version,
		Incarnation:   w.incarnation,
		HeartbeatAcks: true,
	}
	for _, r := range w.runs {
		hello.Running = append(hello.Running, &crmsv1.RunningJob{JobId: r.jobID, Attempt: r.attempt, Pid: int32(r.PID()), Adopted: r.adopted})
	}
	for _, f := range w.unacked {
		hello.Finished = append(hello.Finished, f)
	}
	return hello
}

// enqueue adds a control message (sent before any queued output).
func (s *session) enqueue(msg *crmsv1.AttachRequest) {
	s.qmu.Lock()
	s.ctrl = append(s.ctrl, msg)
	s.qmu.Unlock()
	select {
	case s.ctrlSignal <- struct{}{}:
	default:
	}
}

func (s *session) popCtrl() *crmsv1.AttachRequest {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if len(s.ctrl) == 0 {
		return nil
	}
	msg := s.ctrl[0]
	s.ctrl[0] = nil
	s.ctrl = s.ctrl[1:]
	return msg
}

// sendOutput queues an output message; false if ctx ended first.
func (s *session) sendOutput(ctx context.Context, msg *crmsv1.AttachRequest) bool {
	select {
	case s.out <- msg:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *session) requestCloseSend() {
	s.closeOnce.Do(func() { close(s.closeSend) })
}

// writer is the only goroutine that sends on the stream.
func (s *session) writer(w *Worker) {
	defer close(s.writerDone)
	send := func(msg *crmsv1.AttachRequest) bool {
		if err := s.stream.Send(msg); err != nil {
			// io.EOF: the stream is over and Recv returns its status. Any
			// other error leaves the stream unusable: end it.
			if !errors.Is(err, io.EOF) {
				w.logf("write to %s failed: %v", s.target, err)
				s.cancel()
			}
			return false
		}
		return true
	}
	for {
		if msg := s.popCtrl(); msg != nil {
			if !send(msg) {
				return
			}
			continue
		}
		select {
		case <-s.ctrlSignal:
		case msg := <-s.out:
			if !send(msg) {
				return
			}
		case <-s.closeSend:
			for msg := s.popCtrl(); msg != nil; msg = s.popCtrl() {
				if !send(msg) {
					return
				}
			}
			_ = s.stream.CloseSend()
			<-s.ctx.Done()
			return
		case <-s.ctx.Done():
			return
		}
	}
}

// send sends a report on the current session: queued until Welcome, dropped
// without a session (the next Hello covers it).
func (w *Worker) send(msg *crmsv1.AttachRequest) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sendLocked(msg)
}

func (w *Worker) sendLocked(msg *crmsv1.AttachRequest) {
	s := w.session
	if s == nil || s.closed {
		return
	}
	if s.welcomed {
		s.enqueue(msg)
	} else {
		s.pending = append(s.pending, msg)
	}
}

func (w *Worker) onMessage(s *session, resp *crmsv1.AttachResponse) {
	w.mu.Lock()
	closed := s.closed
	w.mu.Unlock()
	if closed {
		return
	}
	switch m := resp.GetMsg().(type) {
	case *crmsv1.AttachResponse_Welcome:
		w.onWelcome(s, m.Welcome)
	case *crmsv1.AttachResponse_Assign:
		w.onAssign(m.Assign)
	case *crmsv1.AttachResponse_Kill:
		w.onKill(m.Kill)
	case *crmsv1.AttachResponse_Ack:
		w.mu.Lock()
		key := keyOf(m.Ack.GetJobId(), m.Ack.GetAttempt())
		if _, ok := w.unacked[key]; ok {
			delete(w.unacked, key)
			w.notifyLocked()
			if w.opts.Shim != "" {
				if dir, err := runDirOf(w.opts.DataDir, m.Ack.GetJobId(), m.Ack.GetAttempt()); err == nil {
					go func() { _ = os.WriteFile(filepath.Join(dir, ackedFile), nil, 0o644) }()
				}
			}
		}
		w.mu.Unlock()
	case *crmsv1.AttachResponse_HeartbeatAck:
		w.mu.Lock()
		w.extendLeaseLocked()
		w.mu.Unlock()
	case *crmsv1.AttachResponse_Drain:
		w.mu.Lock()
		w.drainRequested = true
		if w.state == StateRunning {
			w.logf("draining: no new jobs")
			_ = w.transitionLocked(StateDraining)
		}
		w.mu.Unlock()
	case *crmsv1.AttachResponse_Resume:
		w.mu.Lock()
		w.drainRequested = false
		if w.state == StateDraining {
			w.logf("resumed: taking new jobs")
			_ = w.transitionLocked(StateRunning)
		}
		w.mu.Unlock()
	case *crmsv1.AttachResponse_Shutdown:
		reason := m.Shutdown.GetReason()
		if reason != "" {
			w.logf("shutdown requested: %s", reason)
		} else {
			w.logf("shutdown requested")
			reason = "worker shut down"
		}
		w.mu.Lock()
		stopping := w.state == StateStopping || w.state == StateStopped
		w.mu.Unlock()
		if !stopping && m.Shutdown.GetKeepRuns() {
			go w.Leave(reason)
		} else if !stopping {
			// Not on this goroutine: Stop waits for Acks, which arrive here.
			go w.Stop(true, reason)
		}
	case *crmsv1.AttachResponse_OutputRequest:
		w.onOutputRequest(s, m.OutputRequest)
	case *crmsv1.AttachResponse_OutputCancel:
		w.mu.Lock()
		id := m.OutputCancel.GetRequestId()
		if o, ok := s.outputs[id]; ok {
			o.cancel()
			delete(s.outputs, id)
		}
		w.mu.Unlock()
	default:
		w.dbgf("ignoring an empty message from the server")
	}
}

func (w *Worker) onWelcome(s *session, welcome *crmsv1.Welcome) {
	w.mu.Lock()
	if s.welcomed {
		w.mu.Unlock()
		return
	}
	s.welcomed = true
	if welcome.GetDraining() {
		w.drainRequested = true
	}
	if w.state == StateConnecting {
		if w.drainRequested {
			_ = w.transitionLocked(StateDraining)
		} else {
			_ = w.transitionLocked(StateRunning)
		}
	}
	for _, msg := range s.pending {
		s.enqueue(msg)
	}
	s.pending = nil
	interval := w.opts.Heartbeat
	if hs := welcome.GetHeartbeatSeconds(); hs > 0 {
		interval = min(interval, time.Duration(hs)*time.Second)
	}
	w.graceSeconds = welcome.GetGraceSeconds()
	w.extendLeaseLocked()
	if w.graceSeconds > 0 {
		// Several acknowledged heartbeats per grace, so one late ack does not fence.
		interval = min(interval, time.Duration(w.graceSeconds)*time.Second/4)
	}
	interval = max(interval, 50*time.Millisecond)
	suffix := ""
	if r := welcome.GetReplica(); r != "" {
		suffix = " (replica " + r + ")"
	}
	if w.drainRequested {
		suffix += ", draining"
	}
	w.logf("attached to %s%s", s.target, suffix)
	w.notifyLocked()
	w.mu.Unlock()

	go func() {
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		for {
			select {
			case <-s.ctx.Done():
				return
			case <-ticker.C:
				w.mu.Lock()
				n := len(w.runs)
				w.mu.Unlock()
				s.enqueue(&crmsv1.AttachRequest{Msg: &crmsv1.AttachRequest_Heartbeat{Heartbeat: &crmsv1.Heartbeat{Running: uint32(n)}}})
			}
		}
	}()
}

// --- runs --------------------------------------------------------------------

func startedMsg(jobID string, attempt uint32, pid int) *crmsv1.AttachRequest {
	return &crmsv1.AttachRequest{Msg: &crmsv1.AttachRequest_Started{Started: &crmsv1.JobStarted{JobId: jobID, Attempt: attempt, Pid: int32(pid)}}}
}

func finishedMsg(f *crmsv1.JobFinished) *crmsv1.AttachRequest {
	return &crmsv1.AttachRequest{Msg: &crmsv1.AttachRequest_Finished{Finished: f}}
}

func (w *Worker) onAssign(a *crmsv1.Assign) {
	jobID, attempt := a.GetJobId(), a.GetAttempt()
	key := keyOf(jobID, attempt)
	w.mu.Lock()
	defer w.mu.Unlock()
	if existing, ok := w.runs[key]; ok {
		// A repeated Assign means the control plane may have missed JobStarted.
		w.logf("%s is already running; assignment ignored", label(jobID, attempt))
		if pid := existing.PID(); pid != 0 {
			w.sendLocked(startedMsg(jobID, attempt, pid))
		}
		return
	}
	if f, ok := w.unacked[key]; ok {
		w.logf("%s already ended; assignment ignored, report sent again", label(jobID, attempt))
		w.sendLocked(finishedMsg(f))
		return
	}
	if w.state == StateStopping || w.state == StateStopped {
		// Not refused with a report: once the stream closes the job is LOST
		// and requeued, which is what happened.
		w.logf("%s assigned while stopping; not started", label(jobID, attempt))
		return
	}
	if w.state == StateDraining {
		w.logf("%s assigned while draining; running it", label(jobID, attempt))
	}
	if w.recovering[key] {
		return
	}
	if dir, err := runDirOf(w.opts.DataDir, jobID, attempt); err == nil && w.opts.Shim != "" {
		if _, err := os.Stat(dir); err == nil {
			go w.assignedAgain(jobID, attempt)
			return
		}
	}
	if len(w.runs) >= w.opts.Slots {
		w.logf("%s exceeds %d slots; running it anyway", label(jobID, attempt), w.opts.Slots)
	}
	leaseFile := ""
	if w.graceSeconds > 0 {
		leaseFile = w.lease.file
	}
	run, err := startRun(runOptions{
		shim:       w.opts.Shim,
		leaseFile:  leaseFile,
		jobID:      jobID,
		attempt:    attempt,
		spec:       a.GetSpec(),
		dataDir:    w.opts.DataDir,
		workerName: w.opts.Name,
		tailBytes:  w.opts.TailBytes,
		baseEnv:    os.Environ(),
		runAs:      w.opts.RunAs,
		gpuIndices: a.GetGpuIndices(),
		onStart: func(pid int) {
			w.dbgf("%s started, pid %d", label(jobID, attempt), pid)
			w.send(startedMsg(jobID, attempt, pid))
		},
	})
	if err != nil {
		w.reportLocked(&crmsv1.JobFinished{JobId: jobID, Attempt: attempt, Error: "cannot run: " + err.Error()})
		return
	}
	w.trackLocked(key, run)
}

func describe(o Outcome) string {
	var parts []string
	if o.ExitCode != nil {
		parts = append(parts, fmt.Sprintf("exit %d", *o.ExitCode))
	}
	if o.Signal != "" {
		parts = append(parts, "signal "+o.Signal)
	}
	if o.Error != "" {
		parts = append(parts, o.Error)
	}
	if len(parts) == 0 {
		return "ended"
	}
	s := parts[0]
	for _, p := range parts[1:] {
		s += ", " + p
	}
	return s
}

func (w *Worker) onRunEnd(key string, run *Run) {
	o := run.Outcome()
	w.dbgf("%s finished: %s", label(run.jobID, run.attempt), describe(o))
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.runs, key)
	w.reportLocked(&crmsv1.JobFinished{
		JobId:      run.jobID,
		Attempt:    run.attempt,
		ExitCode:   o.ExitCode,
		Signal:     o.Signal,
		Error:      o.Error,
		StdoutTail: o.StdoutTail,
		StderrTail: o.StderrTail,
		TimedOut:   o.TimedOut,
		Killed:     o.Killed,
		Fenced:     o.Fenced,
		Pid:        int32(o.PID),
		Usage:      o.Usage,
	})
	w.shipOutputLocked(run.jobID, run.attempt)
}

// shipOutputLocked sends the run's full output to the control plane in the
// background (best effort, logged), so that it can be read after this worker
// is gone.
func (w *Worker) shipOutputLocked(jobID string, attempt uint32) {
	limit := w.opts.ShipOutputBytes
	if limit == 0 {
		limit = DefaultShipCap
	}
	if limit < 0 || w.replicas == nil {
		return
	}
	dir, err := runDirOf(w.opts.DataDir, jobID, attempt)
	if err != nil {
		return
	}
	client := crmsv1.NewWorkerServiceClient(w.replicas)
	go func() {
		if err := shipOutput(w.ctx, client, jobID, attempt, dir, limit); err != nil {
			w.dbgf("%s output not kept by the control plane: %s", label(jobID, attempt), errorText(err))
		} else {
			w.dbgf("%s output kept by the control plane", label(jobID, attempt))
		}
	}()
}

// reportLocked keeps a finished report until it is acknowledged, and sends it.
func (w *Worker) reportLocked(f *crmsv1.JobFinished) {
	w.unacked[keyOf(f.GetJobId(), f.GetAttempt())] = f
	w.sendLocked(finishedMsg(f))
	w.notifyLocked()
}

func (w *Worker) onKill(k *crmsv1.Kill) {
	jobID, attempt := k.GetJobId(), k.GetAttempt()
	key := keyOf(jobID, attempt)
	w.mu.Lock()
	defer w.mu.Unlock()
	if run, ok := w.runs[key]; ok {
		reason := k.GetReason()
		suffix := ""
		if reason != "" {
			suffix = ": " + reason
		} else {
			reason = "killed"
		}
		w.logf("killing %s (grace %ds)%s", label(jobID, attempt), k.GetGraceSeconds(), suffix)
		run.Kill(time.Duration(k.GetGraceSeconds())*time.Second, reason)
		return
	}
	if f, ok := w.unacked[key]; ok {
		w.sendLocked(finishedMsg(f))
		return
	}
	w.logf("kill for %s, which is not running here", label(jobID, attempt))
	w.reportLocked(&crmsv1.JobFinished{JobId: jobID, Attempt: attempt, Killed: true, Error: errKilledBeforeItStarted})
}

// --- output ------------------------------------------------------------------

func (w *Worker) onOutputRequest(s *session, req *crmsv1.OutputRequest) {
	requestID, jobID, attempt, follow := req.GetRequestId(), req.GetJobId(), req.GetAttempt(), req.GetFollow()
	ctx, cancel := context.WithCancel(s.ctx)
	o := &outputRequest{cancel: cancel}
	w.mu.Lock()
	if old, ok := s.outputs[requestID]; ok {
		old.cancel()
	}
	s.outputs[requestID] = o
	w.mu.Unlock()
	key := keyOf(jobID, attempt)
	isEnded := func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		r, ok := w.runs[key]
		return !ok || r.ended.Load()
	}
	go func() {
		defer func() {
			w.mu.Lock()
			if s.outputs[requestID] == o {
				delete(s.outputs, requestID)
			}
			w.mu.Unlock()
			cancel()
		}()
		var err error
		dir, err := runDirOf(w.opts.DataDir, jobID, attempt)
		if err == nil {
			err = readOutput(ctx, dir, follow, isEnded, func(stream crmsv1.OutputStream, data []byte, offset int64) bool {
				return s.sendOutput(ctx, &crmsv1.AttachRequest{Msg: &crmsv1.AttachRequest_Output{Output: &crmsv1.OutputData{
					RequestId: requestID,
					Stream:    stream,
					Data:      data,
					Offset:    offset,
				}}})
			})
		}
		if ctx.Err() != nil {
			return // cancelled, or the session ended: no eof
		}
		eof := &crmsv1.OutputData{RequestId: requestID, Eof: true}
		if err != nil {
			eof.Error = err.Error()
		}
		s.sendOutput(ctx, &crmsv1.AttachRequest{Msg: &crmsv1.AttachRequest_Output{Output: eof}})
	}()
}
