package rodiff

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo !rodiff_dynamic,!rodiff_debug LDFLAGS: ${SRCDIR}/../../target/release/librodiff.a -lgcc_s -lutil -lrt -lpthread -lm -ldl
#cgo rodiff_debug LDFLAGS: ${SRCDIR}/../../target/debug/librodiff.a -lgcc_s -lutil -lrt -lpthread -lm -ldl
#cgo rodiff_dynamic,!rodiff_debug LDFLAGS: -L${SRCDIR}/../../target/release -lrodiff
#include <stdlib.h>
#include <string.h>
#include "rodiff.h"

// Defined in stream.go (//export rodiffGoBatch).
extern int32_t rodiffGoBatch(uintptr_t handle, rodiff_change *changes, size_t len);

// rodiff calls back once per directory; a callback from one of its threads into Go costs an
// extra M's set-up and tear-down each time. So rodiff_go_batch copies the batches it gets into a
// buffer (changes and the bytes they point to) and calls Go once per RODIFF_GO_CHANGES changes
// or RODIFF_GO_BYTES bytes; the rest is handed over by rodiff_go_flush after the scan.
#define RODIFF_GO_CHANGES 8192
#define RODIFF_GO_BYTES (1 << 20)

typedef struct {
	uintptr_t handle;       // the cgo.Handle of the Go stream
	rodiff_change *views;   // while buffered, path and container hold offsets into bytes
	size_t len, cap;
	char *bytes;
	size_t blen, bcap;
	int failed;             // out of memory
} rodiff_go_buf;

static int rodiff_go_grow(void **p, size_t *cap, size_t need, size_t elem) {
	if (need <= *cap) {
		return 1;
	}
	size_t n = *cap ? *cap : 1024;
	while (n < need) {
		n *= 2;
	}
	void *q = realloc(*p, n * elem);
	if (q == NULL) {
		return 0;
	}
	*p = q;
	*cap = n;
	return 1;
}

// Copies len bytes into the buffer; their offset plus one (so that no offset is 0), or 0.
static size_t rodiff_go_keep(rodiff_go_buf *b, const void *data, size_t len) {
	if (!rodiff_go_grow((void **)&b->bytes, &b->bcap, b->blen + len, 1)) {
		return 0;
	}
	if (len > 0) {
		memcpy(b->bytes + b->blen, data, len);
	}
	b->blen += len;
	return b->blen - len + 1;
}

// Hands the buffered changes to Go; Go's answer (non-zero: stop).
static int32_t rodiff_go_flush(rodiff_go_buf *b) {
	if (b->len == 0) {
		return 0;
	}
	for (size_t i = 0; i < b->len; i++) {
		rodiff_change *v = &b->views[i];
		v->path = (const uint8_t *)(b->bytes + ((uintptr_t)v->path - 1));
		if (v->container != NULL) {
			v->container = b->bytes + ((uintptr_t)v->container - 1);
		}
	}
	int32_t answer = rodiffGoBatch(b->handle, b->views, b->len);
	b->len = 0;
	b->blen = 0;
	return answer;
}

static int32_t rodiff_go_batch(void *userdata, const rodiff_change *changes, size_t len) {
	rodiff_go_buf *b = userdata;
	if (!rodiff_go_grow((void **)&b->views, &b->cap, b->len + len, sizeof(rodiff_change))) {
		b->failed = 1;
		return 1;
	}
	for (size_t i = 0; i < len; i++) {
		rodiff_change v = changes[i];
		size_t path = rodiff_go_keep(b, v.path, v.path_len);
		size_t container = v.container ? rodiff_go_keep(b, v.container, strlen(v.container) + 1) : 1;
		if (path == 0 || container == 0) {
			b->failed = 1;
			return 1;
		}
		v.path = (const uint8_t *)(uintptr_t)path;
		v.container = v.container ? (const char *)(uintptr_t)container : NULL;
		b->views[b->len++] = v;
	}
	if (b->len >= RODIFF_GO_CHANGES || b->blen >= RODIFF_GO_BYTES) {
		return rodiff_go_flush(b);
	}
	return 0;
}

static void rodiff_go_buf_free(rodiff_go_buf *b) {
	free(b->views);
	free(b->bytes);
	free(b);
}

