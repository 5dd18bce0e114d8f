package crms

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	crmsv1 "github.com/crms-dev/crms/clients/go/gen/crms/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// JobState is where a job is in its life (crms.v1.JobState).
type JobState int32

// Job states. See the contract (proto/crms/v1/job.proto) for the transitions.
const (
	StateUnspecified JobState = JobState(crmsv1.JobState_JOB_STATE_UNSPECIFIED)
	StatePending     JobState = JobState(crmsv1.JobState_JOB_STATE_PENDING)
	StateHeld        JobState = JobState(crmsv1.JobState_JOB_STATE_HELD)
	StateAssigned    JobState = JobState(crmsv1.JobState_JOB_STATE_ASSIGNED)
	StateRunning     JobState = JobState(crmsv1.JobState_JOB_STATE_RUNNING)
	StateSucceeded   JobState = JobState(crmsv1.JobState_JOB_STATE_SUCCEEDED)
	StateFailed      JobState = JobState(crmsv1.JobState_JOB_STATE_FAILED)
	StateKilled      JobState = JobState(crmsv1.JobState_JOB_STATE_KILLED)
	StateLost        JobState = JobState(crmsv1.JobState_JOB_STATE_LOST)
	// StatePreempted is only ever an Attempt's Outcome, never a job's State:
	// the scheduler stopped the run to give another queue its fair share and
	// the job went back to PENDING (charged to no retry budget).
	StatePreempted JobState = JobState(crmsv1.JobState_JOB_STATE_PREEMPTED)
)

// String is the state's name without the JOB_STATE_ prefix, e.g. "RUNNING".
func (s JobState) String() string {
	name, ok := crmsv1.JobState_name[int32(s)]
	if !ok {
		return fmt.Sprintf("JobState(%d)", int32(s))
	}
	return strings.TrimPrefix(name, "JOB_STATE_")
}

// Final reports whether a job in this state never changes again
// (SUCCEEDED, FAILED, KILLED, LOST).
func (s JobState) Final() bool {
	switch s {
	case StateSucceeded, StateFailed, StateKilled, StateLost:
		return true
	}
	return false
}

// ParseJobState parses "running", "RUNNING" or "JOB_STATE_RUNNING".
func ParseJobState(name string) (JobState, error) {
	upper := strings.ToUpper(strings.TrimSpace(name))
	if !strings.HasPrefix(upper, "JOB_STATE_") {
		upper = "JOB_STATE_" + upper
	}
	v, ok := crmsv1.JobState_value[upper]
	if !ok {
		return StateUnspecified, fmt.Errorf("crms: unknown job state %q", name)
	}
	return JobState(v), nil
}

// WorkerState is the liveness of a worker as the control plane sees it.
type WorkerState int32

// Worker states.
const (
	WorkerStateUnspecified WorkerState = WorkerState(crmsv1.WorkerState_WORKER_STATE_UNSPECIFIED)
	WorkerUp               WorkerState = WorkerState(crmsv1.WorkerState_WORKER_STATE_UP)
	WorkerDraining         WorkerState = WorkerState(crmsv1.WorkerState_WORKER_STATE_DRAINING)
	WorkerDisconnected     WorkerState = WorkerState(crmsv1.WorkerState_WORKER_STATE_DISCONNECTED)
	// WorkerDown: gone past its grace (or stopped); kept until forgotten.
	WorkerDown WorkerState = WorkerState(crmsv1.WorkerState_WORKER_STATE_DOWN)
)

// String is the state's name without the WORKER_STATE_ prefix, e.g. "UP".
func (s WorkerState) String() string {
	name, ok := crmsv1.WorkerState_name[int32(s)]
	if !ok {
		return fmt.Sprintf("WorkerState(%d)", int32(s))
	}
	return strings.TrimPrefix(name, "WORKER_STATE_")
}

// EventType says what a watch event means.
type EventType int32

