# rodiff — the two commands a user needs:
#   make demo   set up the sandbox and run rodiff on the built-in PostgreSQL example
#   make test   run every test (unit, real overlayfs and btrfs, Docker oracle on overlay2 and
#               btrfs dockerds) in sandboxes
# Both install missing Debian packages first (as root) and clean up after themselves.

SANDBOX := scripts/sandbox.sh
CARGO   ?= cargo

.PHONY: all build deps demo test bench clean

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

bench: build
	RODIFF_CONTAINERD=1 $(SANDBOX) run --images busybox -- python3 bench/bench.py
	RODIFF_STORAGE_DRIVER=btrfs $(SANDBOX) run --images busybox -- python3 bench/bench.py

clean:
	$(CARGO) clean
