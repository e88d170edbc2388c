# rodiff — the two commands a user needs:
#   make demo   set up the sandbox and run rodiff on the built-in PostgreSQL example
#   make test   run every test (unit, real overlayfs and btrfs, Docker oracle on overlay2 and
#               btrfs dockerds, containerd, rootful and rootless Podman, the C ABI's, the Go
#               package's and the Python package's tests, the agent's DaemonSet validated and run
#               as it says, short fuzzing runs) in sandboxes
# Both install missing Debian packages first (as root) and clean up after themselves.
#
#   make install PREFIX=/usr/local [DESTDIR=] [PROFILE=release]
#               the C library: PREFIX/lib/librodiff.so, PREFIX/lib/librodiff.a,
#               PREFIX/include/rodiff.h, PREFIX/lib/pkgconfig/rodiff.pc and rodiff-static.pc
#               (builds them if needed)
#   make uninstall PREFIX=...   removes those files
#
#   make fuzz [FUZZ_SECONDS=300] [FUZZ_TARGETS="mountinfo ..."]
#               runs each fuzz target (fuzz/, libFuzzer) for FUZZ_SECONDS, from its seeds
#               (fuzz/seeds/<target>) and what earlier runs found (fuzz/corpus/<target>);
#               a crash stops it and leaves the input in fuzz/artifacts/<target>/
#   make fuzz-short   the same for FUZZ_SHORT_SECONDS (10) per target, unoptimized: part of `make test`
#   make fuzz-deps    installs cargo-fuzz (for `cargo fuzz tmin`, `cmin`, `coverage`; the two
#               targets above need only cargo)

SANDBOX := scripts/sandbox.sh
CARGO   ?= cargo
PREFIX  ?= /usr/local
PROFILE ?= release
# The C library's version (rodiff.pc), the C crate's.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' bindings/c/Cargo.toml | head -n 1)
GO      ?= go
PYTHON  ?= python3
# The virtualenv the Python package is installed in for its tests and the benchmark.
VENV    := target/python-venv
# deploy/: the virtualenv with kubernetes-validate (it brings PyYAML, which the agent's test uses),
# and the Kubernetes version whose schemas the manifests must pass, strictly.
DEPLOY_VENV         := target/deploy-venv
KUBERNETES_VALIDATE := kubernetes-validate==1.37.0
KUBERNETES_VERSION  := 1.37.0

# Go needs a writable build cache: under $HOME by default, in target/ when there is no $HOME.
ifeq ($(HOME),)
export GOCACHE := $(CURDIR)/target/go/cache
export GOPATH  := $(CURDIR)/target/go/path
endif

.PHONY: all build deps demo test test-rust test-rust-btrfs fuzz fuzz-short fuzz-build fuzz-deps test-c test-go test-python test-deploy python-venv deploy-venv bench clean install uninstall

all: build

