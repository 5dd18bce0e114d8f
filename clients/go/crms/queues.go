package crms

import (
	"context"
	"time"

	crmsv1 "github.com/crms-dev/crms/clients/go/gen/crms/v1"
)

// Queue is a share of the cluster. Between queues the scheduler shares by
// Weight; within a queue, between users, by their usage decayed with a
// half-life (the formula is in proto/crms/v1/queue.proto). Limits of 0 mean
// none.
type Queue struct {
	// 1 to 63 of [a-z0-9_.-], starting with a letter or digit.
	Name string
	// Its share relative to the other queues' weights; 0 in CreateQueue means 1.
	Weight float64
	// At most this many jobs ASSIGNED or RUNNING at once.
	MaxRunning uint32
	// At most this many cpus / gpus reserved by its running jobs.
	MaxCPUs uint32
	MaxGPUs uint32
	// Every job of the queue may be preempted (as JobSpec.Preemptible).
	Preemptible bool
	// When it was created; zero for the built-in "default" queue. Set by the
	// server.
	CreateTime time.Time
	// What it runs and waits for now, computed when read; nil when the
	// server sent none. Set by the server.
	Status *QueueStatus
}

// QueueStatus is a queue's current load and share.
type QueueStatus struct {
	// Jobs ASSIGNED or RUNNING, and jobs PENDING.
	Running uint32
	Pending uint64
	// CPUs and GPUs reserved by its running jobs.
	CPUs uint32
	GPUs uint32
	// Its allocation now as a fraction of the cluster (sum of dominant
	// shares), and its target share (weight over the weights of the queues
	// with demand).
	Share       float64
	TargetShare float64
	// Per user with running or pending jobs in the queue.
	Users []UserShare
}

// UserShare is one user's standing in a queue.
type UserShare struct {
	// The user (Job.User).
	User    string
	Running uint32
	Pending uint64
	// Its allocation now as a fraction of the cluster, and its target: the
	// queue's target split evenly over its users with demand.
	Share       float64
	TargetShare float64
	// Its decayed usage, in cost-seconds.
	DecayedUsage float64
}

// Proto returns the queue's settings as a crms.v1.Queue message (the
// server sets CreateTime and Status).
func (q *Queue) Proto() *crmsv1.Queue {
	return &crmsv1.Queue{
		Name:        q.Name,
		Weight:      q.Weight,
		MaxRunning:  q.MaxRunning,
		MaxCpus:     q.MaxCPUs,
		MaxGpus:     q.MaxGPUs,
		Preemptible: q.Preemptible,
	}
}

// QueueFromProto converts a crms.v1.Queue message.
func QueueFromProto(p *crmsv1.Queue) *Queue {
	if p == nil {
		return nil
	}
	q := &Queue{
		Name:        p.GetName(),
		Weight:      p.GetWeight(),
		MaxRunning:  p.GetMaxRunning(),
		MaxCPUs:     p.GetMaxCpus(),
		MaxGPUs:     p.GetMaxGpus(),
		Preemptible: p.GetPreemptible(),
		CreateTime:  timeOf(p.GetCreateTime()),
	}
	if s := p.GetStatus(); s != nil {
		q.Status = &QueueStatus{
			Running:     s.GetRunning(),
			Pending:     s.GetPending(),
			CPUs:        s.GetCpus(),
			GPUs:        s.GetGpus(),
			Share:       s.GetShare(),
			TargetShare: s.GetTargetShare(),
		}
		for _, u := range s.GetUsers() {
			q.Status.Users = append(q.Status.Users, UserShare{
				User:         u.GetUser(),
				Running:      u.GetRunning(),
				Pending:      u.GetPending(),
				Share:        u.GetShare(),
				TargetShare:  u.GetTargetShare(),
				DecayedUsage: u.GetDecayedUsage(),
			})
		}
	}
	return q
}

// CreateQueue creates a queue (admin) and returns it as stored.
// ErrAlreadyExists if the name is taken, ErrInvalidArgument for a bad name
// or weight, ErrPermissionDenied without the admin role.
func (c *Client) CreateQueue(ctx context.Context, q Queue) (*Queue, error) {
	resp, err := c.queues.CreateQueue(ctx, &crmsv1.CreateQueueRequest{Queue: q.Proto()})
	if err != nil {
		return nil, wrapError("CreateQueue", err)
	}
	return QueueFromProto(resp.GetQueue()), nil
}

// GetQueue returns one queue with its Status; ErrNotFound if it does not exist.
func (c *Client) GetQueue(ctx context.Context, name string) (*Queue, error) {
	resp, err := c.queues.GetQueue(ctx, &crmsv1.GetQueueRequest{Name: name})
	if err != nil {
		return nil, wrapError("GetQueue", err)
	}
	return QueueFromProto(resp.GetQueue()), nil
}

// ListQueues returns every queue with its Status, "default" first, then by
// name.
func (c *Client) ListQueues(ctx context.Context) ([]*Queue, error) {
	resp, err := c.queues.ListQueues(ctx, &crmsv1.ListQueuesRequest{})
	if err != nil {
		return nil, wrapError("ListQueues", err)
	}
	out := make([]*Queue, 0, len(resp.GetQueues()))
	for _, q := range resp.GetQueues() {
		out = append(out, QueueFromProto(q))
	}
	return out, nil
}

// UpdateQueue replaces the settings of the queue named q.Name (admin) and
// returns it as stored. Every setting is replaced: change a queue read with
// GetQueue to keep the others. ErrNotFound if it does not exist; "default"
// can be updated too.
func (c *Client) UpdateQueue(ctx context.Context, q Queue) (*Queue, error) {
	resp, err := c.queues.UpdateQueue(ctx, &crmsv1.UpdateQueueRequest{Queue: q.Proto()})
	if err != nil {
		return nil, wrapError("UpdateQueue", err)
	}
	return QueueFromProto(resp.GetQueue()), nil
}

// DeleteQueue deletes a queue (admin). ErrFailedPrecondition while it has
// unfinished jobs, and for "default"; ErrNotFound if it does not exist.
func (c *Client) DeleteQueue(ctx context.Context, name string) error {
	_, err := c.queues.DeleteQueue(ctx, &crmsv1.DeleteQueueRequest{Name: name})
	return wrapError("DeleteQueue", err)
}
