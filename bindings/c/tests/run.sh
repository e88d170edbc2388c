#!/usr/bin/env bash
# bindings/c/tests/run.sh - the C tests of include/rodiff.h, run by `make test-c` in a sandbox:
#
#   RODIFF_CONTAINERD=1 scripts/sandbox.sh run --images busybox -- bindings/c/tests/run.sh
#
# It needs target/$RODIFF_PROFILE (default debug) to hold librodiff.a, librodiff.so and the rodiff
# CLI (`cargo build`). Steps:
#   1. include/rodiff.h compiles alone (C11, -pedantic; and as C++ when g++ is there);
#   2. tests/c/*.c are built with -Wall -Wextra -Werror -fsanitize=address,undefined, linked
#      statically against librodiff.a (self-contained binaries, the artifact Go links too);
#   3. against containers it makes: cli_parity (every change, the stream and the plan in each
#      format compared with the CLI's json and plan output), stream_stop, errors, cancel, threads,
#      and pod against the sandbox's containerd (CRI-labelled containers made with ctr);
#   4. errors and stream_stop once more, built without sanitizers, under valgrind
#      --leak-check=full --error-exitcode=1;
#   5. the README's C example is bindings/c/examples/diff.c; `make install` into a temporary
#      prefix, then the example compiled with `pkg-config --cflags --libs rodiff` (the shared
#      library) and statically (librodiff.a from pkg-config's libdir), and run.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
PROFILE=${RODIFF_PROFILE:-debug}
TARGET=$ROOT/target/$PROFILE
RODIFF=$TARGET/rodiff
IMAGE=rodiff-test/busybox:latest

log() { printf 'run.sh: %s\n' "$*" >&2; }
die() {
  log "FAILED: $*"
  exit 1
}
[[ -n ${DOCKER_HOST:-} && -n ${RODIFF_SANDBOX:-} ]] || die "run me in the sandbox: make test-c"
for f in librodiff.a librodiff.so rodiff; do
  [[ -e $TARGET/$f ]] || die "$TARGET/$f missing: run \`cargo build\` (or set RODIFF_PROFILE)"
done