// rodiff_diff_stream with the Go callback behind the buffer.
static rodiff_result rodiff_go_diff_stream(const rodiff_client *client, const char *container,
		const rodiff_call *call, rodiff_go_buf *buf, bool *complete, rodiff_error **error) {
	return rodiff_diff_stream(client, container, call, rodiff_go_batch, buf, complete, error);
}

// Copies the list's changes start..start+n into dst, in one cgo call.
static void rodiff_go_copy(const rodiff_changes *list, size_t start, rodiff_change *dst, size_t n) {
	for (size_t i = 0; i < n; i++) {
		const rodiff_change *c = rodiff_changes_get(list, start + i);
		if (c != NULL) {
			dst[i] = *c;
		}
	}
}
*/
import "C"

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/cgo"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// Version returns the version of the linked rodiff library, "MAJOR.MINOR.PATCH".
func Version() string {
	return C.GoString(C.rodiff_version())
}

// Runtime says which container runtime a Client asks.
type Runtime uint32

// The runtimes rodiff reads.
const (
	// Docker is the Docker Engine API (also Podman's compatible service); the default.
	Docker Runtime = C.RODIFF_RUNTIME_DOCKER
	// Containerd is containerd's gRPC API.
	Containerd Runtime = C.RODIFF_RUNTIME_CONTAINERD
)

// Options say how a Client reaches its runtime. The zero value means Docker at
// unix:///var/run/docker.sock with every default.
type Options struct {
	// Runtime is the runtime to ask (default Docker).
	Runtime Runtime
	// DockerHost is the Docker endpoint, unix:///path or tcp://host:port (default
	// unix:///var/run/docker.sock). rodiff does not read DOCKER_HOST itself.
	DockerHost string
	// ContainerdAddress is containerd's socket (default /run/containerd/containerd.sock).
	ContainerdAddress string
	// ContainerdNamespace is the containerd namespace (default "default"; "k8s.io" for pods).
	ContainerdNamespace string
	// HostRoot is where the host's / is visible (default /).
	HostRoot string
	// Timeout bounds each request to the runtime (default 30s; rounded up to milliseconds).
	Timeout time.Duration
	// Walkers is the number of walker threads shared by the client's scans (default: one per CPU;
	// at most MaxWalkers).
	Walkers int
}

// PlanFormat says how Plan renders a plan.
type PlanFormat uint32

// The plan formats.
const (
	// PlanDocker is one shell-quoted line of flags for docker run, starting with --read-only.
	PlanDocker PlanFormat = C.RODIFF_PLAN_DOCKER
	// PlanCompose is a compose service fragment.
	PlanCompose PlanFormat = C.RODIFF_PLAN_COMPOSE
	// PlanK8s is a Kubernetes strategic-merge patch for the pod template.
	PlanK8s PlanFormat = C.RODIFF_PLAN_K8S
	// PlanJSON is the plan as JSON, with the reason for every mount.
	PlanJSON PlanFormat = C.RODIFF_PLAN_JSON
)

// CallOption changes one call (Diff, DiffStream, Plan, Verify).
type CallOption func(*callOptions)

type callOptions struct {
	pod       string
	pathsOnly bool
}

// PathsOnly makes Diff and DiffStream leave out the metadata (Mode, UID, GID, Size, MTime;
// HasMetadata is false), which costs rodiff a stat per new entry: paths, kinds and types only, as
// `rodiff diff` prints them, several times faster on large layers. Plan and Verify ignore it.
func PathsOnly() CallOption {
	return func(o *callOptions) { o.pathsOnly = true }
}

// WithPod makes the call cover the containers of a Kubernetes pod, "NAMESPACE/NAME" (containerd
// runtime, CRI labels), as rodiff --pod does. The call's ref then names one container of the
// pod, or is "" for all of them; changes carry their container's name in Change.Container.
func WithPod(pod string) CallOption {
	return func(o *callOptions) { o.pod = pod }
}

// Client is a connection to a container runtime with its own threads, made by NewClient (a zero
// Client refuses every call with ErrClosed). It is safe for use by any number of goroutines at
// once. Close it when done.
type Client struct {
	mu     sync.Mutex
	ptr    *C.rodiff_client
	closed bool
	// freed is closed once Close has freed the client: a second Close waits for it.
	freed chan struct{}
	calls sync.WaitGroup
	// active holds the cancel tokens of the calls running now, cancelled by Close.
	active map[*C.rodiff_cancel]struct{}
}

