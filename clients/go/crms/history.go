package crms

import (
	"context"
	"iter"
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
	// Only jobs of this owner (the crms.io/owner label).
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
