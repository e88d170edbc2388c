#!/usr/bin/env bash
# bindings/probes/valgrind_free.sh: the two freed-client probes under valgrind (librodiff.a is
# not ASan-instrumented, so ASan cannot see a use-after-free inside Rust code; valgrind can).
#   cargo build && scripts/sandbox.sh run --images busybox -- bindings/probes/valgrind_free.sh
# Exit 0 when valgrind finds no invalid access in either.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=$(mktemp -d "$RODIFF_SANDBOX/vg.XXXXXX")
c=probe-vg-big-$$
docker run --network none --name "$c" rodiff-test/busybox:latest sh -c \
  'mkdir /w && for d in $(seq 20); do mkdir /w/$d; for f in $(seq 500); do : > /w/$d/$f; done; done'
export PROBE_BIG=$c
fail=0
for p in free_in_callback free_while_running; do
  gcc -std=c11 -g -O0 -pthread -I"$ROOT/include" -I"$ROOT/bindings/c/tests/c" "$HERE/c/$p.c" \
    "$ROOT/target/debug/librodiff.a" -lgcc_s -lutil -lrt -lpthread -lm -ldl -o "$OUT/$p"
  timeout 300 valgrind --error-exitcode=9 "$OUT/$p" >"$OUT/$p.txt" 2>&1
  echo "=== $p: exit $?; $(grep -c 'Invalid read\|Invalid write' "$OUT/$p.txt") invalid accesses"
  grep -m1 -A12 'Invalid read\|Invalid write' "$OUT/$p.txt"
  grep -q 'Invalid read\|Invalid write' "$OUT/$p.txt" && fail=1
done
docker rm -f "$c" >/dev/null
exit $fail