// MaxWalkers is the most walker threads a client may have (rodiff_options.walkers' limit).
const MaxWalkers = 1024

// NewClient makes a client from opts. It connects on first use: an unreachable runtime is
// reported by the first call (ErrRuntimeUnavailable), not here.
func NewClient(opts Options) (*Client, error) {
	var strs cstrings
	defer strs.free()
	var o C.rodiff_options
	o.runtime = C.rodiff_runtime(opts.Runtime)
	var err error
	if o.docker_host, err = strs.optional(opts.DockerHost, "DockerHost"); err != nil {
		return nil, err
	}
	if o.containerd_address, err = strs.optional(opts.ContainerdAddress, "ContainerdAddress"); err != nil {
		return nil, err
	}
	if o.containerd_namespace, err = strs.optional(opts.ContainerdNamespace, "ContainerdNamespace"); err != nil {
		return nil, err
	}
	if o.host_root, err = strs.optional(opts.HostRoot, "HostRoot"); err != nil {
		return nil, err
	}
	if opts.Timeout < 0 || opts.Walkers < 0 || opts.Walkers > MaxWalkers {
		return nil, &Error{Code: CodeInvalidArgument, Message: fmt.Sprintf("Walkers must be 0 to %d and Timeout not negative", MaxWalkers)}
	}
	o.timeout_ms = C.uint64_t((opts.Timeout + time.Millisecond - 1) / time.Millisecond)
	o.walkers = C.uint32_t(opts.Walkers)
	var ptr *C.rodiff_client
	var cerr *C.rodiff_error
	if r := C.rodiff_client_new(&o, &ptr, &cerr); r != C.RODIFF_OK {
		return nil, takeError(r, cerr)
	}
	c := &Client{ptr: ptr, freed: make(chan struct{}), active: make(map[*C.rodiff_cancel]struct{})}
	runtime.SetFinalizer(c, (*Client).Close)
	return c, nil
}

// Close cancels the client's running calls, waits for them to return, and frees the client.
// Calls made after Close return ErrClosed. Close is idempotent and always returns nil; a Close
// that runs while another is under way returns when that one is done. Do not call Close from the
// function given to DiffStream: Close would wait for that very call.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		if c.freed != nil {
			<-c.freed
		}
		return nil
	}
	c.closed = true
	for token := range c.active {
		C.rodiff_cancel_cancel(token)
	}
	c.mu.Unlock()
	c.calls.Wait()
	C.rodiff_client_free(c.ptr)
	c.ptr = nil
	runtime.SetFinalizer(c, nil)
	if c.freed != nil {
		close(c.freed)
	}
	return nil
}

// call is one running call: its C arguments, its cancel token and the goroutine that cancels it
// when its context is done.
type call struct {
	client *Client
	ctx    context.Context
	strs   cstrings
	args   *C.rodiff_call // C memory: the cancel goroutine and rodiff read it
	token  *C.rodiff_cancel
	stop   chan struct{}
	done   chan struct{}
}

// begin starts a call on c: it fails when c is closed, ctx is done or an argument is not valid.
// The caller must call end.
func (c *Client) begin(ctx context.Context, ref string, opts []CallOption) (*call, *C.char, error) {
	var o callOptions
	for _, opt := range opts {
		opt(&o)
	}
	if ref == "" && o.pod == "" {
		return nil, nil, &Error{Code: CodeInvalidArgument, Message: "the container name is empty"}
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, contextError(ctx, ref)
	}
	k := &call{client: c, ctx: ctx}
	fail := func(err error) (*call, *C.char, error) {
		k.strs.free()
		return nil, nil, err
	}
	container, err := k.strs.optional(ref, "container")
	if err != nil {
		return fail(err)
	}
	pod, err := k.strs.optional(o.pod, "pod")
	if err != nil {
		return fail(err)
	}
	k.args = (*C.rodiff_call)(C.calloc(1, C.size_t(unsafe.Sizeof(C.rodiff_call{}))))
	k.args.pod = pod
	k.args.paths_only = C.bool(o.pathsOnly)
	if deadline, ok := ctx.Deadline(); ok {
		ms := (time.Until(deadline) + time.Millisecond - 1) / time.Millisecond
		if ms < 1 {
			ms = 1
		}
		k.args.deadline_ms = C.uint64_t(ms)
	}
	c.mu.Lock()
	if c.closed || c.ptr == nil { // closed, or not made by NewClient
		c.mu.Unlock()
		C.free(unsafe.Pointer(k.args))
		return fail(ErrClosed)
	}
	k.token = C.rodiff_cancel_new()
	k.args.cancel = k.token
	c.active[k.token] = struct{}{}
	c.calls.Add(1)
	c.mu.Unlock()
	if ctx.Done() != nil {
		k.stop, k.done = make(chan struct{}), make(chan struct{})
		go func(token *C.rodiff_cancel, done <-chan struct{}) {
			defer close(k.done)
			select {
			case <-done:
				C.rodiff_cancel_cancel(token)
			case <-k.stop:
			}
		}(k.token, ctx.Done())
	}
	return k, container, nil
}

