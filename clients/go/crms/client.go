// Package crms is the Go client of crms, a cluster resource manager: submit
// command lines as jobs, watch and wait for them, read their output, and
// inspect and control workers and the cluster, over the crms.v1 gRPC API.
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
package crms

import (
	"context"
	"os"

	crmsv1 "github.com/crms-dev/crms/clients/go/gen/crms/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
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
	creds     credentials.TransportCredentials
	dialOpts  []grpc.DialOption
	waitReady bool
	security  *Security
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

// WithWaitReady makes Dial connect at once and return only when the channel
// is ready, or fail with ctx's error (wrapped as UNAVAILABLE). Without it
// Dial returns at once and the first call connects.
func WithWaitReady() Option {
	return func(o *options) { o.waitReady = true }
}

// Client talks to a crms control plane. It is safe for concurrent use.
type Client struct {
	conn    *grpc.ClientConn
	jobs    crmsv1.JobServiceClient
	workers crmsv1.WorkerServiceClient
	admin   crmsv1.AdminServiceClient
}

// Dial makes a client for the control plane at target (host:port, or any
// gRPC target such as dns:///host:port); "" means DefaultTarget().
func Dial(ctx context.Context, target string, opts ...Option) (*Client, error) {
	o := options{creds: insecure.NewCredentials()}
	for _, opt := range opts {
		opt(&o)
	}
	if target == "" {
		target = DefaultTarget()
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
	conn, err := grpc.NewClient(target, dialOpts...)
	if err != nil {
		return nil, wrapError("Dial", err)
	}
	if o.waitReady {
		conn.Connect()
		for {
			state := conn.GetState()
			if state == connectivity.Ready {
				break
			}
			if !conn.WaitForStateChange(ctx, state) {
				_ = conn.Close()
				return nil, newError("Dial", codes.Unavailable, "%s not ready: %v", target, ctx.Err())
			}
		}
	}
	return NewClient(conn), nil
}

// NewClient makes a client on an existing connection. Close then closes conn.
func NewClient(conn *grpc.ClientConn) *Client {
	return &Client{
		conn:    conn,
		jobs:    crmsv1.NewJobServiceClient(conn),
		workers: crmsv1.NewWorkerServiceClient(conn),
		admin:   crmsv1.NewAdminServiceClient(conn),
	}
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Conn is the underlying gRPC connection.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// JobService is the generated JobService client, for what this package does
// not wrap.
func (c *Client) JobService() crmsv1.JobServiceClient { return c.jobs }

// WorkerService is the generated WorkerService client.
func (c *Client) WorkerService() crmsv1.WorkerServiceClient { return c.workers }

// AdminService is the generated AdminService client.
func (c *Client) AdminService() crmsv1.AdminServiceClient { return c.admin }
