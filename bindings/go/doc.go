// Package rodiff diffs a container's writable layer and plans the mounts it needs to run with a
// read-only root filesystem, in process, through rodiff's C ABI (include/rodiff.h) with cgo.
//
// # Building
//
// The package links statically against librodiff.a, built by Cargo in the rodiff repository:
//
//	cargo build --release             # at the repository root: target/release/librodiff.a
//	cd bindings/go && go build ./...  # or go test, go vet
//
// A program of yours uses the module through a replace directive (the module path,
// rodiff.dev/rodiff, is not served by a proxy):
//
//	go mod edit -require rodiff.dev/rodiff@v0.0.0 -replace rodiff.dev/rodiff=/path/to/rodiff/bindings/go
//
// Build with the tag rodiff_dynamic to link against librodiff.so instead (then set
// LD_LIBRARY_PATH, or install the library where the dynamic linker finds it), or with the tag
// rodiff_debug to link against target/debug/librodiff.a (plain `cargo build`; the tests use it).
//
// # Clients, threads and handles
//
// A [Client] is made from [Options] by [NewClient] and owns rodiff's threads (one I/O thread and
// a pool of walkers). Any number of goroutines may use one Client at once. [Client.Close]
// releases it; it is idempotent, cancels the calls still running and waits for them. A finalizer
// closes a Client that was not closed, as a safety net only: close clients yourself.
//
// rodiff reads no environment variable: pass os.Getenv("DOCKER_HOST") in [Options.DockerHost]
// if you want it honoured.
//
// # Cancellation and deadlines
//
// A cgo call cannot be pre-empted, so every call that takes a [context.Context] gets its own
// rodiff cancel token, and a goroutine that cancels the token (rodiff_cancel_cancel) when the
// context is done; rodiff checks the token between directories of a walk and around every runtime
// request, and removes what the call made before it returns. The context's deadline also becomes
// the call's deadline in rodiff. A call stopped this way returns an [*Error] that matches both
// [ErrCancelled] and [context.Canceled], or both [ErrTimeout] and [context.DeadlineExceeded].
// [Client.DiffStream] also checks the context before handing each batch to its function.
//
// # Errors
//
// Every error rodiff reports is an [*Error] with a [Code] and a message that names the container,
// endpoint or path. Compare with the sentinels: errors.Is(err, rodiff.ErrNotFound).
package rodiff