// end finishes the call: stops the cancel goroutine, frees the token and the arguments, and turns
// rodiff's error (if any) into the error to return.
func (k *call) end(r C.rodiff_result, cerr *C.rodiff_error) error {
	if k.stop != nil {
		close(k.stop)
		<-k.done
	}
	c := k.client
	c.mu.Lock()
	delete(c.active, k.token)
	closed := c.closed
	c.mu.Unlock()
	C.rodiff_cancel_free(k.token)
	C.free(unsafe.Pointer(k.args))
	k.strs.free()
	c.calls.Done()
	runtime.KeepAlive(c)
	if r == C.RODIFF_OK {
		return nil
	}
	return stopped(takeError(r, cerr), k.ctx, closed)
}

// Diff diffs container ref (a name or id; with WithPod, a container of the pod or "") into a
// list of changes with metadata, sorted by path.
func (c *Client) Diff(ctx context.Context, ref string, opts ...CallOption) ([]Change, error) {
	k, container, err := c.begin(ctx, ref, opts)
	if err != nil {
		return nil, err
	}
	var list *C.rodiff_changes
	var cerr *C.rodiff_error
	r := C.rodiff_diff(c.ptr, container, k.args, &list, &cerr)
	if err := k.end(r, cerr); err != nil {
		return nil, err
	}
	defer C.rodiff_changes_free(list)
	n := int(C.rodiff_changes_len(list))
	if n == 0 {
		return []Change{}, nil
	}
	// The views are copied and converted a chunk at a time: few cgo calls, little garbage.
	const chunk = 4096
	views := make([]C.rodiff_change, chunk)
	out := make([]Change, 0, n)
	var conv converter
	for start := 0; start < n; start += chunk {
		m := n - start
		if m > chunk {
			m = chunk
		}
		C.rodiff_go_copy(list, C.size_t(start), &views[0], C.size_t(m))
		out = conv.appendChanges(out, views[:m])
	}
	return out, nil
}

// DiffStream diffs container ref (see Diff) and hands the changes to fn in batches as rodiff's
// walk finds them (not sorted; up to 8192 changes or 1 MiB of paths a batch), for layers too
// large to hold at once. fn is called one call at a time, mostly from rodiff's threads (the last
// batch from the caller's goroutine); the batch and its changes belong to fn. fn
// returns nil to go on, Stop to stop the scan (DiffStream then returns nil), or another error to
// stop it and have DiffStream return that error. DiffStream also stops, with an error that
// matches ErrCancelled or ErrTimeout, when ctx is done; a panic in fn stops the scan and is
// raised again in DiffStream's goroutine, and a runtime.Goexit in fn (t.Fatal, t.FailNow) stops
// the scan and is done again there. fn must not call c.Close, which would wait for this call.
func (c *Client) DiffStream(ctx context.Context, ref string, fn func(batch []Change) error, opts ...CallOption) error {
	k, container, err := c.begin(ctx, ref, opts)
	if err != nil {
		return err
	}
	s := &stream{ctx: ctx, ref: ref, fn: fn}
	h := cgo.NewHandle(s)
	defer h.Delete()
	buf := (*C.rodiff_go_buf)(C.calloc(1, C.size_t(unsafe.Sizeof(C.rodiff_go_buf{}))))
	if buf == nil {
		k.end(C.RODIFF_OK, nil)
		return &Error{Code: CodeOther, Message: "container " + ref + ": out of memory"}
	}
	defer C.rodiff_go_buf_free(buf)
	buf.handle = C.uintptr_t(h)
	var complete C.bool
	var cerr *C.rodiff_error
	r := C.rodiff_go_diff_stream(c.ptr, container, k.args, buf, &complete, &cerr)
	if err := k.end(r, cerr); err != nil {
		return err
	}
	if buf.failed != 0 {
		return &Error{Code: CodeOther, Message: "container " + ref + ": out of memory for the changes"}
	}
	if complete {
		C.rodiff_go_flush(buf) // the last changes, on this goroutine
	}
	return s.result(bool(complete))
}