// Watch event types.
const (
	EventUnspecified EventType = EventType(crmsv1.WatchEventType_WATCH_EVENT_TYPE_UNSPECIFIED)
	// EventExisting: a record that existed when the watch began.
	EventExisting EventType = EventType(crmsv1.WatchEventType_WATCH_EVENT_TYPE_EXISTING)
	// EventSynced: the initial listing is complete; changes follow. The
	// event carries no record.
	EventSynced EventType = EventType(crmsv1.WatchEventType_WATCH_EVENT_TYPE_SYNCED)
	// EventPut: a record was created or changed.
	EventPut EventType = EventType(crmsv1.WatchEventType_WATCH_EVENT_TYPE_PUT)
	// EventDeleted: a record was deleted (the event carries the last known record).
	EventDeleted EventType = EventType(crmsv1.WatchEventType_WATCH_EVENT_TYPE_DELETED)
)

// String is the type's name without the WATCH_EVENT_TYPE_ prefix, e.g. "PUT".
func (t EventType) String() string {
	name, ok := crmsv1.WatchEventType_name[int32(t)]
	if !ok {
		return fmt.Sprintf("EventType(%d)", int32(t))
	}
	return strings.TrimPrefix(name, "WATCH_EVENT_TYPE_")
}

// Stream names an output stream.
type Stream int32

// Output streams.
const (
	StreamUnspecified Stream = Stream(crmsv1.OutputStream_OUTPUT_STREAM_UNSPECIFIED)
	Stdout            Stream = Stream(crmsv1.OutputStream_OUTPUT_STREAM_STDOUT)
	Stderr            Stream = Stream(crmsv1.OutputStream_OUTPUT_STREAM_STDERR)
)

// String is "STDOUT" or "STDERR".
func (s Stream) String() string {
	name, ok := crmsv1.OutputStream_name[int32(s)]
	if !ok {
		return fmt.Sprintf("Stream(%d)", int32(s))
	}
	return strings.TrimPrefix(name, "OUTPUT_STREAM_")
}

// JobSpec is what to run. Only Command is required.
type JobSpec struct {
	// The argv to execute, no shell: []string{"sh", "-c", "..."} for shell
	// syntax. The first element is the program.
	Command []string
	// A human name, not unique.
	Name string
	// Environment variables added to the worker's base environment.
	Env map[string]string
	// Working directory on the worker; empty means the run's own directory.
	WorkingDir string
	// Labels on the job, for filtering (ListJobs).
	Labels map[string]string
	// The job runs only on a worker whose labels contain every key=value here.
	Constraints map[string]string
	// Run only on the worker of this name.
	TargetWorker string
	// Higher runs first; equal priorities run in submit order.
	Priority int32
	// How many times a run that failed on its own is retried; 0 runs once.
	MaxRetries uint32
	// Wall-clock limit of one run, whole seconds (rounded up); 0 means none.
	Timeout time.Duration
	// Submit in HELD state; the job waits for Release.
	Hold bool
	// How many times a LOST run is requeued; 0 means the default (3).
	MaxLostRetries uint32
	// Keep the finished record at least this long (whole seconds, rounded
	// up); 0 means the cluster default.
	Retention time.Duration
	// Makes an array job: one parent and a task per index, each with
	// CRMS_ARRAY_INDEX and CRMS_ARRAY_ID in its environment. nil: a plain job.
	Array *ArraySpec
	// Jobs this one waits for (all of them).
	After []Dependency
	// What one run needs; nil means the defaults (1 cpu, no memory
	// reservation, no GPU). A request no worker could ever hold is refused
	// with ErrInvalidArgument.
	Resources *Resources
	// The queue (see Client.CreateQueue); "" means "default". ErrNotFound
	// for a queue that does not exist.
	Queue string
	// The scheduler may stop a run to give a queue below its fair share its
	// resources; the job goes back to PENDING (an Attempt with Outcome
	// StatePreempted).
	Preemptible bool
}

// Resources are what a job asks for or a worker offers.
type Resources struct {
	// Whole CPUs. In a JobSpec 0 means the default, 1.
	CPUs uint32
	// Memory in bytes (ParseMemory("4G")). In a JobSpec 0 means no
	// reservation; the worker enforces a reservation as the job's limit.
	MemoryBytes uint64
	// GPUs; a job gets CUDA_VISIBLE_DEVICES with the indices reserved for it.
	GPUs uint32
	// Named countable resources (licenses, scratch disks...): name -> amount.
	Named map[string]uint64
}

// Proto returns the resources as a crms.v1.Resources message.
func (r *Resources) Proto() *crmsv1.Resources {
	if r == nil {
		return nil
	}
	return &crmsv1.Resources{Cpus: r.CPUs, MemoryBytes: r.MemoryBytes, Gpus: r.GPUs, Named: r.Named}
}

