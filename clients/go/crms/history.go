package crms

import (
	"context"
	"fmt"
	"iter"
	"strings"
	"time"

	crmsv1 "github.com/crms-dev/crms/clients/go/gen/crms/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// HistoryFilter selects finished jobs from the history database. Every field
// set must hold; zero values select everything.
type HistoryFilter struct {
	// Only jobs that ended at or after this time.
	Since time.Time
	// Only jobs that ended before this time.
	Until time.Time
	// Only jobs in one of these final states.
	States []JobState
	// Only jobs of this user (Job.User; for jobs stored before it, the
	// crms.io/owner label).
	Owner string
	// Only jobs of this queue.
	Queue string
	// Only jobs whose last attempt ran on this worker.
	Worker string
	// Only jobs whose name matches this glob (* any run, ? one character).
	NameGlob string
	// Only jobs whose labels contain every key=value here.
	Labels map[string]string
	// Jobs fetched per call, 1 to 1,000; 0 means the server's default (100).
	PageSize uint32
}

func (f *HistoryFilter) request() *crmsv1.ListHistoryRequest {
	req := &crmsv1.ListHistoryRequest{
		Owner:    f.Owner,
		Queue:    f.Queue,
		Worker:   f.Worker,
		NameGlob: f.NameGlob,
		Labels:   f.Labels,
		PageSize: f.PageSize,
	}
	if !f.Since.IsZero() {
		req.Since = timestamppb.New(f.Since)
	}
	if !f.Until.IsZero() {
		req.Until = timestamppb.New(f.Until)
	}
	for _, s := range f.States {
		req.States = append(req.States, crmsv1.JobState(s))
	}
	return req
}

// History iterates over finished jobs from the history database (kept after
// etcd retention deleted them), newest end first, a page at a time. It stops
// after yielding an error: ErrFailedPrecondition when the control plane keeps
// no history, ErrUnavailable while its database is down.
func (c *Client) History(ctx context.Context, filter HistoryFilter) iter.Seq2[*Job, error] {
	req := filter.request()
	return pagedJobs("ListHistory", func(token string) ([]*crmsv1.Job, string, error) {
		req.PageToken = token
		resp, err := c.jobs.ListHistory(ctx, req)
		return resp.GetJobs(), resp.GetNextPageToken(), err
	})
}

// UsageGrouping says what GetUsage groups by.
type UsageGrouping int32

// Usage groupings.
const (
	// UsageByUser (the default) groups by Job.User.
	UsageByUser UsageGrouping = UsageGrouping(crmsv1.UsageGrouping_USAGE_GROUPING_USER)
	// UsageByQueue groups by Job.Queue.
	UsageByQueue UsageGrouping = UsageGrouping(crmsv1.UsageGrouping_USAGE_GROUPING_QUEUE)
	// UsageByWorker groups by the worker of the last attempt.
	UsageByWorker UsageGrouping = UsageGrouping(crmsv1.UsageGrouping_USAGE_GROUPING_WORKER)
)

// String is "user", "queue" or "worker".
func (g UsageGrouping) String() string {
	switch g {
	case UsageByQueue:
		return "queue"
	case UsageByWorker:
		return "worker"
	}
	return "user"
}

// ParseUsageGrouping parses "user", "queue" or "worker" (any case).
func ParseUsageGrouping(text string) (UsageGrouping, error) {
	for _, g := range []UsageGrouping{UsageByUser, UsageByQueue, UsageByWorker} {
		if strings.EqualFold(strings.TrimSpace(text), g.String()) {
			return g, nil
		}
	}
	return UsageByUser, fmt.Errorf("crms: usage grouping %q: expected user, queue or worker", text)
}

// UsageOptions selects what GetUsage sums.
type UsageOptions struct {
	// Only jobs that ended at or after this time; zero means the server's
	// default, the last 7 days.
	Since time.Time
	// What to group by; zero means UsageByUser.
	GroupBy UsageGrouping
}

// UsageRow is what one user's, queue's or worker's finished jobs used.
type UsageRow struct {
	// The user, queue or worker name ("" for jobs without one).
	Key string
	// Finished jobs, and of them how many SUCCEEDED, FAILED (final LOST
	// included) and KILLED.
	Jobs, Succeeded, Failed, Killed uint64
	// CPU time (user + system), GPUs reserved times wall time, and wall time
	// of every run, in hours.
	CPUHours, GPUHours, WallHours float64
	// The largest max RSS of any run, in bytes.
	MaxRSSBytes uint64
}

// UsageReport is GetUsage's answer.
type UsageReport struct {
	// One row per group, largest CPU hours first.
	Rows []UsageRow
	// The lower bound of end times the server used.
	Since time.Time
}

// Row returns the row of one key, or nil.
func (r *UsageReport) Row(key string) *UsageRow {
	for i := range r.Rows {
		if r.Rows[i].Key == key {
			return &r.Rows[i]
		}
	}
	return nil
}

// GetUsage sums what finished jobs used, grouped by user, queue or worker,
// from the job history database. ErrFailedPrecondition when the control
// plane keeps no history, ErrUnavailable while its database is down.
func (c *Client) GetUsage(ctx context.Context, opts UsageOptions) (*UsageReport, error) {
	req := &crmsv1.GetUsageRequest{GroupBy: crmsv1.UsageGrouping(opts.GroupBy)}
	if !opts.Since.IsZero() {
		req.Since = timestamppb.New(opts.Since)
	}
	resp, err := c.jobs.GetUsage(ctx, req)
	if err != nil {
		return nil, wrapError("GetUsage", err)
	}
	report := &UsageReport{Since: timeOf(resp.GetSince())}
	for _, r := range resp.GetRows() {
		report.Rows = append(report.Rows, UsageRow{
			Key:         r.GetKey(),
			Jobs:        r.GetJobs(),
			Succeeded:   r.GetSucceeded(),
			Failed:      r.GetFailed(),
			Killed:      r.GetKilled(),
			CPUHours:    r.GetCpuHours(),
			GPUHours:    r.GetGpuHours(),
			WallHours:   r.GetWallHours(),
			MaxRSSBytes: r.GetMaxRssBytes(),
		})
	}
	return report, nil
}
