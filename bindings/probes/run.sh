#!/usr/bin/env bash
# bindings/probes/run.sh [PROBE...] - adversarial probes of the C ABI (issue 10), in a sandbox:
#
#   cargo build && RODIFF_CONTAINERD=1 scripts/sandbox.sh run --images busybox -- bindings/probes/run.sh [NAME...]
#
# Each probe is bindings/probes/c/NAME.c, built with ASan+UBSan against target/debug/librodiff.a
# (walkers is built and run without sanitizers, as walkers-plain) and run against containers
# this script makes. A probe exits 0 when the property it checks holds, non-zero (or dies) when
# it is broken. Every probe runs; the summary lists each one's verdict. Nothing is skipped.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TARGET=$ROOT/target/${RODIFF_PROFILE:-debug}
[[ -n ${DOCKER_HOST:-} && -n ${RODIFF_SANDBOX:-} ]] || { echo "run me in the sandbox" >&2; exit 2; }
IMAGE=rodiff-test/busybox:latest
OUT=$(mktemp -d "$RODIFF_SANDBOX/probes.XXXXXX")
CFLAGS=(-std=c11 -Wall -Wextra -g -I"$ROOT/include" -I"$ROOT/bindings/c/tests/c" -pthread)
SAN=(-fsanitize=address,undefined -fno-omit-frame-pointer)
LIBS=("$TARGET/librodiff.a" -lgcc_s -lutil -lrt -lpthread -lm -ldl)
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1

probes=("$@")
((${#probes[@]})) || for f in "$HERE"/c/*.c; do probes+=("$(basename "$f" .c)"); done

# Built at once (each links the whole librodiff.a); walkers is the one run without sanitizers.
pids=()
for p in "${probes[@]}"; do
  gcc "${CFLAGS[@]}" "${SAN[@]}" "$HERE/c/$p.c" "${LIBS[@]}" -o "$OUT/$p" & pids+=($!)
  if [[ $p == walkers ]]; then gcc "${CFLAGS[@]}" -O1 "$HERE/c/$p.c" "${LIBS[@]}" -o "$OUT/$p-plain" & pids+=($!); fi
done
for pid in "${pids[@]}"; do wait "$pid" || { echo "a probe does not build"; exit 2; }; done

CORPUS=probe-corpus-$$ BIG=probe-big-$$ HUGE=probe-huge-$$
docker run -d --network none --name "$CORPUS" "$IMAGE" sh -c '
  mkdir -p /srv/c && echo hi > /srv/c/f && printf x > "/srv/c/$(printf "bad\377name")" && touch /srv/ready && exec sleep 3600' >/dev/null
docker run --network none --name "$BIG" "$IMAGE" sh -c \
  'mkdir /w && for d in $(seq 20); do mkdir /w/$d; for f in $(seq 500); do : > /w/$d/$f; done; done'
if [[ " ${probes[*]} " == *" big "* ]]; then
  docker run --network none --name "$HUGE" "$IMAGE" sh -c \
    'mkdir /w && cd /w && for d in $(seq 100); do mkdir $d; cd $d; touch $(seq 1000); cd ..; done'
fi
until docker exec "$CORPUS" test -e /srv/ready 2>/dev/null; do sleep 0.1; done
export PROBE_CORPUS=$CORPUS PROBE_BIG=$BIG PROBE_HUGE=$HUGE PROBE_RODIFF=$TARGET/rodiff

declare -A verdict
for p in "${probes[@]}"; do
  echo "=== $p" >&2
  if [[ $p == walkers ]]; then
    # Capped by a pids cgroup: the host's pid_max is 32768, and walkers=UINT32_MAX must not be
    # allowed to take them all.
    cg=/sys/fs/cgroup/pids/rodiff-probe-$$
    mkdir -p "$cg" && echo 1500 >"$cg/pids.max"
    (echo $BASHPID >"$cg/cgroup.procs" && exec timeout -k 5 120 "$OUT/$p-plain") 2>&1 | tail -n 60
    rc=${PIPESTATUS[0]}
    echo "pids cgroup (max 1500): peak-limited forks refused: $(cat "$cg/pids.events")" >&2
    rmdir "$cg" 2>/dev/null
  else
    timeout -k 5 120 "$OUT/$p" 2>&1 | tail -n 60
    rc=${PIPESTATUS[0]}
  fi
  verdict[$p]="exit $rc"
  [[ $rc == 0 ]] && verdict[$p]="held"
  echo "=== $p: ${verdict[$p]}" >&2
done
docker rm -f -v "$CORPUS" "$BIG" "$HUGE" >/dev/null 2>&1
echo "--- summary"
fail=0
for p in "${probes[@]}"; do
  printf '%-22s %s\n' "$p" "${verdict[$p]}"
  [[ ${verdict[$p]} == held ]] || fail=1
done
exit $fail
