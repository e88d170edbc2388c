package rodiff

import (
	"context"
	"errors"
	"fmt"
)

// Code says why a rodiff call failed: the rodiff_result values of the C ABI, which keep their
// meaning and are never reused.
type Code int

// The codes of rodiff's errors (rodiff_result in include/rodiff.h).
const (
	// CodeRuntimeUnavailable: the runtime cannot be reached, or did not answer in time.
	CodeRuntimeUnavailable Code = 1
	// CodeNotFound: the runtime has no such container (or pod).
	CodeNotFound Code = 2
	// CodeUnsupportedStorage: the container's storage is not something rodiff can read.
	CodeUnsupportedStorage Code = 3
	// CodeProtocol: the runtime answered something rodiff does not understand.
	CodeProtocol Code = 4
	// CodeLayerVanished: the container's layer disappeared during the scan.
	CodeLayerVanished Code = 5
	// CodeSnapshotVanished: the frozen copy of a btrfs layer was deleted during the scan.
	CodeSnapshotVanished Code = 6
	// CodeHostileLayer: the layer holds a marker the kernel would refuse; the diff stopped.
	CodeHostileLayer Code = 7
	// CodeIO: a filesystem operation failed.
	CodeIO Code = 8
	// CodeUnrepresentable: a plan cannot be written in the requested format.
	CodeUnrepresentable Code = 9
	// CodeInvalidPlan: a plan could not be read.
	CodeInvalidPlan Code = 10
	// CodeRuntimeCall: a runtime call made for the container (create, start, inspect …) failed.
	CodeRuntimeCall Code = 11
	// CodeCancelled: the call was cancelled (its context was cancelled, or its Client closed).
	CodeCancelled Code = 12
	// CodeSink: the receiver of the changes failed.
	CodeSink Code = 13
	// CodeTimeout: the call's deadline (its context's) passed.
	CodeTimeout Code = 14
	// CodeStopped: the receiver of the changes stopped the scan.
	CodeStopped Code = 15
	// CodeNullArgument: a required pointer argument was NULL (a bug in this package).
	CodeNullArgument Code = 100
	// CodeInvalidArgument: an argument is not valid (a NUL byte in a string, a malformed pod, an
	// unknown format …).
	CodeInvalidArgument Code = 101
	// CodePanic: rodiff failed internally (a panic, caught before it reached Go).
	CodePanic Code = 102
	// CodeOther: an error of a kind newer than this package.
	CodeOther Code = 103
)

var codeNames = map[Code]string{
	CodeRuntimeUnavailable: "runtime unavailable",
	CodeNotFound:           "not found",
	CodeUnsupportedStorage: "unsupported storage",
	CodeProtocol:           "protocol error",
	CodeLayerVanished:      "layer vanished",
	CodeSnapshotVanished:   "snapshot vanished",
	CodeHostileLayer:       "hostile layer",
	CodeIO:                 "I/O error",
	CodeUnrepresentable:    "unrepresentable plan",
	CodeInvalidPlan:        "invalid plan",
	CodeRuntimeCall:        "runtime call failed",
	CodeCancelled:          "cancelled",
	CodeSink:               "receiver failed",
	CodeTimeout:            "timeout",
	CodeStopped:            "stopped",
	CodeNullArgument:       "null argument",
	CodeInvalidArgument:    "invalid argument",
	CodePanic:              "internal error",
	CodeOther:              "other error",
}

// String names the code ("not found", "timeout", …).
func (c Code) String() string {
	if name, ok := codeNames[c]; ok {
		return name
	}
	return fmt.Sprintf("rodiff error %d", int(c))
}

// Error is an error reported by rodiff: its Code, and a one-line Message that names the
// container, endpoint or path. Match it with errors.Is against the sentinels (ErrNotFound, …),
// which compare codes only. An Error caused by a context also matches the context's error
// (context.Canceled, context.DeadlineExceeded), and one caused by Close matches ErrClosed.
type Error struct {
	// Code says which kind of failure this is.
	Code Code
	// Message says what failed, naming the container, endpoint or path.
	Message string
	// cause is the context error or ErrClosed behind a cancellation, if any.
	cause error
}

// Error returns "rodiff: " and the message.
func (e *Error) Error() string {
	return "rodiff: " + e.Message
}

