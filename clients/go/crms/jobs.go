package crms

import (
	"context"
	"errors"
	"io"
	"iter"
	"time"

	crmsv1 "github.com/crms-dev/crms/clients/go/gen/crms/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Submit submits a job and returns it as stored (usually PENDING, or HELD
// with spec.Hold). A bad spec (empty command, oversized fields) gives
// ErrInvalidArgument. It is SubmitIdempotent with a generated request id, so
// a submit cut off by a failure and retried creates exactly one job.
func (c *Client) Submit(ctx context.Context, spec JobSpec) (*Job, error) {
	job, _, err := c.SubmitIdempotent(ctx, "", spec)
	return job, err
}

// SubmitIdempotent submits with an idempotency key (up to 128 bytes): a retry
// with the same requestID returns the job the first call created, with
// existing set. An empty requestID gets a random one (Job.RequestID).
//
// A submit that fails with UNAVAILABLE (after trying every address) or
// DEADLINE_EXCEEDED is sent again with the same request id, after 100 ms
// doubling to 2 s, for up to WithSubmitRetryBudget (30 s by default) or
// until ctx ends; each attempt gets at most 10 s. So existing may also be
// true when an earlier attempt of this very call created the job.
func (c *Client) SubmitIdempotent(ctx context.Context, requestID string, spec JobSpec) (job *Job, existing bool, err error) {
	if requestID == "" {
		requestID = newRequestID()
	}
	req := &crmsv1.SubmitJobRequest{Spec: spec.Proto(), RequestId: requestID}
	var resp *crmsv1.SubmitJobResponse
	err = retrySameRequest(ctx, "SubmitJob", c.submitBudget, func(ctx context.Context) error {
		var err error
		resp, err = c.jobs.SubmitJob(ctx, req)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return JobFromProto(resp.GetJob()), resp.GetExisting(), nil
}

// GetJob returns one job; ErrNotFound if it does not exist.
func (c *Client) GetJob(ctx context.Context, id string) (*Job, error) {
	resp, err := c.jobs.GetJob(ctx, &crmsv1.GetJobRequest{Id: id})
	if err != nil {
		return nil, wrapError("GetJob", err)
	}
	return JobFromProto(resp.GetJob()), nil
}

// JobFilter selects jobs for ListJobs and Jobs. The zero value selects all.
type JobFilter struct {
	// Only jobs in one of these states; empty means all.
	States []JobState
	// Only jobs whose current or last attempt is on this worker.
	Worker string
	// Only jobs whose labels contain every key=value here.
	Labels map[string]string
	// Jobs fetched per call, 1 to 1,000; 0 means the server's default (100).
	PageSize uint32
	// Only the tasks of this array parent. Without it, array tasks are left
	// out (their parent stands for them) unless IncludeTasks or Worker is set.
	ArrayParent string
	// List array tasks alongside other jobs.
	IncludeTasks bool
	// The order: "id" (the default: oldest first), "submit_time", "end_time",
	// "state" or "name", each with a leading "-" for descending ("-id":
	// newest first).
	OrderBy string
}

func (f *JobFilter) request() *crmsv1.ListJobsRequest {
	req := &crmsv1.ListJobsRequest{
		Worker:       f.Worker,
		Labels:       f.Labels,
		PageSize:     f.PageSize,
		ArrayParent:  f.ArrayParent,
		IncludeTasks: f.IncludeTasks,
		OrderBy:      f.OrderBy,
	}
	for _, s := range f.States {
		req.States = append(req.States, crmsv1.JobState(s))
	}
	return req
}

// Jobs iterates over the jobs the filter selects, ordered by id, fetching a
// page at a time. It stops after yielding an error.
//
//	for job, err := range c.Jobs(ctx, crms.JobFilter{}) { ... }
func (c *Client) Jobs(ctx context.Context, filter JobFilter) iter.Seq2[*Job, error] {
	req := filter.request()
	return pagedJobs("ListJobs", func(token string) ([]*crmsv1.Job, string, error) {
		req.PageToken = token
		resp, err := c.jobs.ListJobs(ctx, req)
		return resp.GetJobs(), resp.GetNextPageToken(), err
	})
}

// pagedJobs yields the jobs of the page fetch returns for each page token in
// turn, starting with "", until a page has no next token. It stops after
// yielding an error (wrapped with the RPC's name) or when the loop breaks.
func pagedJobs(rpc string, fetch func(token string) ([]*crmsv1.Job, string, error)) iter.Seq2[*Job, error] {
	return func(yield func(*Job, error) bool) {
		token := ""
		for {
			jobs, next, err := fetch(token)
			if err != nil {
				yield(nil, wrapError(rpc, err))
				return
			}
			for _, j := range jobs {
				if !yield(JobFromProto(j), nil) {
					return
				}
			}
			if next == "" {
				return
			}
			token = next
		}
	}
}

// CountJobs returns how many jobs the filter selects (ListJobs' total_size)
// without listing them.
func (c *Client) CountJobs(ctx context.Context, filter JobFilter) (int, error) {
	req := filter.request()
	req.PageSize = 1
	resp, err := c.jobs.ListJobs(ctx, req)
	if err != nil {
		return 0, wrapError("ListJobs", err)
	}
	return int(resp.GetTotalSize()), nil
}

// ListJobs returns every job the filter selects (all pages), in the filter's order.
func (c *Client) ListJobs(ctx context.Context, filter JobFilter) ([]*Job, error) {
	var jobs []*Job
	for job, err := range c.Jobs(ctx, filter) {
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, job)
	}
	return jobs, nil
}

// WatchOptions selects what WatchJobs sends.
type WatchOptions struct {
	// Only these jobs; empty means every job.
	IDs []string
	// Resume after this revision (a JobEvent.Revision seen before): no
	// initial listing, only changes after it. 0 starts with the current
	// state: EventExisting for each job, then EventSynced, then changes.
	AfterRevision int64
}

// WatchJobs streams job events until ctx ends, the loop breaks, or the
// stream fails (then it yields the error and stops). Breaking out of the
// loop ends the watch.
func (c *Client) WatchJobs(ctx context.Context, opts WatchOptions) iter.Seq2[JobEvent, error] {
	return func(yield func(JobEvent, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := c.jobs.WatchJobs(ctx, &crmsv1.WatchJobsRequest{Ids: opts.IDs, AfterRevision: opts.AfterRevision})
		if err != nil {
			yield(JobEvent{}, wrapError("WatchJobs", err))
			return
		}
		for {
			ev, err := stream.Recv()
			if err != nil {
				if err == io.EOF {
					err = newError("WatchJobs", codes.Unavailable, "the server ended the watch")
				}
				yield(JobEvent{}, wrapError("WatchJobs", err))
				return
			}
			event := JobEvent{Type: EventType(ev.GetType()), Job: JobFromProto(ev.GetJob()), Revision: ev.GetRevision()}
			if !yield(event, nil) {
				return
			}
		}
	}
}

// Wait blocks until the job reaches a final state (SUCCEEDED, FAILED,
// KILLED, LOST) and returns it. ErrNotFound if the job does not exist or is
// deleted meanwhile; ctx's error (as CANCELLED / DEADLINE_EXCEEDED, which
// match context.Canceled / context.DeadlineExceeded) if it ends first.
func (c *Client) Wait(ctx context.Context, id string) (*Job, error) {
	return c.WaitUntil(ctx, id, func(*Job) bool { return false })
}

// WaitUntil blocks until cond(job) holds or the job reaches a final state
// (which never changes, so cond could never hold later), and returns the
// job as it was then. It watches the job, and if the watch breaks because
// the server went away (UNAVAILABLE) it watches again, up to a few times in
// a row without progress.
func (c *Client) WaitUntil(ctx context.Context, id string, cond func(*Job) bool) (*Job, error) {
	const maxRetries = 5
	backoff := 200 * time.Millisecond
	failures := 0
	for {
		job, progressed, err := c.waitOnce(ctx, id, cond)
		if err == nil {
			return job, nil
		}
		if status.Code(err) != codes.Unavailable || ctx.Err() != nil {
			return nil, err
		}
		if progressed {
			failures = 0
			backoff = 200 * time.Millisecond
		}
		failures++
		if failures > maxRetries {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, wrapError("Wait", ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// waitOnce runs one watch; progressed says whether it received any event.
func (c *Client) waitOnce(ctx context.Context, id string, cond func(*Job) bool) (job *Job, progressed bool, err error) {
	seen := false
	for ev, err := range c.WatchJobs(ctx, WatchOptions{IDs: []string{id}}) {
		if err != nil {
			if ctx.Err() != nil {
				return nil, progressed, wrapError("Wait", ctx.Err())
			}
			return nil, progressed, err
		}
		progressed = true
		switch ev.Type {
		case EventSynced:
			if !seen {
				return nil, true, newError("Wait", codes.NotFound, "job %s not found", id)
			}
		case EventDeleted:
			return nil, true, newError("Wait", codes.NotFound, "job %s was deleted", id)
		case EventExisting, EventPut:
			if ev.Job == nil || ev.Job.ID != id {
				continue
			}
			seen = true
			if cond(ev.Job) || ev.Job.Final() {
				return ev.Job, true, nil
			}
		}
	}
	return nil, progressed, newError("Wait", codes.Unavailable, "watch of job %s ended early", id)
}

// Kill kills a job: a pending or held job becomes KILLED at once; a running
// one gets SIGTERM, then SIGKILL after grace (0 means the server's default,
// 10 s; rounded up to whole seconds; at most an hour, ErrInvalidArgument
// above). It returns the job after the request
// (still RUNNING with KillRequested until the worker reports the end; use
// Wait). ErrFailedPrecondition if the job already ended.
func (c *Client) Kill(ctx context.Context, id string, grace time.Duration) (*Job, error) {
	resp, err := c.jobs.KillJob(ctx, &crmsv1.KillJobRequest{Id: id, GraceSeconds: seconds(grace)})
	if err != nil {
		return nil, wrapError("KillJob", err)
	}
	return JobFromProto(resp.GetJob()), nil
}

// KillNow kills a job with SIGKILL at once, overriding the grace of an
// earlier Kill (a later Kill with a shorter grace overrides it too).
func (c *Client) KillNow(ctx context.Context, id string) (*Job, error) {
	resp, err := c.jobs.KillJob(ctx, &crmsv1.KillJobRequest{Id: id, Force: true})
	if err != nil {
		return nil, wrapError("KillJob", err)
	}
	return JobFromProto(resp.GetJob()), nil
}

// RunJob is GoCRMS's RunJob(id, worker): a HELD or PENDING job runs on the
// named worker (released if HELD) as soon as that worker has a free slot.
// ErrNotFound for an unknown worker, ErrFailedPrecondition for a job in
// another state.
func (c *Client) RunJob(ctx context.Context, id, worker string) (*Job, error) {
	resp, err := c.jobs.RunJob(ctx, &crmsv1.RunJobRequest{Id: id, Worker: worker})
	if err != nil {
		return nil, wrapError("RunJob", err)
	}
	return JobFromProto(resp.GetJob()), nil
}

// Requeue runs a finished job again as a new attempt under the same id (its
// attempts kept); for an array every task, or with failedOnly only the tasks
// that did not succeed. ErrFailedPrecondition if it has not ended.
func (c *Client) Requeue(ctx context.Context, id string, failedOnly bool) (*Job, error) {
	resp, err := c.jobs.RequeueJob(ctx, &crmsv1.RequeueJobRequest{Id: id, FailedOnly: failedOnly})
	if err != nil {
		return nil, wrapError("RequeueJob", err)
	}
	return JobFromProto(resp.GetJob()), nil
}

// Hold holds a PENDING job (ErrFailedPrecondition in other states).
func (c *Client) Hold(ctx context.Context, id string) (*Job, error) {
	resp, err := c.jobs.HoldJob(ctx, &crmsv1.HoldJobRequest{Id: id})
	if err != nil {
		return nil, wrapError("HoldJob", err)
	}
	return JobFromProto(resp.GetJob()), nil
}

// Release releases a HELD job to PENDING (ErrFailedPrecondition in other states).
func (c *Client) Release(ctx context.Context, id string) (*Job, error) {
	resp, err := c.jobs.ReleaseJob(ctx, &crmsv1.ReleaseJobRequest{Id: id})
	if err != nil {
		return nil, wrapError("ReleaseJob", err)
	}
	return JobFromProto(resp.GetJob()), nil
}

// Delete deletes a finished job (ErrFailedPrecondition if it has not finished).
func (c *Client) Delete(ctx context.Context, id string) error {
	_, err := c.jobs.DeleteJob(ctx, &crmsv1.DeleteJobRequest{Id: id})
	return wrapError("DeleteJob", err)
}

// Output streams a job's stdout and stderr from its worker, in chunks of at
// most 64 KiB. With follow it keeps streaming new output until the job ends
// (like tail -f). If the worker that has the output is not attached, the
// tails stored with the finished job come instead (Truncated set). It stops
// after yielding an error.
func (c *Client) Output(ctx context.Context, id string, follow bool) iter.Seq2[OutputChunk, error] {
	return func(yield func(OutputChunk, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := c.jobs.StreamOutput(ctx, &crmsv1.StreamOutputRequest{Id: id, Follow: follow})
		if err != nil {
			yield(OutputChunk{}, wrapError("StreamOutput", err))
			return
		}
		for {
			chunk, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				yield(OutputChunk{}, wrapError("StreamOutput", err))
				return
			}
			out := OutputChunk{
				Stream:    Stream(chunk.GetStream()),
				Data:      chunk.GetData(),
				Offset:    chunk.GetOffset(),
				Truncated: chunk.GetTruncated(),
			}
			if !yield(out, nil) {
				return
			}
		}
	}
}

// ReadOutput reads a job's whole output as it is now (no follow).
func (c *Client) ReadOutput(ctx context.Context, id string) (*JobOutput, error) {
	out := &JobOutput{}
	for chunk, err := range c.Output(ctx, id, false) {
		if err != nil {
			return nil, err
		}
		if chunk.Truncated {
			out.Truncated = true
		}
		switch chunk.Stream {
		case Stdout:
			out.Stdout = append(out.Stdout, chunk.Data...)
		case Stderr:
			out.Stderr = append(out.Stderr, chunk.Data...)
		}
	}
	return out, nil
}

// OutputReader returns a reader of one stream (Stdout or Stderr) of a job's
// output; with follow it blocks for new output until the job ends. Close it
// to stop early.
func (c *Client) OutputReader(ctx context.Context, id string, stream Stream, follow bool) io.ReadCloser {
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	go func() {
		defer cancel()
		for chunk, err := range c.Output(ctx, id, follow) {
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			if chunk.Stream != stream {
				continue
			}
			if _, err := pw.Write(chunk.Data); err != nil {
				return // reader closed
			}
		}
		pw.Close()
	}()
	return &outputReader{PipeReader: pr, cancel: cancel}
}

type outputReader struct {
	*io.PipeReader
	cancel context.CancelFunc
}

func (r *outputReader) Close() error {
	r.cancel()
	return r.PipeReader.Close()
}
