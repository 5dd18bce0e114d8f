// Package crms is the Go client of crms, a cluster resource manager: submit
// command lines as jobs, watch and wait for them, read their output, and
// inspect and control workers, queues and the cluster, over the crms.v1 gRPC
// API.
//
//	c, err := crms.Dial(ctx, "localhost:7070")
//	if err != nil { ... }
//	defer c.Close()
//	job, err := c.Submit(ctx, crms.JobSpec{Command: []string{"echo", "hello"}})
//	job, err = c.Wait(ctx, job.ID)
//	out, err := c.ReadOutput(ctx, job.ID)
//
// Every method takes a context first. Errors keep their gRPC status
// (status.Code(err) works) and match the sentinels of this package with
// errors.Is (crms.ErrNotFound, crms.ErrInvalidArgument, ...).
//
// A target may list several control-plane replicas, "a:7070,b:7070": a
// call that finds its replica UNAVAILABLE goes to the next one, and Submit
// retries with one request id, as the TypeScript client does.
package crms

import (
	"context"
	"os"
	"time"

	crmsv1 "github.com/crms-dev/crms/clients/go/gen/crms/v1"
	"github.com/crms-dev/crms/clients/go/internal/replicas"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// DefaultTarget is the address used when Dial is given "": $CRMS_SERVER, else
// localhost:7070 (the same default as the crms command line).
func DefaultTarget() string {
	if s := os.Getenv("CRMS_SERVER"); s != "" {
		return s
	}
	return "localhost:7070"
}

// Option configures Dial.
type Option func(*options)

type options struct {
	creds        credentials.TransportCredentials
	dialOpts     []grpc.DialOption
	waitReady    bool
	security     *Security
	submitBudget time.Duration
}

// WithTransportCredentials sets the channel's credentials (default:
// insecure, plaintext).
func WithTransportCredentials(creds credentials.TransportCredentials) Option {
	return func(o *options) { o.creds = creds }
}

// WithDialOptions adds gRPC dial options.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOpts = append(o.dialOpts, opts...) }
}

// WithWaitReady makes Dial connect at once and return only when a channel
// is ready (with several addresses, the first one ready is used first), or
// fail with ctx's error (wrapped as UNAVAILABLE). Without it Dial returns at
// once and the first call connects.
func WithWaitReady() Option {
	return func(o *options) { o.waitReady = true }
}

// DefaultSubmitRetryBudget is how long Submit keeps retrying by default.
const DefaultSubmitRetryBudget = 30 * time.Second

// WithSubmitRetryBudget sets how long Submit and SubmitIdempotent keep
// retrying a submit that failed with UNAVAILABLE or DEADLINE_EXCEEDED
// (default DefaultSubmitRetryBudget); 0 or less sends it once.
func WithSubmitRetryBudget(budget time.Duration) Option {
	return func(o *options) { o.submitBudget = budget }
}

// Client talks to a crms control plane. It is safe for concurrent use.
type Client struct {
	replicas     *replicas.Set
	submitBudget time.Duration
	jobs         crmsv1.JobServiceClient
	workers      crmsv1.WorkerServiceClient
	admin        crmsv1.AdminServiceClient
	queues       crmsv1.QueueServiceClient
}

// Dial makes a client for the control plane at target: host:port, any gRPC
// target such as dns:///host:port, or several addresses of replicas
// separated by commas ("a:7070,b:7070"); "" means DefaultTarget().
//
// With several addresses there is one connection per address. A unary call
// that fails with UNAVAILABLE is sent to the next address, at most once
// round the list, and the client keeps using the address that answered;
// streams open on the address in use (passing over one found UNAVAILABLE
// when opening). Submit also retries with backoff, see SubmitIdempotent.
func Dial(ctx context.Context, target string, opts ...Option) (*Client, error) {
	o := options{creds: insecure.NewCredentials(), submitBudget: DefaultSubmitRetryBudget}
	for _, opt := range opts {
		opt(&o)
	}
	if target == "" {
		target = DefaultTarget()
	}
	addrs := replicas.Split(target)
	if len(addrs) == 0 {
		return nil, newError("Dial", codes.InvalidArgument, "no server address in %q", target)
	}
	var sec Security
	if o.security != nil {
		sec = *o.security
	}
	secOpts, err := SecurityFromEnv(sec).DialOptions()
	if err != nil {
		return nil, newError("Dial", codes.InvalidArgument, "%v", err)
	}
	dialOpts := append([]grpc.DialOption{grpc.WithTransportCredentials(o.creds)}, secOpts...)
	dialOpts = append(dialOpts, o.dialOpts...)
	set, err := replicas.Dial(addrs, dialOpts...)
	if err != nil {
		return nil, wrapError("Dial", err)
	}
	if o.waitReady {
		if err := set.WaitReady(ctx); err != nil {
			_ = set.Close()
			return nil, newError("Dial", codes.Unavailable, "%s not ready: %v", target, err)
		}
	}
	return newClient(set, o.submitBudget), nil
}

// NewClient makes a client on an existing connection (one address; Submit
// retries for DefaultSubmitRetryBudget). Close then closes conn.
func NewClient(conn *grpc.ClientConn) *Client {
	return newClient(replicas.Of(conn), DefaultSubmitRetryBudget)
}

func newClient(set *replicas.Set, submitBudget time.Duration) *Client {
	return &Client{
		replicas:     set,
		submitBudget: submitBudget,
		jobs:         crmsv1.NewJobServiceClient(set),
		workers:      crmsv1.NewWorkerServiceClient(set),
		admin:        crmsv1.NewAdminServiceClient(set),
		queues:       crmsv1.NewQueueServiceClient(set),
	}
}

// Close closes the connections.
func (c *Client) Close() error { return c.replicas.Close() }

// Conn is the gRPC connection to the address in use (with several
// addresses, the one that last answered; Conn().Target() names it).
func (c *Client) Conn() *grpc.ClientConn { return c.replicas.Conn(c.replicas.Current()) }

// JobService is the generated JobService client, for what this package does
// not wrap. Its calls fail over between addresses like the Client's (but
// SubmitJob there is sent once).
func (c *Client) JobService() crmsv1.JobServiceClient { return c.jobs }

// WorkerService is the generated WorkerService client.
func (c *Client) WorkerService() crmsv1.WorkerServiceClient { return c.workers }

// AdminService is the generated AdminService client.
func (c *Client) AdminService() crmsv1.AdminServiceClient { return c.admin }

// QueueService is the generated QueueService client.
func (c *Client) QueueService() crmsv1.QueueServiceClient { return c.queues }
