package crms

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors for errors.Is. Every error a Client method returns for a
// failed call is an *Error that matches the sentinel of its gRPC code, so
//
//	if errors.Is(err, crms.ErrNotFound) { ... }
//
// works, and status.Code(err) / status.FromError(err) still see the original
// gRPC status.
var (
	ErrNotFound           = errors.New("crms: not found")
	ErrInvalidArgument    = errors.New("crms: invalid argument")
	ErrFailedPrecondition = errors.New("crms: failed precondition")
	ErrAlreadyExists      = errors.New("crms: already exists")
	ErrUnavailable        = errors.New("crms: unavailable")
	ErrResourceExhausted  = errors.New("crms: resource exhausted")
	ErrOutOfRange         = errors.New("crms: out of range")
	ErrPermissionDenied   = errors.New("crms: permission denied")
	ErrUnauthenticated    = errors.New("crms: unauthenticated")
	ErrInternal           = errors.New("crms: internal error")
)

var sentinels = map[error]codes.Code{
	ErrNotFound:           codes.NotFound,
	ErrInvalidArgument:    codes.InvalidArgument,
	ErrFailedPrecondition: codes.FailedPrecondition,
	ErrAlreadyExists:      codes.AlreadyExists,
	ErrUnavailable:        codes.Unavailable,
	ErrResourceExhausted:  codes.ResourceExhausted,
	ErrOutOfRange:         codes.OutOfRange,
	ErrPermissionDenied:   codes.PermissionDenied,
	ErrUnauthenticated:    codes.Unauthenticated,
	ErrInternal:           codes.Internal,
}

// Error is a failed call: the gRPC status the control plane (or the gRPC
// library) answered with, and the operation that failed.
type Error struct {
	// Op is the client operation, e.g. "GetJob".
	Op string
	// Code is the gRPC status code.
	Code codes.Code
	// Message is the status message.
	Message string

	st *status.Status
}

// Error formats as "crms: GetJob: NOT_FOUND: job 42 not found".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("crms: ")
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	b.WriteString(CodeName(e.Code))
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// GRPCStatus returns the original status, so status.Code(err) and
// status.FromError(err) work on an *Error (and on errors that wrap one).
func (e *Error) GRPCStatus() *status.Status {
	if e.st == nil {
		return status.New(e.Code, e.Message)
	}
	return e.st
}

// Is matches the sentinel of the error's code (ErrNotFound for NOT_FOUND,
// ...), and context.Canceled / context.DeadlineExceeded for CANCELLED /
// DEADLINE_EXCEEDED.
func (e *Error) Is(target error) bool {
	if code, ok := sentinels[target]; ok {
		return code == e.Code
	}
	switch target {
	case context.Canceled:
		return e.Code == codes.Canceled
	case context.DeadlineExceeded:
		return e.Code == codes.DeadlineExceeded
	}
	return false
}

// newError makes an *Error with the given code that was not received from
// the server (e.g. a watch that saw its job deleted).
func newError(op string, code codes.Code, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	return &Error{Op: op, Code: code, Message: msg, st: status.New(code, msg)}
}

// wrapError turns an error of a gRPC call into an *Error. nil stays nil; an
// error that is already an *Error is returned as is.
func wrapError(op string, err error) error {
	if err == nil {
		return nil
	}
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	st, ok := status.FromError(err)
	if !ok {
		// Not a status error: context errors come through here when the call
		// never started.
		switch {
		case errors.Is(err, context.Canceled):
			st = status.New(codes.Canceled, err.Error())
		case errors.Is(err, context.DeadlineExceeded):
			st = status.New(codes.DeadlineExceeded, err.Error())
		default:
			st = status.New(codes.Unknown, err.Error())
		}
	}
	return &Error{Op: op, Code: st.Code(), Message: st.Message(), st: st}
}

var codeNames = map[codes.Code]string{
	codes.OK:                 "OK",
	codes.Canceled:           "CANCELLED",
	codes.Unknown:            "UNKNOWN",
	codes.InvalidArgument:    "INVALID_ARGUMENT",
	codes.DeadlineExceeded:   "DEADLINE_EXCEEDED",
	codes.NotFound:           "NOT_FOUND",
	codes.AlreadyExists:      "ALREADY_EXISTS",
	codes.PermissionDenied:   "PERMISSION_DENIED",
	codes.ResourceExhausted:  "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION",
	codes.Aborted:            "ABORTED",
	codes.OutOfRange:         "OUT_OF_RANGE",
	codes.Unimplemented:      "UNIMPLEMENTED",
	codes.Internal:           "INTERNAL",
	codes.Unavailable:        "UNAVAILABLE",
	codes.DataLoss:           "DATA_LOSS",
	codes.Unauthenticated:    "UNAUTHENTICATED",
}

// CodeName is the canonical upper-snake name of a gRPC code, as the gRPC
// specification and the other crms clients spell it ("NOT_FOUND"), where
// codes.Code.String() says "NotFound".
func CodeName(c codes.Code) string {
	if name, ok := codeNames[c]; ok {
		return name
	}
	return fmt.Sprintf("CODE_%d", uint32(c))
}

// ErrorCodeName is CodeName(status.Code(err)): "OK" for nil, "UNKNOWN" for an
// error without a gRPC status.
func ErrorCodeName(err error) string {
	return CodeName(status.Code(err))
}