func resourcesFromProto(p *crmsv1.Resources) Resources {
	return Resources{CPUs: p.GetCpus(), MemoryBytes: p.GetMemoryBytes(), GPUs: p.GetGpus(), Named: p.GetNamed()}
}

var memoryPattern = regexp.MustCompile(`(?i)^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:ib|i|b)?|b)?\s*$`)

// ParseMemory parses a size in bytes: "1048576", "512M", "4G", "1.5GiB".
// K, M, G and T are powers of 1024, with or without "i", "iB" or "B", in
// any case; a fraction is rounded down to whole bytes and needs a suffix.
// The same sizes as crms submit --memory.
func ParseMemory(text string) (uint64, error) {
	m := memoryPattern.FindStringSubmatch(text)
	if m == nil || (m[2] == "" && strings.Contains(m[1], ".")) {
		return 0, fmt.Errorf("crms: memory %q: expected bytes or a size like 512M, 4G, 1.5GiB", text)
	}
	shift := map[string]uint{"": 0, "k": 10, "m": 20, "g": 30, "t": 40}[strings.ToLower(m[2])]
	if !strings.Contains(m[1], ".") {
		n, err := strconv.ParseUint(m[1], 10, 64)
		if err != nil || n > math.MaxUint64>>shift {
			return 0, fmt.Errorf("crms: memory %q is too large", text)
		}
		return n << shift, nil
	}
	f, _ := strconv.ParseFloat(m[1], 64)
	v := math.Floor(f * float64(uint64(1)<<shift))
	if v >= math.MaxUint64 {
		return 0, fmt.Errorf("crms: memory %q is too large", text)
	}
	return uint64(v), nil
}

// Usage is what a run (or every run of a job, summed) used, as its worker
// measured it from the operating system.
type Usage struct {
	// User plus system CPU time, in seconds.
	CPUSeconds float64
	// Largest resident set of the job's processes, in bytes.
	MaxRSSBytes uint64
	// Wall-clock time from start to end, in seconds.
	WallSeconds float64
	// GPUs reserved times wall seconds.
	GPUSeconds float64
}

func usageFromProto(p *crmsv1.Usage) *Usage {
	if p == nil {
		return nil
	}
	return &Usage{
		CPUSeconds:  p.GetCpuSeconds(),
		MaxRSSBytes: p.GetMaxRssBytes(),
		WallSeconds: p.GetWallSeconds(),
		GPUSeconds:  p.GetGpuSeconds(),
	}
}

// ArraySpec is the index range of an array job, like --array 1-1000%50.
type ArraySpec struct {
	First, Last uint32
	// At most this many tasks ASSIGNED or RUNNING at once; 0: no limit.
	MaxRunning uint32
}

// ParseArraySpec parses "FIRST-LAST[%MAX]" or "N".
func ParseArraySpec(text string) (*ArraySpec, error) {
	bad := fmt.Errorf("crms: array %q: expected FIRST-LAST or FIRST-LAST%%MAX, e.g. 1-1000%%50", text)
	rng, limit, hasLimit := strings.Cut(text, "%")
	firstText, lastText, hasLast := strings.Cut(rng, "-")
	if !hasLast {
		lastText = firstText
	}
	if !hasLimit {
		limit = "0"
	}
	var nums [3]uint32
	for i, t := range []string{firstText, lastText, limit} {
		n, err := strconv.ParseUint(t, 10, 32)
		if err != nil {
			return nil, bad
		}
		nums[i] = uint32(n)
	}
	return &ArraySpec{First: nums[0], Last: nums[1], MaxRunning: nums[2]}, nil
}

// String is "FIRST-LAST" or "FIRST-LAST%MAX".
func (a ArraySpec) String() string {
	if a.MaxRunning > 0 {
		return fmt.Sprintf("%d-%d%%%d", a.First, a.Last, a.MaxRunning)
	}
	return fmt.Sprintf("%d-%d", a.First, a.Last)
}

// DependencyCondition says which end of a dependency lets the dependant run.
type DependencyCondition int32

