package crms

import (
	"context"
	"io"
	"iter"

	crmsv1 "github.com/crms-dev/crms/clients/go/gen/crms/v1"
	"google.golang.org/grpc/codes"
)

// AllWorkers iterates over the known workers ordered by name, a page at a
// time. It stops after yielding an error.
func (c *Client) AllWorkers(ctx context.Context) iter.Seq2[*Worker, error] {
	return func(yield func(*Worker, error) bool) {
		req := &crmsv1.ListWorkersRequest{}
		for {
			resp, err := c.workers.ListWorkers(ctx, req)
			if err != nil {
				yield(nil, wrapError("ListWorkers", err))
				return
			}
			for _, w := range resp.GetWorkers() {
				if !yield(WorkerFromProto(w), nil) {
					return
				}
			}
			if resp.GetNextPageToken() == "" {
				return
			}
			req.PageToken = resp.GetNextPageToken()
		}
	}
}

// Workers returns every known worker (all pages), ordered by name.
func (c *Client) Workers(ctx context.Context) ([]*Worker, error) {
	var out []*Worker
	for w, err := range c.AllWorkers(ctx) {
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}

// Worker returns one worker; ErrNotFound if it is not known.
func (c *Client) Worker(ctx context.Context, name string) (*Worker, error) {
	resp, err := c.workers.GetWorker(ctx, &crmsv1.GetWorkerRequest{Name: name})
	if err != nil {
		return nil, wrapError("GetWorker", err)
	}
	return WorkerFromProto(resp.GetWorker()), nil
}

// WatchWorkers streams the current workers (EventExisting, then
// EventSynced), then every change, until ctx ends, the loop breaks, or the
// stream fails (then it yields the error and stops).
func (c *Client) WatchWorkers(ctx context.Context) iter.Seq2[WorkerEvent, error] {
	return func(yield func(WorkerEvent, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := c.workers.WatchWorkers(ctx, &crmsv1.WatchWorkersRequest{})
		if err != nil {
			yield(WorkerEvent{}, wrapError("WatchWorkers", err))
			return
		}
		for {
			ev, err := stream.Recv()
			if err != nil {
				if err == io.EOF {
					err = newError("WatchWorkers", codes.Unavailable, "the server ended the watch")
				}
				yield(WorkerEvent{}, wrapError("WatchWorkers", err))
				return
			}
			event := WorkerEvent{Type: EventType(ev.GetType()), Worker: WorkerFromProto(ev.GetWorker()), Revision: ev.GetRevision()}
			if !yield(event, nil) {
				return
			}
		}
	}
}

// Drain stops placing jobs on a worker; its running jobs finish. Returns
// the worker, now DRAINING.
func (c *Client) Drain(ctx context.Context, name string) (*Worker, error) {
	resp, err := c.workers.DrainWorker(ctx, &crmsv1.DrainWorkerRequest{Name: name})
	if err != nil {
		return nil, wrapError("DrainWorker", err)
	}
	return WorkerFromProto(resp.GetWorker()), nil
}

// Resume undoes Drain: the worker takes new jobs again. Returns the worker,
// now UP.
func (c *Client) Resume(ctx context.Context, name string) (*Worker, error) {
	resp, err := c.workers.ResumeWorker(ctx, &crmsv1.ResumeWorkerRequest{Name: name})
	if err != nil {
		return nil, wrapError("ResumeWorker", err)
	}
	return WorkerFromProto(resp.GetWorker()), nil
}

// ForgetWorker removes a DOWN worker's record (ErrFailedPrecondition if it
// is not DOWN, ErrNotFound if it is not known).
func (c *Client) ForgetWorker(ctx context.Context, name string) error {
	_, err := c.workers.ForgetWorker(ctx, &crmsv1.ForgetWorkerRequest{Name: name})
	return wrapError("ForgetWorker", err)
}

// Stop tells a worker to exit; its running jobs are killed.
func (c *Client) Stop(ctx context.Context, name string) error {
	_, err := c.workers.StopWorker(ctx, &crmsv1.StopWorkerRequest{Name: name})
	return wrapError("StopWorker", err)
}
