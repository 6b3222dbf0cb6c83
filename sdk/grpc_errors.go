package sdk

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/mailgate/gateway/sdk/internal/pb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error translation across the process boundary (STYLE.md rule 3): the
// sending side turns an error into a gRPC status with a pb.Error detail;
// the receiving side turns the status back into an error that wraps the
// matching sentinel, so callers use errors.Is on both sides.
//
//	sentinel                    code                 kind
//	context.DeadlineExceeded    DeadlineExceeded     -
//	context.Canceled            Canceled             -  (†)
//	ErrNotHandled               Unimplemented        NOT_HANDLED
//	ErrUnavailable              Unavailable          UNAVAILABLE
//	ErrProtocol                 FailedPrecondition   PROTOCOL
//	ErrInternal                 Internal             INTERNAL
//	ConfigErrors                InvalidArgument      CONFIG
//	anything else               Unknown              UNSPECIFIED
//
// Statuses without a detail (made by gRPC itself: a dead connection, an
// unknown method, a message too large) map by code alone. A status error
// the plugin got from elsewhere is re-encoded like any other error, so a
// third party's Unavailable never reads as "the plugin is down".
//
// (†) The receiving side reports context.Canceled only when the caller's
// own ctx is done; a Canceled status under a live ctx means the connection
// closed under the call, and reads as ErrUnavailable.

// errorToStatus encodes err for the wire.
func errorToStatus(err error) error {
	if err == nil {
		return nil
	}
	code, kind := codes.Unknown, pb.ErrorKind_ERROR_KIND_UNSPECIFIED
	var cerrs ConfigErrors
	var cerr *ConfigError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, ErrNotHandled):
		code, kind = codes.Unimplemented, pb.ErrorKind_ERROR_KIND_NOT_HANDLED
	case errors.Is(err, ErrUnavailable):
		code, kind = codes.Unavailable, pb.ErrorKind_ERROR_KIND_UNAVAILABLE
	case errors.Is(err, ErrProtocol):
		code, kind = codes.FailedPrecondition, pb.ErrorKind_ERROR_KIND_PROTOCOL
	case errors.Is(err, ErrInternal):
		code, kind = codes.Internal, pb.ErrorKind_ERROR_KIND_INTERNAL
	case errors.As(err, &cerrs), errors.As(err, &cerr):
		code, kind = codes.InvalidArgument, pb.ErrorKind_ERROR_KIND_CONFIG
	}
	st := status.New(code, err.Error())
	if kind != pb.ErrorKind_ERROR_KIND_UNSPECIFIED {
		if withDetail, derr := st.WithDetails(&pb.Error{Kind: kind, Message: err.Error()}); derr == nil {
			st = withDetail
		}
	}
	return st.Err()
}

// errorFromStatus decodes an error a gRPC call returned. ctx is the call's
// context: when it is done, its error is what the caller gets (wrapped),
// whatever the status says. op names the peer and the call for the message
// ("plugin rcpt", "host kv incr").
func errorFromStatus(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("sdk: %s: %w", op, cerr)
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("sdk: %s: %v: %w", op, err, ErrUnavailable)
	}
	msg := st.Message()
	for _, d := range st.Details() {
		e, ok := d.(*pb.Error)
		if !ok {
			continue
		}
		if e.GetMessage() != "" {
			msg = e.GetMessage()
		}
		if e.GetKind() == pb.ErrorKind_ERROR_KIND_CONFIG {
			return fmt.Errorf("sdk: %s: %w", op, ConfigErrors{{Message: msg}})
		}
		if sentinel := kindSentinel(e.GetKind()); sentinel != nil {
			return wrapRemote(op, msg, sentinel)
		}
	}
	switch st.Code() {
	case codes.DeadlineExceeded:
		return wrapRemote(op, msg, context.DeadlineExceeded)
	case codes.Canceled:
		// The caller's ctx is alive (checked above): gRPC cancelled the
		// call because the connection closed under it (the process died).
		return wrapRemote(op, msg, ErrUnavailable)
	case codes.Unavailable:
		return wrapRemote(op, msg, ErrUnavailable)
	case codes.Unimplemented:
		// No detail: the peer doesn't know the method at all.
		return wrapRemote(op, msg, ErrProtocol)
	case codes.Internal, codes.ResourceExhausted, codes.DataLoss:
		return wrapRemote(op, msg, ErrInternal)
	case codes.InvalidArgument:
		return wrapRemote(op, msg, ErrProtocol)
	}
	return &remoteError{op: op, msg: msg}
}

func kindSentinel(k pb.ErrorKind) error {
	switch k {
	case pb.ErrorKind_ERROR_KIND_INTERNAL:
		return ErrInternal
	case pb.ErrorKind_ERROR_KIND_UNAVAILABLE:
		return ErrUnavailable
	case pb.ErrorKind_ERROR_KIND_PROTOCOL:
		return ErrProtocol
	case pb.ErrorKind_ERROR_KIND_NOT_HANDLED:
		return ErrNotHandled
	}
	return nil
}

// wrapRemote builds "sdk: <op>: <remote message>" wrapping sentinel;
// the sentinel's own text is not repeated when the message already ends
// with it.
func wrapRemote(op, msg string, sentinel error) error {
	if msg == "" || msg == sentinel.Error() {
		return fmt.Errorf("sdk: %s: %w", op, sentinel)
	}
	return &remoteError{op: op, msg: msg, err: sentinel}
}

// remoteError is an error that came back from the other process.
type remoteError struct {
	op  string
	msg string
	err error // the sentinel it matches, or nil
}

func (e *remoteError) Error() string {
	s := "sdk: " + e.op + ": " + e.msg
	if e.err != nil && !strings.HasSuffix(e.msg, e.err.Error()) {
		s += ": " + e.err.Error()
	}
	return s
}

func (e *remoteError) Unwrap() error { return e.err }

// Negotiate returns the highest protocol version both the host and the
// plugin speak, or an error wrapping ErrProtocol that names both lists.
func Negotiate(host, plugin []int) (int, error) {
	best := 0
	for _, v := range host {
		if v > best && slices.Contains(plugin, v) {
			best = v
		}
	}
	if best == 0 {
		return 0, fmt.Errorf("sdk: plugin speaks protocol versions %v, the gateway %v: %w", plugin, host, ErrProtocol)
	}
	return best, nil
}

// StartError translates an error from go-plugin's Client.Client (the
// process start and handshake) for the host: a protocol version mismatch
// wraps ErrProtocol, anything else ErrUnavailable. nil stays nil.
//
// go-plugin reports the mismatch only as text ("incompatible API version
// with plugin. Plugin version: 1, Client versions: [2]"); this is the one
// place that reads it.
func StartError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrProtocol) || errors.Is(err, ErrUnavailable) {
		return err
	}
	if strings.Contains(strings.ToLower(err.Error()), "incompatible api version") {
		return fmt.Errorf("sdk: plugin built for another protocol version (%v): %w", err, ErrProtocol)
	}
	return fmt.Errorf("sdk: plugin did not start (%v): %w", err, ErrUnavailable)
}