// Dependency conditions.
const (
	// AfterSucceeded (the default): the job succeeded (an array: every task).
	AfterSucceeded DependencyCondition = DependencyCondition(crmsv1.DependencyCondition_DEPENDENCY_CONDITION_SUCCEEDED)
	// AfterFailed: the job ended without success.
	AfterFailed DependencyCondition = DependencyCondition(crmsv1.DependencyCondition_DEPENDENCY_CONDITION_FAILED)
	// AfterFinished: the job ended in any final state.
	AfterFinished DependencyCondition = DependencyCondition(crmsv1.DependencyCondition_DEPENDENCY_CONDITION_FINISHED)
)

// String is "succeeded", "failed" or "finished".
func (c DependencyCondition) String() string {
	switch c {
	case AfterFailed:
		return "failed"
	case AfterFinished:
		return "finished"
	}
	return "succeeded"
}

// Dependency is a job another waits for.
type Dependency struct {
	JobID     string
	Condition DependencyCondition
}

// ParseDependency parses "ID" or "ID:succeeded|failed|finished".
func ParseDependency(text string) (Dependency, error) {
	id, word, _ := strings.Cut(text, ":")
	for _, c := range []DependencyCondition{AfterSucceeded, AfterFailed, AfterFinished} {
		if word == "" || word == c.String() {
			return Dependency{JobID: id, Condition: c}, nil
		}
	}
	return Dependency{}, fmt.Errorf("crms: after %q: expected ID or ID:succeeded|failed|finished", text)
}

// ArrayCounts is an array parent's tasks by state.
type ArrayCounts struct {
	// Tasks in the array, and task records created so far.
	Total, Created uint32
	// Not-yet-created tasks count as Pending. Running is ASSIGNED or RUNNING.
	Pending, Held, Running, Succeeded, Failed, Killed, Lost uint32
}

func seconds(d time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	s := (d + time.Second - 1) / time.Second
	if s > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(s)
}

// Proto returns the spec as a crms.v1.JobSpec message.
func (s *JobSpec) Proto() *crmsv1.JobSpec {
	return &crmsv1.JobSpec{
		Command:          s.Command,
		Name:             s.Name,
		Env:              s.Env,
		WorkingDir:       s.WorkingDir,
		Labels:           s.Labels,
		Constraints:      s.Constraints,
		TargetWorker:     s.TargetWorker,
		Priority:         s.Priority,
		MaxRetries:       s.MaxRetries,
		TimeoutSeconds:   seconds(s.Timeout),
		Hold:             s.Hold,
		MaxLostRetries:   s.MaxLostRetries,
		RetentionSeconds: seconds(s.Retention),
		Array:            arrayProto(s.Array),
		After:            afterProto(s.After),
		Resources:        s.Resources.Proto(),
		Queue:            s.Queue,
		Preemptible:      s.Preemptible,
	}
}

func arrayProto(a *ArraySpec) *crmsv1.ArraySpec {
	if a == nil {
		return nil
	}
	return &crmsv1.ArraySpec{First: a.First, Last: a.Last, MaxRunning: a.MaxRunning}
}

func afterProto(after []Dependency) []*crmsv1.Dependency {
	var out []*crmsv1.Dependency
	for _, d := range after {
		out = append(out, &crmsv1.Dependency{JobId: d.JobID, Condition: crmsv1.DependencyCondition(d.Condition)})
	}
	return out
}

// JobSpecFromProto converts a crms.v1.JobSpec message.
func JobSpecFromProto(p *crmsv1.JobSpec) JobSpec {
	if p == nil {
		return JobSpec{}
	}
	spec := JobSpec{
		Command:        p.GetCommand(),
		Name:           p.GetName(),
		Env:            p.GetEnv(),
		WorkingDir:     p.GetWorkingDir(),
		Labels:         p.GetLabels(),
		Constraints:    p.GetConstraints(),
		TargetWorker:   p.GetTargetWorker(),
		Priority:       p.GetPriority(),
		MaxRetries:     p.GetMaxRetries(),
		Timeout:        time.Duration(p.GetTimeoutSeconds()) * time.Second,
		Hold:           p.GetHold(),
		MaxLostRetries: p.GetMaxLostRetries(),
		Retention:      time.Duration(p.GetRetentionSeconds()) * time.Second,
		Queue:          p.GetQueue(),
		Preemptible:    p.GetPreemptible(),
	}
	if r := p.GetResources(); r != nil {
		res := resourcesFromProto(r)
		spec.Resources = &res
	}
	if a := p.GetArray(); a != nil {
		spec.Array = &ArraySpec{First: a.GetFirst(), Last: a.GetLast(), MaxRunning: a.GetMaxRunning()}
	}
	for _, d := range p.GetAfter() {
		c := DependencyCondition(d.GetCondition())
		if c == 0 {
			c = AfterSucceeded
		}
		spec.After = append(spec.After, Dependency{JobID: d.GetJobId(), Condition: c})
	}
	return spec
}