deps:
	@$(SANDBOX) deps
	@command -v $(CARGO) >/dev/null || { echo "make: cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }

build: deps
	$(CARGO) build --release

demo: build
	$(SANDBOX) run --images busybox,postgres -- scripts/demo.sh

# Everything is built first; then the suites run in sandboxes of their own, several at a time
# (they mostly wait for daemons and containers), each one's output printed whole when it ends
# (--output-sync): the two `cargo test` stages together, then the C, Go, Python and deploy/ suites
# and the short fuzzing runs together.
test: deps deploy-venv
	$(CARGO) build --tests
	$(CARGO) build
	$(MAKE) -j2 --output-sync=target test-rust test-rust-btrfs
	$(MAKE) -j5 --output-sync=target test-c test-go test-python test-deploy fuzz-short

# The Rust suites (unit tests, real overlayfs and btrfs, the Docker oracle, containerd, Podman)
# against a sandbox's dockerd (overlay2), containerd, and rootful and rootless Podman services.
test-rust: deps
	RODIFF_CONTAINERD=1 RODIFF_PODMAN=1 $(SANDBOX) run --images busybox,postgres,nginx,redis,mosquitto -- $(CARGO) test

# The Docker suites again on a dockerd whose storage driver is btrfs. `--test header` (the C
# crate's) makes cargo resolve the same features as `cargo test` does, so the build is shared.
test-rust-btrfs: deps
	RODIFF_STORAGE_DRIVER=btrfs $(SANDBOX) run --images busybox,postgres,nginx,redis,mosquitto -- \
		$(CARGO) test --test docker_oracle --test plan_workloads --test live_docker --test live_nested --test helper_signals --test client --test break_daemon \
		--test watch --test agent --test no_writes --test hostile_layers --test verify_lifecycle --test header -- --skip containerd --skip a_million_entries

# The review's probes that hold (bindings/probes/README.md); fork, free_in_callback and
# free_while_running show misuse the header forbids, and are run by hand.
C_PROBES := args big blocked_callback names reenter stop_contract threads16 walkers

# The C ABI (bindings/c/tests/run.sh): C11 tests with ASan and UBSan against the debug librodiff.a,
# one run under valgrind, make install + pkg-config + the README's example. `cargo build` makes the
# debug libraries and the CLI the tests compare with (the header's own check is in `cargo test`).
test-c: deps
	$(CARGO) build
	RODIFF_CONTAINERD=1 $(SANDBOX) run --images busybox -- sh -c 'bindings/c/tests/run.sh && \
		bindings/probes/run.sh $(C_PROBES)'

# The Go package (bindings/go): go vet and go test against a sandbox's dockerd. `cargo build` makes
# the debug librodiff.a the tests link (tag rodiff_debug; users link the release one) and the CLI
# they compare with.
test-go: deps
	$(CARGO) build
	$(SANDBOX) run --images busybox -- sh -c 'cd bindings/go && \
		export GOFLAGS=-tags=rodiff_debug RODIFF_BIN="$(CURDIR)/target/debug/rodiff" && \
		$(GO) vet ./... && $(GO) test -count=1 -timeout 5m ./... && \
		cd ../probes/go && $(GO) vet ./... && $(GO) test -race -count=1 -timeout 10m ./...'

# A fresh virtualenv with the Python package installed as users install it, `pip install ./python`,
# and what its tests need. Maturin builds the extension with the cargo profile PY_PROFILE: dev for
# the tests (they share the debug build of dependencies every other suite uses, instead of an
# optimized build of everything), release (what users get) for the benchmark.
PY_PROFILE ?= dev
python-venv: deps
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	MATURIN_PEP517_ARGS='--profile $(PY_PROFILE)' \
		$(VENV)/bin/pip install --quiet --disable-pip-version-check ./python -r python/tests/requirements.txt

# The Python package (python/): stubtest keeps rodiff/_rodiff.pyi true to the module; pytest runs
# its tests and the pytest plugin's (through pytester) against a sandbox's dockerd and containerd.
# `cargo build` makes the CLI the tests compare with.
test-python: python-venv
	$(CARGO) build
	cd $(VENV) && bin/python -m mypy.stubtest rodiff._rodiff
	RODIFF_CONTAINERD=1 $(SANDBOX) run --images busybox,postgres -- \
		$(VENV)/bin/python -m pytest -q -p no:cacheprovider python/tests

# A fresh virtualenv with kubernetes-validate.
deploy-venv: deps
	rm -rf $(DEPLOY_VENV)
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install --quiet --disable-pip-version-check '$(KUBERNETES_VALIDATE)'

# deploy/: every document of deploy/*.yaml against the Kubernetes $(KUBERNETES_VERSION) schemas,
# strictly (an unknown field is an error), once the validator has been seen to reject a copy of
# each manifest whose first metadata.name is misspelt; then the agent run as the DaemonSet runs
# it, as a container of a sandbox's dockerd, against its containerd
# (deploy/test/agent_in_sandbox.py; its image holds the debug binary `cargo build` makes, as
# the other suites use it, rather than a release build of its own).
test-deploy: deploy-venv
	$(CARGO) build
	@for f in deploy/*.yaml; do \
		sed '0,/^  name:/s//  nmae:/' "$$f" >target/deploy-misspelt.yaml; \
		if $(DEPLOY_VENV)/bin/kubernetes-validate --quiet --no-warn -k $(KUBERNETES_VERSION) --strict \
			target/deploy-misspelt.yaml >/dev/null 2>&1; then \
			echo "make: kubernetes-validate --strict accepted a misspelt field in a copy of $$f" >&2; exit 1; \
		fi; \
	done
	$(DEPLOY_VENV)/bin/kubernetes-validate --quiet -k $(KUBERNETES_VERSION) --strict deploy/*.yaml
	RODIFF_CONTAINERD=1 RODIFF_BIN=$(CURDIR)/target/debug/rodiff $(SANDBOX) run -- \
		$(DEPLOY_VENV)/bin/python deploy/test/agent_in_sandbox.py

# Fuzzing (fuzz/, a cargo-fuzz crate). The targets are built with the flags `cargo fuzz build
# -s none` uses (`--dev` for the short mode, which builds in half the CPU time of the optimized
# build), so that stable cargo alone builds them (no cargo-fuzz, no nightly), and `cargo fuzz run
# -s none [--dev]` reuses the build; each binary is a libFuzzer executable.
FUZZ_TARGETS       ?= $(shell sed -n 's/^name = "\(.*\)"/\1/p' fuzz/Cargo.toml | grep -v '^rodiff-fuzz$$')
FUZZ_SECONDS       ?= 300
FUZZ_SHORT_SECONDS ?= 10
# release (make fuzz) or debug (make fuzz-short).
FUZZ_PROFILE       ?= release
FUZZ_TRIPLE        := $(shell rustc -vV | sed -n 's/^host: //p')
FUZZ_TARGET_DIR    ?= fuzz/target
FUZZ_RUSTFLAGS     := -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
	-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
	-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing \
	-Cllvm-args=-simplifycfg-branch-fold-threshold=0 -Cllvm-args=-sanitizer-coverage-stack-depth \
	-Cdebug-assertions
FUZZ_RELEASE       := --release --config 'profile.release.debug="line-tables-only"'
# Bounded allocation: an input that needs more than 256 MB at once, or 1 GB in all, fails.
FUZZ_OPTIONS       := -rss_limit_mb=1024 -malloc_limit_mb=256 -timeout=10 -print_final_stats=1

fuzz-build: deps
	RUSTFLAGS='$(FUZZ_RUSTFLAGS)$(if $(filter release,$(FUZZ_PROFILE)), -Ccodegen-units=1)' \
		$(CARGO) build --manifest-path fuzz/Cargo.toml --target-dir $(FUZZ_TARGET_DIR) --target $(FUZZ_TRIPLE) --bins \
		$(if $(filter release,$(FUZZ_PROFILE)),$(FUZZ_RELEASE))

fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/corpus/$$t fuzz/artifacts/$$t; \
		echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
		$(FUZZ_TARGET_DIR)/$(FUZZ_TRIPLE)/$(FUZZ_PROFILE)/$$t $(FUZZ_OPTIONS) -max_total_time=$(FUZZ_SECONDS) \
			-artifact_prefix=fuzz/artifacts/$$t/ fuzz/corpus/$$t fuzz/seeds/$$t 2>fuzz/artifacts/$$t/log || \
			{ tail -n 40 fuzz/artifacts/$$t/log; echo "make: fuzz target $$t failed (log: fuzz/artifacts/$$t/log)" >&2; exit 1; }; \
		grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' fuzz/artifacts/$$t/log; \
	done

fuzz-short:
	$(MAKE) fuzz FUZZ_PROFILE=debug FUZZ_SECONDS=$(FUZZ_SHORT_SECONDS)

fuzz-deps:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked --version 0.13.2

install:
	$(CARGO) build $(if $(filter debug,$(PROFILE)),,--profile $(PROFILE))
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 0755 target/$(PROFILE)/librodiff.so $(DESTDIR)$(PREFIX)/lib/librodiff.so
	install -m 0644 target/$(PROFILE)/librodiff.a $(DESTDIR)$(PREFIX)/lib/librodiff.a
	install -m 0644 include/rodiff.h $(DESTDIR)$(PREFIX)/include/rodiff.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' bindings/c/rodiff.pc.in \
		>$(DESTDIR)$(PREFIX)/lib/pkgconfig/rodiff.pc
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' bindings/c/rodiff-static.pc.in \
		>$(DESTDIR)$(PREFIX)/lib/pkgconfig/rodiff-static.pc

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/lib/librodiff.so $(DESTDIR)$(PREFIX)/lib/librodiff.a \
		$(DESTDIR)$(PREFIX)/include/rodiff.h $(DESTDIR)$(PREFIX)/lib/pkgconfig/rodiff.pc \
		$(DESTDIR)$(PREFIX)/lib/pkgconfig/rodiff-static.pc

bench: build
	$(MAKE) python-venv PY_PROFILE=release
	RODIFF_CONTAINERD=1 $(SANDBOX) run --images busybox -- python3 bench/bench.py
	RODIFF_STORAGE_DRIVER=btrfs $(SANDBOX) run --images busybox -- python3 bench/bench.py

clean:
	$(CARGO) clean
