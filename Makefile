# rodiff — the two commands a user needs:
#   make demo   set up the sandbox and run rodiff on the built-in PostgreSQL example
#   make test   run every test (unit, real overlayfs and btrfs, Docker oracle on overlay2 and
#               btrfs dockerds, the Go package's tests) in sandboxes
# Both install missing Debian packages first (as root) and clean up after themselves.

SANDBOX := scripts/sandbox.sh
CARGO   ?= cargo
GO      ?= go

# Go needs a writable build cache: under $HOME by default, in target/ when there is no $HOME.
ifeq ($(HOME),)
export GOCACHE := $(CURDIR)/target/go/cache
export GOPATH  := $(CURDIR)/target/go/path
endif

.PHONY: all build deps demo test test-go bench clean

all: build

deps:
	@$(SANDBOX) deps
	@command -v $(CARGO) >/dev/null || { echo "make: cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }

build: deps
	$(CARGO) build --release

demo: build
	$(SANDBOX) run --images busybox,postgres -- scripts/demo.sh

test: deps
	$(CARGO) build --tests
	RODIFF_CONTAINERD=1 $(SANDBOX) run --images busybox,postgres,nginx,redis -- $(CARGO) test
	# The Docker suites again on a dockerd whose storage driver is btrfs.
	RODIFF_STORAGE_DRIVER=btrfs $(SANDBOX) run --images busybox,postgres,nginx,redis -- \
		$(CARGO) test --test docker_oracle --test plan_workloads --test live_docker --test live_nested --test helper_signals --test client --test break_daemon
	$(MAKE) test-go

# The Go package (bindings/go): go vet and go test against a sandbox's dockerd. `cargo build` makes
# the debug librodiff.a the tests link (tag rodiff_debug; users link the release one) and the CLI
# they compare with.
test-go: deps
	$(CARGO) build
	$(SANDBOX) run --images busybox -- sh -c 'cd bindings/go && \
		export GOFLAGS=-tags=rodiff_debug RODIFF_BIN="$(CURDIR)/target/debug/rodiff" && \
		$(GO) vet ./... && $(GO) test -count=1 -timeout 5m ./...'

bench: build
	RODIFF_CONTAINERD=1 $(SANDBOX) run --images busybox -- python3 bench/bench.py
	RODIFF_STORAGE_DRIVER=btrfs $(SANDBOX) run --images busybox -- python3 bench/bench.py

clean:
	$(CARGO) clean
