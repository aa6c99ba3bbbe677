package psst

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error is a failed call, or a failed item of a batch: the gRPC status code and the agent's
// message. The agent never puts a secret value in a message.
//
// Test for a kind of failure with errors.Is and the sentinels below, or the Is* helpers:
//
//	if errors.Is(err, psst.ErrNotFound) { ... }
//	if psst.IsPermissionDenied(err) { ... }
type Error struct {
	// Code is the gRPC status code, e.g. codes.NotFound.
	Code codes.Code
	// Message is the agent's (or gRPC's) description of the failure.
	Message string

	cause error // context.Canceled or context.DeadlineExceeded, when that is what happened
}

// Sentinels for errors.Is: an *Error matches the sentinel with the same code.
var (
	ErrInvalidArgument    = &Error{Code: codes.InvalidArgument}
	ErrPermissionDenied   = &Error{Code: codes.PermissionDenied}
	ErrNotFound           = &Error{Code: codes.NotFound}
	ErrUnavailable        = &Error{Code: codes.Unavailable}
	ErrUnauthenticated    = &Error{Code: codes.Unauthenticated}
	ErrFailedPrecondition = &Error{Code: codes.FailedPrecondition}
	ErrResourceExhausted  = &Error{Code: codes.ResourceExhausted}
	ErrDataLoss           = &Error{Code: codes.DataLoss}
)

// Error reads "psst: NOT_FOUND: <message>".
func (e *Error) Error() string {
	if e.Message == "" {
		return "psst: " + CodeName(e.Code)
	}
	return "psst: " + CodeName(e.Code) + ": " + e.Message
}

// Is reports whether target is an *Error with the same code and either no message (a sentinel)
// or the same message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok || t == nil {
		return false
	}
	return t.Code == e.Code && (t.Message == "" || t.Message == e.Message)
}

// Unwrap returns context.Canceled or context.DeadlineExceeded when the caller's context ended the
// call, so errors.Is(err, context.DeadlineExceeded) works.
func (e *Error) Unwrap() error { return e.cause }

// GRPCStatus lets status.Code(err) and status.FromError(err) see the code.
func (e *Error) GRPCStatus() *status.Status { return status.New(e.Code, e.Message) }

// Code returns the gRPC code of err: its *Error's code, a gRPC status error's code, codes.OK for
// nil, codes.Unknown otherwise.
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return status.Code(err)
}

// IsInvalidArgument reports a malformed reference or request.
func IsInvalidArgument(err error) bool { return Code(err) == codes.InvalidArgument }

// IsPermissionDenied reports that the policy does not grant the call to this process. The agent
// answers this whether or not the secret exists.
func IsPermissionDenied(err error) bool { return Code(err) == codes.PermissionDenied }

// IsNotFound reports a secret, version or JSON key that does not exist.
func IsNotFound(err error) bool { return Code(err) == codes.NotFound }

// IsUnavailable reports that the agent (or its backend) could not be reached.
func IsUnavailable(err error) bool { return Code(err) == codes.Unavailable }

// IsUnauthenticated reports that the agent could not identify the calling process.
func IsUnauthenticated(err error) bool { return Code(err) == codes.Unauthenticated }

// IsFailedPrecondition reports that the agent cannot do it as configured (e.g. backend not
// enabled).
func IsFailedPrecondition(err error) bool { return Code(err) == codes.FailedPrecondition }

// IsResourceExhausted reports a rate or size limit.
func IsResourceExhausted(err error) bool { return Code(err) == codes.ResourceExhausted }

// CodeName is the code as the proto and grpcurl spell it: "NOT_FOUND", "PERMISSION_DENIED".
func CodeName(c codes.Code) string {
	switch c {
	case codes.Canceled:
		return "CANCELLED"
	case codes.OK:
		return "OK"
	}
	if c > codes.Unauthenticated {
		return fmt.Sprintf("CODE(%d)", uint32(c))
	}
	// codes.Code.String() is CamelCase ("NotFound"); turn it into NOT_FOUND.
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

// ParseCode is the inverse of CodeName: "NOT_FOUND" -> codes.NotFound.
func ParseCode(name string) (codes.Code, bool) {
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if CodeName(c) == name {
			return c, true
		}
	}
	return codes.Unknown, false
}

// fromRPC turns what a stub returned into an *Error.
func fromRPC(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	s, _ := status.FromError(err) // a non-status error becomes codes.Unknown with its text
	out := &Error{Code: s.Code(), Message: s.Message()}
	if ctxErr := ctx.Err(); ctxErr != nil && (s.Code() == codes.Canceled || s.Code() == codes.DeadlineExceeded) {
		out.cause = ctxErr
	}
	return out
}