// Is reports whether target is an *Error with the same code (the sentinels are such errors).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Unwrap returns the context error (or ErrClosed) that made rodiff stop, or nil.
func (e *Error) Unwrap() error {
	return e.cause
}

// Sentinel errors, one per code: errors.Is(err, ErrNotFound) is true for every *Error whose
// Code is CodeNotFound.
var (
	// ErrRuntimeUnavailable matches errors with CodeRuntimeUnavailable.
	ErrRuntimeUnavailable = sentinel(CodeRuntimeUnavailable)
	// ErrNotFound matches errors with CodeNotFound.
	ErrNotFound = sentinel(CodeNotFound)
	// ErrUnsupportedStorage matches errors with CodeUnsupportedStorage.
	ErrUnsupportedStorage = sentinel(CodeUnsupportedStorage)
	// ErrProtocol matches errors with CodeProtocol.
	ErrProtocol = sentinel(CodeProtocol)
	// ErrLayerVanished matches errors with CodeLayerVanished.
	ErrLayerVanished = sentinel(CodeLayerVanished)
	// ErrSnapshotVanished matches errors with CodeSnapshotVanished.
	ErrSnapshotVanished = sentinel(CodeSnapshotVanished)
	// ErrHostileLayer matches errors with CodeHostileLayer.
	ErrHostileLayer = sentinel(CodeHostileLayer)
	// ErrIO matches errors with CodeIO.
	ErrIO = sentinel(CodeIO)
	// ErrUnrepresentable matches errors with CodeUnrepresentable.
	ErrUnrepresentable = sentinel(CodeUnrepresentable)
	// ErrInvalidPlan matches errors with CodeInvalidPlan.
	ErrInvalidPlan = sentinel(CodeInvalidPlan)
	// ErrRuntimeCall matches errors with CodeRuntimeCall.
	ErrRuntimeCall = sentinel(CodeRuntimeCall)
	// ErrCancelled matches errors with CodeCancelled.
	ErrCancelled = sentinel(CodeCancelled)
	// ErrSink matches errors with CodeSink.
	ErrSink = sentinel(CodeSink)
	// ErrTimeout matches errors with CodeTimeout.
	ErrTimeout = sentinel(CodeTimeout)
	// ErrStopped matches errors with CodeStopped.
	ErrStopped = sentinel(CodeStopped)
	// ErrNullArgument matches errors with CodeNullArgument.
	ErrNullArgument = sentinel(CodeNullArgument)
	// ErrInvalidArgument matches errors with CodeInvalidArgument.
	ErrInvalidArgument = sentinel(CodeInvalidArgument)
	// ErrPanic matches errors with CodePanic.
	ErrPanic = sentinel(CodePanic)
	// ErrOther matches errors with CodeOther.
	ErrOther = sentinel(CodeOther)
)

// ErrClosed is returned by the methods of a Client after Close; calls that Close cancelled
// return an *Error that matches both ErrCancelled and ErrClosed.
var ErrClosed = errors.New("rodiff: client is closed")

// Stop, returned by the function given to DiffStream, stops the scan; DiffStream then returns
// nil.
var Stop = errors.New("rodiff: stop the diff")

func sentinel(c Code) *Error {
	return &Error{Code: c, Message: c.String()}
}

// stopped turns rodiff's answer to a call that was cancelled or timed out into the error that
// says why: the context's error, or Close.
func stopped(e *Error, ctx context.Context, closed bool) *Error {
	if e.Code != CodeCancelled && e.Code != CodeTimeout {
		return e
	}
	_, hasDeadline := ctx.Deadline()
	switch err := ctx.Err(); {
	case e.Code == CodeTimeout && hasDeadline:
		// rodiff's deadline is the context's (rounded up to a millisecond): it may fire before the
		// context's timer has set ctx.Err().
		e.cause = context.DeadlineExceeded
	case errors.Is(err, context.DeadlineExceeded):
		// The goroutine that watches ctx may cancel before rodiff's own deadline fires.
		e.Code, e.cause = CodeTimeout, err
	case err != nil:
		e.Code, e.cause = CodeCancelled, err
	case closed && e.Code == CodeCancelled:
		e.cause = ErrClosed
	}
	return e
}