// Attempt is one run of a job on a worker.
type Attempt struct {
	Number     uint32
	Worker     string
	AssignTime time.Time
	StartTime  time.Time // zero if the process never started
	EndTime    time.Time // zero while it runs
	// SUCCEEDED, FAILED, KILLED, LOST or PREEMPTED; StateUnspecified while
	// it runs.
	Outcome JobState
	// Exit code when the process exited normally, else nil.
	ExitCode *int
	// Signal name (e.g. "SIGKILL") when a signal ended it.
	Signal string
	Error  string
	// The run was killed for passing the spec's Timeout.
	TimedOut bool
	// What the run used; nil while it runs or when its worker could not tell.
	Usage *Usage
	// The GPU indices reserved for the run (its CUDA_VISIBLE_DEVICES).
	GPUIndices []uint32
}

// Job is a submitted job and its current status.
type Job struct {
	// Unique id: decimal digits in submit order.
	ID    string
	Spec  JobSpec
	State JobState
	// Number of the current or last attempt; 0 before the first assignment.
	Attempt uint32
	// Worker of the current or last attempt.
	Worker string
	// Process id on the worker (also its process group id).
	PID int
	// Exit code of the last run when it exited normally, else nil.
	ExitCode *int
	// Signal that ended the last run, e.g. "SIGKILL".
	Signal string
	// Why the job failed, was killed or lost.
	Error string
	// Why a PENDING job has not been placed yet.
	PendingReason string
	SubmitTime    time.Time
	StartTime     time.Time
	EndTime       time.Time
	// The last bytes of stdout / stderr of the last run (capped by the
	// worker); the whole output stays on the worker (see Client.Output).
	StdoutTail []byte
	StderrTail []byte
	// Every attempt so far, oldest first.
	Attempts []Attempt
	// Runs that failed on their own / were lost with their worker so far.
	Failures  uint32
	LostCount uint32
	// The request id (idempotency key) it was submitted with, if any.
	RequestID string
	// A kill was requested; the worker is ending the process.
	KillRequested bool
	KillGrace     time.Duration
	// For a task of an array: the parent's id and the task's index.
	ArrayParent string
	ArrayIndex  uint32
	// For an array parent: its tasks by state (nil otherwise).
	ArrayCounts *ArrayCounts
	// The worker named by RunJob (it overrides Spec.TargetWorker).
	RunOn string
	// The requested kill is immediate (SIGKILL, no grace).
	KillForce bool
	// How many times RequeueJob ran it again after it had ended.
	Requeues uint32
	// Who submitted it: the token's name, or on a server without
	// authentication the crms.io/owner label. Fair share is between users.
	User string
	// Its queue ("default" when the spec named none).
	Queue string
	// What every run so far used, summed; nil before any run reported.
	Usage *Usage
	// The scheduler is stopping the run to give another queue its share.
	PreemptRequested bool
	// Runs preempted so far (charged to no retry budget).
	Preemptions uint32
	// For a PENDING job: its place among its queue's pending jobs in the
	// order they will be considered (1 = next); 0 when not known.
	QueuePosition uint64
}

// Final reports whether the job is in a final state.
func (j *Job) Final() bool { return j != nil && j.State.Final() }