# Inside the sandbox's directory: removed with it whatever happens.
OUT=$(mktemp -d "$RODIFF_SANDBOX/c-tests.XXXXXX")
CONTAINERS=()
PODS=()
cleanup() {
  ((${#CONTAINERS[@]} == 0)) || docker rm -f -v "${CONTAINERS[@]}" >/dev/null 2>&1 || true
  local id
  for id in "${PODS[@]}"; do
    ctr -a "$CONTAINERD_ADDRESS" -n k8s.io tasks rm -f "$id" >/dev/null 2>&1 || true
    ctr -a "$CONTAINERD_ADDRESS" -n k8s.io containers rm "$id" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

CFLAGS=(-std=c11 -Wall -Wextra -Werror -pedantic -g -I"$ROOT/include")
SANITIZE=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
# What librodiff.a needs from the system (rustc --print native-static-libs; rodiff.pc's Libs.private).
STATIC_LIBS=(-lgcc_s -lutil -lrt -lpthread -lm -ldl)
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1

t0=$SECONDS
log "1. include/rodiff.h compiles alone"
printf '#include "rodiff.h"\n' >"$OUT/header.c"
gcc "${CFLAGS[@]}" -fsyntax-only "$OUT/header.c" || die "rodiff.h does not compile alone as C11"
if command -v g++ >/dev/null; then
  cp "$OUT/header.c" "$OUT/header.cc"
  g++ -std=c++11 -Wall -Wextra -Werror -pedantic -I"$ROOT/include" -fsyntax-only "$OUT/header.cc" || die "rodiff.h does not compile as C++"
fi

log "2. building tests/c/*.c (ASan, UBSan; static librodiff.a) and, for valgrind, without sanitizers"
mkdir -p "$OUT/bin"
pids=()
for src in "$HERE"/c/*.c; do
  name=$(basename "$src" .c)
  gcc "${CFLAGS[@]}" "${SANITIZE[@]}" "$src" "$TARGET/librodiff.a" "${STATIC_LIBS[@]}" -o "$OUT/bin/$name" &
  pids+=($!)
done
for name in errors stream_stop; do
  gcc "${CFLAGS[@]}" -O0 "$HERE/c/$name.c" "$TARGET/librodiff.a" "${STATIC_LIBS[@]}" -o "$OUT/bin/$name-plain" &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || die "a C test does not build"; done
log "   built in $((SECONDS - t0)) s"

log "3. containers"
# A running container with every kind of entry, names that are not UTF-8 or hold a newline, owner
# and mode changes, a deletion, a volume (mount points). Its command runs again when `rodiff_verify`
# restarts its copy on the same volumes, so every step may find its work done. It ends on SIGTERM
# (a shell or sleep as PID 1 ignores it), so that verification's graceful stops take moments.
CORPUS=rodiff-c-corpus-$$
BIG=rodiff-c-big-$$
CONTAINERS+=("$CORPUS" "$BIG")
docker run -d --network none -v /vol --name "$CORPUS" "$IMAGE" sh -c '
  mkdir -p /srv/c/sub && echo hello > /srv/c/sub/file &&
  printf x > "/srv/c/$(printf "bad\377name")" && printf y > "/srv/c/new
line" && ln -sf /etc/passwd /srv/c/link && { [ -p /srv/c/fifo ] || mkfifo /srv/c/fifo; } &&
  chmod 0751 /srv/c/sub && chown 1234:5678 /srv/c/sub/file && echo more >> /etc/passwd &&
  rm -rf /srv/del && echo changed > /srv/data/a.txt && touch /srv/ready &&
  trap "exit 0" TERM && while :; do sleep 1 & wait $!; done' >/dev/null
# A stopped container that wrote 10,000 files (20 directories x 500): many batches.
docker run --network none --name "$BIG" "$IMAGE" sh -c \
  'mkdir /w && for d in $(seq 20); do mkdir /w/$d; for f in $(seq 500); do : > /w/$d/$f; done; done'
until docker exec "$CORPUS" test -e /srv/ready 2>/dev/null; do sleep 0.1; done

run() { # run NAME ARGS...: one test program, timed
  local name=$1 start=$SECONDS
  shift
  "$OUT/bin/$name" "$@" || die "$name $*"
  log "   $name: ok ($((SECONDS - start)) s)"
}

log "4. tests"
mkdir -p "$OUT/parity"
run cli_parity "$CORPUS" "$OUT/parity"
"$RODIFF" diff "$CORPUS" --format json | python3 "$HERE/cli_json.py" >"$OUT/parity/cli.txt"
diff -u "$OUT/parity/cli.txt" "$OUT/parity/list.txt" >&2 || die "rodiff_diff differs from rodiff diff --format json (- CLI, + C)"
grep -q " $(printf '/srv/c/bad\377name' | od -An -tx1 | tr -d ' \n') " "$OUT/parity/list.txt" ||
  die "the non-UTF-8 name is not in the list"
grep -q ' mountpoint ' "$OUT/parity/list.txt" || die "no mount point in the list"
cmp -s <(sort "$OUT/parity/list.txt") <(sort "$OUT/parity/stream.txt") || die "the stream's changes are not the list's"
for format in docker compose k8s json; do
  "$RODIFF" plan "$CORPUS" --format "$format" >"$OUT/parity/cli-plan-$format.txt"
  # The CLI ends its output with a newline where the string does not.
  cmp -s <(sed -e '$a\' "$OUT/parity/plan-$format.txt") "$OUT/parity/cli-plan-$format.txt" ||
    die "rodiff_plan $format differs from rodiff plan --format $format"
done
log "   the list (json: $(wc -l <"$OUT/parity/list.txt") changes), the stream and 4 plan formats match the CLI"
run stream_stop "$BIG"
run errors "$CORPUS"
run cancel "$BIG"
run threads "$CORPUS"

if [[ -n ${CONTAINERD_ADDRESS:-} && -n ${RODIFF_RUNC_ROOT:-} ]]; then
  pod=c-pod-$$
  start_pod() { # KIND NAME SCRIPT
    local id=rodiff-c-$pod-$2
    PODS+=("$id")
    ctr -a "$CONTAINERD_ADDRESS" -n k8s.io run -d --runc-root "$RODIFF_RUNC_ROOT" --snapshotter overlayfs \
      --label "io.kubernetes.pod.name=$pod" --label io.kubernetes.pod.namespace=shop \
      --label "io.kubernetes.container.name=$2" --label "io.cri-containerd.kind=$1" \
      "docker.io/$IMAGE" "$id" sh -c "$3 && touch /srv/ready && sleep 3600" </dev/null >/dev/null
  }
  start_pod sandbox POD 'echo p > /srv/pause-wrote'
  start_pod container app 'echo a > /srv/app-wrote'
  start_pod container sidecar 'echo s > /srv/sidecar-wrote'
  for id in "${PODS[@]}"; do
    until ctr -a "$CONTAINERD_ADDRESS" -n k8s.io tasks exec --exec-id "ready-$RANDOM" "$id" test -e /srv/ready </dev/null 2>/dev/null; do
      sleep 0.1
    done
  done
  run pod "shop/$pod"
elif [[ ${CI:-} == true ]]; then
  die "no sandbox containerd (CONTAINERD_ADDRESS, RODIFF_RUNC_ROOT): run with RODIFF_CONTAINERD=1"
else
  log "   pod: skipped (no sandbox containerd: RODIFF_CONTAINERD=1)"
fi

log "5. valgrind --leak-check=full (errors, stream_stop; no sanitizers)"
for name in errors stream_stop; do
  start=$SECONDS
  arg=$CORPUS
  [[ $name != stream_stop ]] || arg=$BIG
  valgrind --leak-check=full --error-exitcode=1 --suppressions="$HERE/valgrind.supp" \
    "$OUT/bin/$name-plain" "$arg" 2>"$OUT/valgrind-$name.txt" || {
    cat "$OUT/valgrind-$name.txt" >&2
    die "valgrind: $name"
  }
  log "   $name under valgrind: ok ($((SECONDS - start)) s)"
done

log "6. README example, make install, pkg-config"
awk '/^```c$/ && !done { on = 1; next } on && /^```/ { on = 0; done = 1 } on' "$ROOT/README.md" >"$OUT/readme-example.c"
cmp -s "$OUT/readme-example.c" "$ROOT/bindings/c/examples/diff.c" ||
  die "the README's C example is not bindings/c/examples/diff.c: $(diff "$OUT/readme-example.c" "$ROOT/bindings/c/examples/diff.c")"
PREFIX=$OUT/prefix
make -s -C "$ROOT" install PREFIX="$PREFIX" PROFILE="$PROFILE" >&2
for f in lib/librodiff.so lib/librodiff.a include/rodiff.h lib/pkgconfig/rodiff.pc lib/pkgconfig/rodiff-static.pc; do
  [[ -f $PREFIX/$f ]] || die "make install did not install $f"
done
export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig
[[ $(pkg-config --modversion rodiff) == "$(sed -n 's/^#define RODIFF_VERSION_MAJOR //p;s/^#define RODIFF_VERSION_MINOR //p;s/^#define RODIFF_VERSION_PATCH //p' "$ROOT/include/rodiff.h" | paste -sd.)" ]] ||
  die "rodiff.pc's version is not rodiff.h's"
# shellcheck disable=SC2046 # pkg-config's words
gcc -std=c11 -Wall -Wextra -Werror -o "$OUT/example" "$ROOT/bindings/c/examples/diff.c" $(pkg-config --cflags --libs rodiff)
# ldd's output is captured before it is searched: `ldd | grep -q` under pipefail fails at random when
# grep exits at its first match and ldd dies of SIGPIPE writing the next line.
libs=$(LD_LIBRARY_PATH=$PREFIX/lib ldd "$OUT/example")
[[ $libs == *"$PREFIX/lib/librodiff.so"* ]] || die "the example does not use the installed librodiff.so: $libs"
LD_LIBRARY_PATH=$PREFIX/lib "$OUT/example" "$CORPUS" >"$OUT/example.txt" || die "the example failed"
# What it prints is `KIND PATH` for each change of the list, raw bytes.
python3 -c 'import sys
for l in open(sys.argv[1]): k, _, h = l.split()[:3]; sys.stdout.buffer.write(k.encode() + b" " + bytes.fromhex(h) + b"\n")' \
  "$OUT/parity/list.txt" | cmp -s - "$OUT/example.txt" || die "the example's output is not the list's"
grep -qx 'C /srv/data/a.txt' "$OUT/example.txt" || die "the example's output lacks 'C /srv/data/a.txt'"
if LD_LIBRARY_PATH=$PREFIX/lib DOCKER_HOST=unix:///nonexistent.sock "$OUT/example" "$CORPUS" 2>"$OUT/example.err"; then
  die "the example succeeded against a dead endpoint"
fi
grep -q 'unix:///nonexistent.sock' "$OUT/example.err" || die "the example's error does not name the endpoint: $(cat "$OUT/example.err")"
# Static, as the README shows it (rodiff-static.pc): no librodiff.so needed at run time.
# shellcheck disable=SC2046 # pkg-config's words
gcc -std=c11 -Wall -Wextra -Werror -o "$OUT/example-static" "$ROOT/bindings/c/examples/diff.c" \
  $(pkg-config --cflags --libs rodiff-static)
libs=$(ldd "$OUT/example-static")
[[ $libs != *librodiff* ]] || die "the static example links librodiff.so: $libs"
"$OUT/example-static" "$CORPUS" | cmp -s - "$OUT/example.txt" || die "the static example prints something else"
log "   make install, pkg-config and the example (shared and static): ok"

log "all C tests passed in $((SECONDS - t0)) s"
