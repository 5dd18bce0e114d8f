package crms

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Backoff of retrySameRequest, and the deadline of each attempt (as in
// retrySameRequest of clients/typescript/src/failover.ts).
const (
	retryFirstDelay      = 100 * time.Millisecond
	retryMaxDelay        = 2 * time.Second
	retryAttemptDeadline = 10 * time.Second
)

// retrySameRequest runs call until it succeeds, retrying UNAVAILABLE and
// DEADLINE_EXCEEDED with backoff (100 ms doubling to 2 s) for up to budget.
// Each attempt gets at most 10 s, so one that hangs on a stuck replica is
// given up and sent again. The caller sends the same request each time
// (same request id), so the server acts on it once however many times it
// arrives. Other errors, the last error once the budget is spent, and ctx's
// error if it ends first are returned. A budget of 0 or less calls once.
func retrySameRequest(ctx context.Context, op string, budget time.Duration, call func(context.Context) error) error {
	if budget <= 0 {
		return wrapError(op, call(ctx))
	}
	deadline := time.Now().Add(budget)
	delay := retryFirstDelay
	for {
		attemptCtx, cancel := context.WithTimeout(ctx, min(time.Until(deadline), retryAttemptDeadline))
		err := call(attemptCtx)
		cancel()
		if err == nil {
			return nil
		}
		code := status.Code(err)
		retryable := code == codes.Unavailable || code == codes.DeadlineExceeded
		if !retryable || ctx.Err() != nil || time.Now().Add(delay).After(deadline) {
			return wrapError(op, err)
		}
		select {
		case <-ctx.Done():
			return wrapError(op, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, retryMaxDelay)
	}
}

// newRequestID is a random (version 4) UUID, the idempotency key of a
// submit whose caller gave none.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