// Plan plans the mounts container ref (or each container of a pod, see WithPod) needs to run with
// a read-only root filesystem, with rodiff's built-in rules, rendered in format.
func (c *Client) Plan(ctx context.Context, ref string, format PlanFormat, opts ...CallOption) (string, error) {
	k, container, err := c.begin(ctx, ref, opts)
	if err != nil {
		return "", err
	}
	var out *C.char
	var cerr *C.rodiff_error
	r := C.rodiff_plan(c.ptr, container, k.args, C.rodiff_plan_format(format), &out, &cerr)
	if err := k.end(r, cerr); err != nil {
		return "", err
	}
	defer C.rodiff_string_free(out)
	return C.GoString(out), nil
}

// VerifyOptions say how Verify proves a plan.
type VerifyOptions struct {
	// Probe is a shell command (sh -c PROBE) run in the read-only copy after Wait ("": none).
	Probe string
	// Wait is how long the read-only copy runs before the probe and the verdict.
	Wait time.Duration
}

// VerifyResult is what Verify found.
type VerifyResult struct {
	// Passed says whether the container ran read-only with the plan's mounts.
	Passed bool
	// Report holds the findings as JSON (rodiff verify --format json).
	Report json.RawMessage
}

// Verify proves the plan of Docker container ref: it runs the container again read-only with
// the plan's mounts, waits opts.Wait, runs opts.Probe in it, and removes what it made. A pod
// (WithPod) is an invalid argument.
func (c *Client) Verify(ctx context.Context, ref string, opts VerifyOptions, callOpts ...CallOption) (*VerifyResult, error) {
	if opts.Wait < 0 {
		return nil, &Error{Code: CodeInvalidArgument, Message: "negative Wait"}
	}
	k, container, err := c.begin(ctx, ref, callOpts)
	if err != nil {
		return nil, err
	}
	probe, err := k.strs.optional(opts.Probe, "probe")
	if err != nil {
		k.end(C.RODIFF_OK, nil)
		return nil, err
	}
	var passed C.bool
	var report *C.char
	var cerr *C.rodiff_error
	wait := C.uint64_t(opts.Wait / time.Millisecond)
	r := C.rodiff_verify(c.ptr, container, probe, wait, k.args, &passed, &report, &cerr)
	if err := k.end(r, cerr); err != nil {
		return nil, err
	}
	defer C.rodiff_string_free(report)
	return &VerifyResult{Passed: bool(passed), Report: json.RawMessage(C.GoString(report))}, nil
}

// takeError converts and frees a rodiff error.
func takeError(r C.rodiff_result, cerr *C.rodiff_error) *Error {
	e := &Error{Code: Code(r)}
	if cerr != nil {
		e.Message = C.GoString(C.rodiff_error_message(cerr))
		C.rodiff_error_free(cerr)
	}
	if e.Message == "" {
		e.Message = e.Code.String()
	}
	return e
}

// contextError is the error of a call whose context is done before or between rodiff's calls.
func contextError(ctx context.Context, ref string) *Error {
	e := &Error{Code: CodeCancelled, Message: "container " + ref + ": " + ctx.Err().Error()}
	return stopped(e, ctx, false)
}

// cstrings are C copies of Go strings, freed together.
type cstrings []unsafe.Pointer

// optional returns a C copy of s, NULL for "", or an invalid-argument error when s holds a NUL.
func (s *cstrings) optional(str, what string) (*C.char, error) {
	if str == "" {
		return nil, nil
	}
	if strings.IndexByte(str, 0) >= 0 {
		return nil, &Error{Code: CodeInvalidArgument, Message: what + " holds a NUL byte: " + strings.ReplaceAll(str, "\x00", `\0`)}
	}
	p := C.CString(str)
	*s = append(*s, unsafe.Pointer(p))
	return p, nil
}

func (s *cstrings) free() {
	for _, p := range *s {
		C.free(p)
	}
	*s = nil
}
