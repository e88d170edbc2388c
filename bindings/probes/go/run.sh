#!/usr/bin/env bash
# bindings/probes/go/run.sh [go test flags]: the Go probes, with -race, against the sandbox:
#   cargo build && scripts/sandbox.sh run --images busybox -- bindings/probes/go/run.sh [-run NAME]
set -u
cd "$(dirname "$0")"
export GOFLAGS=-tags=rodiff_debug GOCACHE=${GOCACHE:-/tmp/probe-gocache}
go vet ./... || echo "go vet failed"
go test -race -count=1 -timeout 15m -v "$@" ./... 2>&1
