// Package replicas is what the client (package crms) and the worker
// (internal/worker) share to talk to several control-plane replicas: the
// split of "a:7070,b:7070" into addresses, one grpc.ClientConn per address,
// and which address is in use.
//
// One ClientConn per address, rather than one ClientConn whose manual
// resolver (google.golang.org/grpc/resolver/manual) lists every address plus
// a retry policy on UNAVAILABLE, because:
//   - a one-address target ("host:7070", "dns:///host:7070",
//     "passthrough:///...", "unix:...") goes to grpc.NewClient untouched, so
//     it resolves and behaves exactly as it did with one address;
//   - each connection's authority, which is the name TLS checks the server's
//     certificate against, is that replica's own host; behind a manual
//     resolver every address shares one authority;
//   - which address a call goes to is decided here, in the order of the
//     list, as the TypeScript client does (clients/typescript/src/failover.ts): on
//     UNAVAILABLE the next address, at most once round the list, and then
//     the address that last answered. Behind one ClientConn that is
//     pick_first's choice, and retrying UNAVAILABLE takes a retry policy in
//     the service config, which gRPC caps at 5 attempts and which a service
//     config set by the caller replaces.
package replicas

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
)

// Split splits "a:7070, b:7070" into its addresses, dropping empty ones. A
// target without a comma is one address, whatever its form.
func Split(target string) []string {
	var addrs []string
	for _, a := range strings.Split(target, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// Set is one grpc.ClientConn per control-plane address and the index of the
// one in use. It is a grpc.ClientConnInterface, so generated clients made on
// it fail over (see Invoke and NewStream). Safe for concurrent use.
type Set struct {
	addrs   []string
	conns   []*grpc.ClientConn
	current atomic.Int64
}

// Dial makes a connection to each address (grpc.NewClient: nothing connects
// before the first call). The first address is the one in use.
func Dial(addrs []string, opts ...grpc.DialOption) (*Set, error) {
	if len(addrs) == 0 {
		return nil, errors.New("no server address given")
	}
	s := &Set{addrs: addrs}
	for _, a := range addrs {
		c, err := grpc.NewClient(a, opts...)
		if err != nil {
			_ = s.Close()
			return nil, err
		}
		s.conns = append(s.conns, c)
	}
	return s, nil
}

// Of is the set of one existing connection.
func Of(conn *grpc.ClientConn) *Set {
	return &Set{addrs: []string{conn.Target()}, conns: []*grpc.ClientConn{conn}}
}

// Len is the number of addresses.
func (s *Set) Len() int { return len(s.conns) }

// Current is the index of the address in use.
func (s *Set) Current() int { return int(s.current.Load()) }

// Address is the i-th address.
func (s *Set) Address(i int) string { return s.addrs[i] }

// Conn is the connection to the i-th address.
func (s *Set) Conn(i int) *grpc.ClientConn { return s.conns[i] }

// MoveOn makes the address after from the one in use, unless another call
// has already moved away from from (so concurrent failures of one address
// move on once, not once each).
func (s *Set) MoveOn(from int) {
	s.current.CompareAndSwap(int64(from), int64((from+1)%len(s.conns)))
}

// Close closes every connection.
func (s *Set) Close() error {
	var errs []error
	for _, c := range s.conns {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// retry runs call on the address in use and, while it fails with
// UNAVAILABLE and ctx is live, on the next ones: at most once round the
// list. The address that answers stays in use.
func (s *Set) retry(ctx context.Context, call func(*grpc.ClientConn) error) error {
	for tried := 1; ; tried++ {
		i := s.Current()
		err := call(s.conns[i])
		if status.Code(err) != codes.Unavailable || tried >= len(s.conns) || ctx.Err() != nil {
			return err
		}
		s.MoveOn(i)
	}
}

// Invoke makes a unary call, failing over on UNAVAILABLE (see retry).
func (s *Set) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return s.retry(ctx, func(c *grpc.ClientConn) error {
		return c.Invoke(ctx, method, args, reply, opts...)
	})
}

// NewStream opens a stream on the address in use. Opening one sends no
// message, so a replica found UNAVAILABLE at this point is passed over like
// in Invoke; once open, a stream that breaks is the caller's to reopen.
func (s *Set) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	var stream grpc.ClientStream
	err := s.retry(ctx, func(c *grpc.ClientConn) error {
		var err error
		stream, err = c.NewStream(ctx, desc, method, opts...)
		return err
	})
	return stream, err
}

// WaitReady connects every address and returns once one of them is ready,
// which becomes the one in use (the current one if it is ready), or ctx's
// error.
func (s *Set) WaitReady(ctx context.Context) error {
	for _, c := range s.conns {
		c.Connect()
	}
	for {
		waitCtx, cancel := context.WithCancel(ctx)
		changed := make(chan struct{}, len(s.conns))
		start := s.Current()
		for k := range s.conns {
			i := (start + k) % len(s.conns)
			state := s.conns[i].GetState()
			if state == connectivity.Ready {
				cancel()
				s.current.Store(int64(i))
				return nil
			}
			go func() {
				if s.conns[i].WaitForStateChange(waitCtx, state) {
					changed <- struct{}{}
				}
			}()
		}
		select {
		case <-changed:
			cancel()
		case <-ctx.Done():
			cancel()
			return ctx.Err()
		}
	}
}

var _ grpc.ClientConnInterface = (*Set)(nil)