func timeOf(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

func intPtr(p *int32) *int {
	if p == nil {
		return nil
	}
	v := int(*p)
	return &v
}

// JobFromProto converts a crms.v1.Job message.
func JobFromProto(p *crmsv1.Job) *Job {
	if p == nil {
		return nil
	}
	j := &Job{
		ID:            p.GetId(),
		Spec:          JobSpecFromProto(p.GetSpec()),
		State:         JobState(p.GetState()),
		Attempt:       p.GetAttempt(),
		Worker:        p.GetWorker(),
		PID:           int(p.GetPid()),
		ExitCode:      intPtr(p.ExitCode),
		Signal:        p.GetSignal(),
		Error:         p.GetError(),
		PendingReason: p.GetPendingReason(),
		SubmitTime:    timeOf(p.GetSubmitTime()),
		StartTime:     timeOf(p.GetStartTime()),
		EndTime:       timeOf(p.GetEndTime()),
		StdoutTail:    p.GetStdoutTail(),
		StderrTail:    p.GetStderrTail(),
		Failures:      p.GetFailures(),
		LostCount:     p.GetLostCount(),
		RequestID:     p.GetRequestId(),
		KillRequested: p.GetKillRequested(),
		KillGrace:     time.Duration(p.GetKillGraceSeconds()) * time.Second,
		ArrayParent:   p.GetArrayParent(),
		ArrayIndex:    p.GetArrayIndex(),
		RunOn:         p.GetRunOn(),
		KillForce:     p.GetKillForce(),
		Requeues:      p.GetRequeues(),
		User:          p.GetUser(),
		Queue:         p.GetQueue(),
		Usage:         usageFromProto(p.GetUsage()),

		PreemptRequested: p.GetPreemptRequested(),
		Preemptions:      p.GetPreemptions(),
		QueuePosition:    p.GetQueuePosition(),
	}
	if c := p.GetArrayCounts(); c != nil {
		j.ArrayCounts = &ArrayCounts{
			Total: c.GetTotal(), Created: c.GetCreated(), Pending: c.GetPending(), Held: c.GetHeld(),
			Running: c.GetRunning(), Succeeded: c.GetSucceeded(), Failed: c.GetFailed(), Killed: c.GetKilled(),
			Lost: c.GetLost(),
		}
	}
	for _, a := range p.GetAttempts() {
		j.Attempts = append(j.Attempts, Attempt{
			Number:     a.GetNumber(),
			Worker:     a.GetWorker(),
			AssignTime: timeOf(a.GetAssignTime()),
			StartTime:  timeOf(a.GetStartTime()),
			EndTime:    timeOf(a.GetEndTime()),
			Outcome:    JobState(a.GetOutcome()),
			ExitCode:   intPtr(a.ExitCode),
			Signal:     a.GetSignal(),
			Error:      a.GetError(),
			TimedOut:   a.GetTimedOut(),
			Usage:      usageFromProto(a.GetUsage()),
			GPUIndices: a.GetGpuIndices(),
		})
	}
	return j
}

// Worker is a machine (or process) that runs jobs in slots.
type Worker struct {
	Name     string
	Slots    uint32
	Labels   map[string]string
	Hostname string
	Version  string
	State    WorkerState
	// Slots in use (ASSIGNED or RUNNING jobs) and their job ids.
	UsedSlots   uint32
	RunningJobs []string
	// When the current (or last) stream attached.
	AttachTime    time.Time
	LastHeartbeat time.Time
	// When its stream ended, if DISCONNECTED.
	DisconnectTime time.Time
	// The control-plane replica that holds its stream.
	Replica string
	// Stop was called; the worker is told to exit.
	StopRequested bool
	// For a DOWN worker: when and why it went down, and the jobs it had.
	DownTime   time.Time
	DownReason string
	LastJobs   []string
	// What it offers in all, and what its ASSIGNED and RUNNING jobs hold.
	Capacity  Resources
	Allocated Resources
}

// WorkerFromProto converts a crms.v1.Worker message.
func WorkerFromProto(p *crmsv1.Worker) *Worker {
	if p == nil {
		return nil
	}
	return &Worker{
		Name:           p.GetName(),
		Slots:          p.GetSlots(),
		Labels:         p.GetLabels(),
		Hostname:       p.GetHostname(),
		Version:        p.GetVersion(),
		State:          WorkerState(p.GetState()),
		UsedSlots:      p.GetUsedSlots(),
		RunningJobs:    p.GetRunningJobs(),
		AttachTime:     timeOf(p.GetAttachTime()),
		LastHeartbeat:  timeOf(p.GetLastHeartbeat()),
		DisconnectTime: timeOf(p.GetDisconnectTime()),
		Replica:        p.GetReplica(),
		StopRequested:  p.GetStopRequested(),
		DownTime:       timeOf(p.GetDownTime()),
		DownReason:     p.GetDownReason(),
		LastJobs:       p.GetLastJobs(),
		Capacity:       resourcesFromProto(p.GetCapacity()),
		Allocated:      resourcesFromProto(p.GetAllocated()),
	}
}

// JobEvent is one event of WatchJobs.
type JobEvent struct {
	Type EventType
	// The job after the change (the last known record for EventDeleted);
	// nil for EventSynced.
	Job *Job
	// Store revision; pass it as WatchOptions.AfterRevision to resume.
	Revision int64
}

// WorkerEvent is one event of WatchWorkers.
type WorkerEvent struct {
	Type     EventType
	Worker   *Worker // nil for EventSynced
	Revision int64
}

// OutputChunk is a piece of a job's output.
type OutputChunk struct {
	Stream Stream
	Data   []byte
	// Offset of Data[0] within its stream.
	Offset int64
	// The bytes come from the tail stored with the finished job, because the
	// worker that has the full output is not attached.
	Truncated bool
}

// JobOutput is a job's whole output as read by Client.ReadOutput.
type JobOutput struct {
	Stdout []byte
	Stderr []byte
	// Only the stored tails were available (see OutputChunk.Truncated).
	Truncated bool
}

// EtcdMember is the status of one etcd member.
type EtcdMember struct {
	Endpoint    string
	ID          string
	Name        string
	Version     string
	DBSize      int64
	DBSizeInUse int64
	Leader      bool
	RaftIndex   uint64
	Alarms      []string
	// Set when the member could not be reached.
	Error string
}

func membersFromProto(ms []*crmsv1.EtcdMember) []EtcdMember {
	out := make([]EtcdMember, 0, len(ms))
	for _, m := range ms {
		out = append(out, EtcdMember{
			Endpoint:    m.GetEndpoint(),
			ID:          m.GetId(),
			Name:        m.GetName(),
			Version:     m.GetVersion(),
			DBSize:      m.GetDbSize(),
			DBSizeInUse: m.GetDbSizeInUse(),
			Leader:      m.GetLeader(),
			RaftIndex:   m.GetRaftIndex(),
			Alarms:      m.GetAlarms(),
			Error:       m.GetError(),
		})
	}
	return out
}

// ClusterStatus describes etcd and the cluster's jobs and workers.
type ClusterStatus struct {
	Members    []EtcdMember
	Revision   int64
	QuotaBytes int64
	Alarms     []string
	// Workers known (DOWN ones included), how many are attached and
	// accepting jobs, and how many are DOWN.
	Workers     uint32
	WorkersUp   uint32
	WorkersDown uint32
	// Slots over all attached workers, and how many are in use.
	SlotsTotal uint32
	SlotsUsed  uint32
	// Job counts by state.
	Jobs            map[JobState]uint64
	Replica         string
	SchedulerLeader string
	// Unfinished jobs (array tasks included) against the cap (crms server
	// --max-jobs; 0: no cap).
	UnfinishedJobs uint64
	MaxJobs        uint64
}

func clusterStatusFromProto(p *crmsv1.GetClusterStatusResponse) *ClusterStatus {
	s := &ClusterStatus{
		Members:         membersFromProto(p.GetMembers()),
		Revision:        p.GetRevision(),
		QuotaBytes:      p.GetQuotaBytes(),
		Alarms:          p.GetAlarms(),
		Workers:         p.GetWorkers(),
		WorkersUp:       p.GetWorkersUp(),
		WorkersDown:     p.GetWorkersDown(),
		SlotsTotal:      p.GetSlotsTotal(),
		SlotsUsed:       p.GetSlotsUsed(),
		Jobs:            map[JobState]uint64{},
		Replica:         p.GetReplica(),
		SchedulerLeader: p.GetSchedulerLeader(),
		UnfinishedJobs:  p.GetUnfinishedJobs(),
		MaxJobs:         p.GetMaxJobs(),
	}
	for _, c := range p.GetJobs() {
		s.Jobs[JobState(c.GetState())] += c.GetCount()
	}
	return s
}

// RecoverResult reports the steps of Client.Recover.
type RecoverResult struct {
	CompactedRevision int64
	Members           []EtcdMember
	Disarmed          []string
	// A test write succeeded after recovery.
	Writable bool
}
