#!/usr/bin/env bash
# scripts/sandbox.sh - throw-away, isolated Docker (and containerd) daemons for rodiff's tests.
#
#   sandbox.sh deps                        install missing Debian packages
#   sandbox.sh run [--images LIST] -- CMD  start a sandbox, build the test images in LIST
#                                          (comma-separated; busybox always), run CMD in it,
#                                          tear it down; exits with CMD's status
#
# A sandbox is a directory, DIR=/tmp/rodiff-sb.XXXXXX (inside the calling sandbox's DIR when run
# from one), holding a dockerd's data root, exec root, socket and log, and a process tree that
# runs in its own mount and PID namespaces (unshare): the daemons, their containers, and CMD.
# When the tree's first process ends, the kernel kills every other one and drops every mount
# the sandbox made; the loop devices under its btrfs filesystems go with their last mount
# (autoclear). Nothing is looked up by command line, nothing is unmounted by hand. Two sandboxes
# share nothing but the image cache (~/.cache/rodiff/images, or $RODIFF_CACHE/images).
#
# CMD gets DOCKER_HOST (the sandbox's dockerd) and RODIFF_SANDBOX (DIR), and with
# RODIFF_CONTAINERD=1 a standalone containerd whose root is on a btrfs loop filesystem
# (DIR/ctrd-btrfs: the overlayfs and btrfs snapshotters both work; no CRI plugin):
# CONTAINERD_ADDRESS, RODIFF_RUNC_ROOT (pass it to `ctr run --runc-root`).
# RODIFF_STORAGE_DRIVER picks dockerd's storage driver (default overlay2; btrfs puts the data
# root on a btrfs loop filesystem, DIR/docker-btrfs). RODIFF_USERNS_REMAP=1 starts dockerd with
# --userns-remap=default (which creates the host user dockremap and its subordinate ids if
# missing).
# RODIFF_PODMAN=1 adds two Podman services (`podman system service`, Docker-compatible API), each
# with its own storage.conf, containers.conf and registries.conf (CONTAINERS_*_CONF), storage
# root and run root under DIR, native overlay, cgroup manager cgroupfs, events in a file, network
# none for every container: a rootful one (DIR/podman, socket DIR/podman/podman.sock), and a
# rootless one run by the host user rodiff-podman (made with subordinate ids if missing; its
# HOME and XDG_RUNTIME_DIR are under DIR/podman-rootless). CMD gets RODIFF_PODMAN_HOST,
# RODIFF_PODMAN_ROOTLESS_HOST (unix:// URIs) and RODIFF_PODMAN_USER; the images of LIST that are
# also in RODIFF_PODMAN_IMAGES (default busybox,redis) are imported into both, from the same
# tarballs, with the same CMD/USER/ENV.
#
# Images come from recipes, scripts/images/NAME/recipe (see load_image), never from a registry.
# Must run as root. Messages go to stderr.
set -euo pipefail

readonly PROG=${0##*/}
SELF=$(realpath "${BASH_SOURCE[0]}")
readonly SELF
readonly IMAGES_DIR=${SELF%/*}/images

# Debian packages the sandbox (and rodiff's test-suite) relies on (gcc and libc6-dev build the
# static test tools of the busybox image).
readonly DEPS=(docker.io containerd runc btrfs-progs busybox-static mmdebstrap
  protobuf-compiler python3-venv iproute2 util-linux time gcc g++ libc6-dev
  valgrind pkg-config golang-go podman uidmap)

# mmdebstrap options of every Debian image (part of their cache key):
#  - keep /run: the services put sockets and pid files in /run/<service>, made by the recipes'
#    customize hooks (which empty the rest of /run but /run/lock, as a Debian base image has it);
#  - leave out documentation, man pages and translations.
readonly MMDEBSTRAP_OPTS=(
  --variant=apt
  --skip=cleanup/run
  --dpkgopt=path-exclude=/usr/share/doc/*
  --dpkgopt=path-include=/usr/share/doc/*/copyright
  --dpkgopt=path-exclude=/usr/share/man/*
  --dpkgopt=path-exclude=/usr/share/info/*
  --dpkgopt=path-exclude=/usr/share/locale/*
)

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
usage() {
  cat >&2 <<EOF
usage: $PROG deps
       $PROG run [--images LIST] -- CMD [ARG...]   (LIST: $(cd "$IMAGES_DIR" && ls | paste -sd,); busybox always)
EOF
  exit 2
}
need_root() { [[ $(id -u) -eq 0 ]] || die "must run as root (dockerd, mounts, mmdebstrap)"; }

cmd_deps() {
  local pkg missing=()
  for pkg in "${DEPS[@]}"; do
    # `dpkg -s` also succeeds for removed-but-not-purged packages: look at the status.
    [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) == 'install ok installed' ]] || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  need_root
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update >&2
  apt-get install -y "${missing[@]}" >&2
}

# ---------------------------------------------------------------------------------------------
# Outside: make DIR, run the inside in new namespaces, remove what is left.
# ---------------------------------------------------------------------------------------------

cmd_run() {
  need_root
  local images=busybox
  while (($#)); do
    case $1 in
    --images) (($# >= 2)) || usage; images=$2; shift 2 ;;
    --images=*) images=${1#--images=}; shift ;;
    --) shift; break ;;
    *) usage ;;
    esac
  done
  (($#)) || usage
  local name
  for name in ${images//,/ }; do
    [[ -f $IMAGES_DIR/$name/recipe ]] || die "unknown image '$name' (no $IMAGES_DIR/$name/recipe)"
  done
  command -v dockerd >/dev/null || die "dockerd not found; run '$PROG deps' first"

  # A sandbox started from inside another one (a test's throw-away dockerd) lives in its DIR, so
  # that the outer one removes it even when it could not remove itself.
  local base=/tmp
  [[ ! -d ${RODIFF_SANDBOX:-} ]] || base=$RODIFF_SANDBOX
  SB_DIR=$(mktemp -d "$base/rodiff-sb.XXXXXX")
  chmod 0711 "$SB_DIR" # dockerd --userns-remap: the remapped root must reach its data root
  trap outside_cleanup EXIT
  trap 'outside_stop 130' INT
  trap 'outside_stop 143' TERM

  # In the background with `wait`, so that the traps run at once; 0<&0 keeps stdin.
  SB_IMAGES=$images unshare --mount --propagation private --pid --fork --mount-proc \
    "$SELF" __inside "$SB_DIR" "$@" 0<&0 &
  SB_UNSHARE=$!
  local rc=0
  wait "$SB_UNSHARE" || rc=$?
  exit "$rc"
}

# INT/TERM: the inside (the first process of the new PID namespace, a child of unshare, which
# ignores both) stops CMD and the containers; if it has not finished after a minute, KILL ends
# the namespace at once.
outside_stop() {
  trap '' INT TERM
  log "interrupted; tearing down $SB_DIR"
  local inside= i
  for ((i = 0; i < 50; i++)); do
    read -r inside _ <"/proc/$SB_UNSHARE/task/$SB_UNSHARE/children" 2>/dev/null || true
    [[ -z $inside ]] || break
    kill -0 "$SB_UNSHARE" 2>/dev/null || break
    sleep 0.1
  done
  if [[ -n $inside ]]; then
    kill -TERM "$inside" 2>/dev/null || true
    for ((i = 0; i < 600; i++)); do
      kill -0 "$inside" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$inside" 2>/dev/null || true
  fi
  wait "$SB_UNSHARE" 2>/dev/null || true
  exit "$1"
}

# After the namespaces are gone: every process is dead and every mount dropped, which detaches
# the loop devices (autoclear) - within moments; detach any left, then remove DIR.
outside_cleanup() {
  local rc=$? dev back i
  trap - EXIT INT TERM
  wait "$SB_UNSHARE" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    [[ $(losetup -l -n -O BACK-FILE) == *"$SB_DIR/"* ]] || break
    sleep 0.1
  done
  while read -r dev back; do
    [[ $back == "$SB_DIR"/* ]] && { losetup -d "$dev" || log "warning: cannot detach $dev ($back)"; }
  done < <(losetup -l -n -O NAME,BACK-FILE)
  rm -rf --one-file-system "$SB_DIR" || log "warning: cannot remove $SB_DIR completely"
  exit "$rc"
}

# ---------------------------------------------------------------------------------------------
# Inside: PID 1 of the new PID namespace, in a private mount namespace with its own /proc.
# ---------------------------------------------------------------------------------------------

inside() {
  DIR=$1
  shift
  # containerd's shims put their sockets in /run/containerd/s, ctr its FIFOs in
  # /run/containerd/fifo: a private tmpfs keeps them (and /run/docker) apart from the host's
  # and from other sandboxes', and drops them with the namespace.
  local d
  for d in /run/containerd /run/docker; do
    mkdir -p "$d"
    mount -t tmpfs -o mode=0711 rodiff-sb "$d"
  done
  unset DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH
  export DOCKER_HOST=unix://$DIR/docker.sock RODIFF_SANDBOX=$DIR
  trap inside_teardown EXIT
  trap 'exit 143' TERM
  trap 'exit 130' INT
  # Set-up and CMD run in a child, which this process (PID 1: it must stay responsive to TERM)
  # waits for; bash runs a trap only between commands.
  (
    setup
    # A sandbox that CMD starts (a test's throw-away dockerd) asks for its own containerd.
    unset RODIFF_CONTAINERD RODIFF_PODMAN SB_IMAGES
    exec "$@"
  ) 0<&0 &
  local rc=0
  wait "$!" || rc=$?
  exit "$rc"
}

setup() {
  start_dockerd
  if [[ ${RODIFF_CONTAINERD:-0} == 1 ]]; then
    start_containerd
    export CONTAINERD_ADDRESS=$DIR/ctrd/containerd.sock RODIFF_RUNC_ROOT=$DIR/ctrd/runc
  fi
  if [[ ${RODIFF_PODMAN:-0} == 1 ]]; then
    start_podman rootful
    start_podman rootless
    export RODIFF_PODMAN_HOST=unix://$DIR/podman/podman.sock \
      RODIFF_PODMAN_ROOTLESS_HOST=unix://$DIR/podman-rootless/xdg/podman/podman.sock \
      RODIFF_PODMAN_USER=$PODMAN_USER
  fi
  local name ns
  for name in $(printf '%s\n' busybox ${SB_IMAGES//,/ } | awk '!seen[$0]++'); do
    load_image "$name"
  done
  if [[ -n ${CONTAINERD_ADDRESS:-} ]]; then
    for ns in default k8s.io; do
      docker save rodiff-test/busybox:latest | ctr -a "$CONTAINERD_ADDRESS" -n "$ns" images import - >/dev/null ||
        die "cannot import rodiff-test/busybox:latest into containerd namespace $ns"
    done
    log "imported rodiff-test/busybox:latest into containerd (namespaces default, k8s.io)"
  fi
}

# Before the kernel kills the rest: CMD and whatever it started gets TERM and 20 s to finish
# (a sandbox started by a test tears itself down), then KILL; then the containers are stopped
# through the APIs, so that their runtimes remove their cgroups (the only thing of theirs that
# outlives the namespaces).
inside_teardown() {
  local rc=$? i ns id sock
  trap '' INT TERM
  local -a pids
  mapfile -t pids < <(session_pids)
  if ((${#pids[@]})); then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for ((i = 0; i < 200 && ${#pids[@]}; i++)); do
      sleep 0.1
      mapfile -t pids < <(session_pids)
    done
    ((${#pids[@]} == 0)) || kill -KILL "${pids[@]}" 2>/dev/null || true
  fi
  if [[ -S $DIR/docker.sock ]]; then
    # shellcheck disable=SC2046 # one id a word
    timeout 60 docker stop -t 1 $(timeout 10 docker ps -q 2>/dev/null) >/dev/null 2>&1 || true
  fi
  # Podman's cgroupfs cgroups are the host's: removing the containers removes them.
  for sock in "$DIR/podman/podman.sock" "$DIR/podman-rootless/xdg/podman/podman.sock"; do
    [[ ! -S $sock ]] || timeout 60 podman --url "unix://$sock" rm -a -f -t 1 >/dev/null 2>&1 || true
  done
  if [[ -S $DIR/ctrd/containerd.sock ]]; then
    local ctr=(timeout 20 ctr -a "$DIR/ctrd/containerd.sock")
    for ns in $("${ctr[@]}" namespaces ls -q 2>/dev/null); do
      for id in $("${ctr[@]}" -n "$ns" tasks ls -q 2>/dev/null); do
        "${ctr[@]}" -n "$ns" tasks rm -f "$id" >/dev/null 2>&1 || true
      done
    done
  fi
  exit "$rc"
}

# The live processes of this one's session but itself: set-up, CMD, what they started and what
# was orphaned, not the daemons (setsid) nor their containers. The session began outside the
# namespace, so its id reads 0 here.
session_pids() {
  local f pid line state sid
  for f in /proc/[0-9]*/stat; do
    pid=${f#/proc/}
    pid=${pid%/stat}
    ((pid != 1 && pid != BASHPID)) || continue
    read -r line <"$f" 2>/dev/null || continue
    read -r state _ _ sid _ <<<"${line##*) }"
    [[ $sid != 0 || $state == Z ]] || printf '%s\n' "$pid"
  done
}

# wait_up WHAT PID LOG SECONDS CMD...: wait until CMD succeeds; fail early if PID died.
wait_up() {
  local what=$1 pid=$2 logf=$3 deadline=$((SECONDS + $4))
  shift 4
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
      tail -n 40 "$logf" >&2 || true
      die "$what did not come up (the end of its log is above)"
    fi
    sleep 0.2
  done
}

# make_btrfs DIR SIZE: a btrfs filesystem in the sparse file DIR.img, mounted on DIR. `mount -o
# loop` sets up the loop device with autoclear: it goes when its last mount goes.
make_btrfs() {
  command -v mkfs.btrfs >/dev/null || die "mkfs.btrfs missing; run '$PROG deps' (btrfs-progs)"
  truncate -s "$2" "$1.img"
  mkfs.btrfs -q "$1.img" >/dev/null 2>&1 || die "mkfs.btrfs $1.img failed"
  mkdir -p "$1"
  mount -o loop "$1.img" "$1" || die "cannot loop-mount $1.img"
}

start_dockerd() {
  local data=$DIR/data driver=${RODIFF_STORAGE_DRIVER:-overlay2} extra=()
  if [[ $driver == btrfs ]]; then
    # Helper snapshots then go to DIR/docker-btrfs/.rodiff-snapshots, outside the data root.
    make_btrfs "$DIR/docker-btrfs" 8G
    data=$DIR/docker-btrfs/data
  fi
  [[ ${RODIFF_USERNS_REMAP:-0} != 1 ]] || extra+=(--userns-remap=default)
  mkdir -p "$data" "$DIR/exec"
  # Its own config, so that a host /etc/docker/daemon.json cannot change its settings; dockerd
  # 20.10's trust key would otherwise be the shared /etc/docker/key.json.
  printf '{ "deprecated-key-path": "%s/key.json" }\n' "$DIR" >"$DIR/daemon.json"
  log "starting dockerd in $DIR (storage driver $driver)"
  # It starts its own containerd, state in the exec and data roots. setsid: a Ctrl-C at the
  # terminal reaches CMD, not the daemons (the teardown still needs them).
  setsid dockerd --config-file "$DIR/daemon.json" --data-root "$data" --exec-root "$DIR/exec" \
    --pidfile "$DIR/dockerd.pid" --host "unix://$DIR/docker.sock" \
    --iptables=false --ip6tables=false --bridge=none --storage-driver "$driver" "${extra[@]}" \
    </dev/null >"$DIR/dockerd.log" 2>&1 &
  wait_up dockerd $! "$DIR/dockerd.log" 60 docker version
}

# The standalone containerd: config, state, socket and log in DIR/ctrd, its root on btrfs. The
# CRI plugin is disabled: the tests make their "pods" themselves (CRI labels, namespace k8s.io).
start_containerd() {
  command -v containerd >/dev/null || die "containerd not found; run '$PROG deps'"
  local c=$DIR/ctrd
  mkdir -p "$c/state" "$c/opt" "$c/runc"
  make_btrfs "$DIR/ctrd-btrfs" 4G
  cat >"$c/config.toml" <<EOF
version = 2
root = "$DIR/ctrd-btrfs/root"
state = "$c/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$c/containerd.sock"
[ttrpc]
  address = "$c/containerd.sock.ttrpc"
[debug]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$c/opt"
EOF
  log "starting containerd in $DIR (root on btrfs: $DIR/ctrd-btrfs/root)"
  setsid containerd --config "$c/config.toml" </dev/null >"$c/containerd.log" 2>&1 &
  wait_up containerd $! "$c/containerd.log" 30 ctr -a "$c/containerd.sock" version
}

# The host user the rootless Podman service runs as.
readonly PODMAN_USER=rodiff-podman

# The host user of the rootless service (if missing), with subordinate id ranges after every range
# already given out; under a lock on /etc/subuid, as two sandboxes may start at once.
make_podman_user() (
  flock 9
  id "$PODMAN_USER" >/dev/null 2>&1 ||
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$PODMAN_USER"
  for f in /etc/subuid /etc/subgid; do
    grep -q "^$PODMAN_USER:" "$f" 2>/dev/null && continue
    start=$(awk -F: 'BEGIN { e = 1000000 } $2 + $3 > e { e = $2 + $3 } END { print e }' "$f" 2>/dev/null || echo 1000000)
    echo "$PODMAN_USER:$start:65536" >>"$f"
  done
) 9>>/etc/subuid

# start_podman rootful|rootless: a Podman service on its own socket, storage and configuration
# (see the header). Facts (Debian 12, podman 4.3.1, kernel 6.x, cgroup v1 hybrid):
#  - rootful works as root in these namespaces; rootless as a user with /etc/subuid and
#    /etc/subgid ranges (newuidmap), on native overlay with `userxattr` (kernel >= 5.13: no
#    fuse-overlayfs; storage.conf names no mount_program), without cgroups on cgroup v1;
#  - storage.conf must name a runroot, of 50 characters at most; a rootless service ignores
#    its graphroot (it reads rootless_storage_path);
#  - `podman import` through the service needs no registry; short names become localhost/NAME.
start_podman() {
  command -v podman >/dev/null || die "podman not found; run '$PROG deps'"
  local kind=$1 p=$DIR/podman run_as=() env=()
  if [[ $kind == rootless ]]; then
    p=$DIR/podman-rootless
    make_podman_user
  fi
  local sock=$p/podman.sock runroot=$p/run
  mkdir -p "$p/root" "$p/run" "$p/tmp" "$p/networks"
  if [[ $kind == rootless ]]; then
    sock=$p/xdg/podman/podman.sock
    mkdir -p "$p/xdg/podman" "$p/home"
    chmod 0700 "$p/xdg"
    run_as=(setpriv --reuid="$(id -u "$PODMAN_USER")" --regid="$(id -g "$PODMAN_USER")" --init-groups)
    env=(HOME="$p/home" XDG_RUNTIME_DIR="$p/xdg" XDG_CONFIG_HOME="$p/home/.config" XDG_DATA_HOME="$p/home/.local/share")
  fi
  printf '[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "%s"\nrootless_storage_path = "%s"\n' \
    "$p/root" "$runroot" "$p/root" >"$p/storage.conf"
  cat >"$p/containers.conf" <<EOF
[containers]
netns = "none"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$p/events.log"
tmp_dir = "$p/tmp"
[network]
network_config_dir = "$p/networks"
EOF
  : >"$p/registries.conf"
  [[ $kind != rootless ]] || chown -R "$PODMAN_USER:" "$p"
  log "starting podman system service ($kind) in $p"
  setsid "${run_as[@]}" env "${env[@]}" CONTAINERS_CONF="$p/containers.conf" CONTAINERS_STORAGE_CONF="$p/storage.conf" \
    CONTAINERS_REGISTRIES_CONF="$p/registries.conf" \
    podman --root "$p/root" --runroot "$runroot" system service --time=0 "unix://$sock" \
    </dev/null >"$p/podman.log" 2>&1 &
  wait_up "podman ($kind)" $! "$p/podman.log" 30 podman --url "unix://$sock" version
}

# podman_import TARBALL: imports a root tarball into both Podman services as load_image's TAG,
# with its CHANGES (uses load_image's variables), if RODIFF_PODMAN_IMAGES asks for it.
podman_import() {
  [[ -n ${RODIFF_PODMAN_HOST:-} && ,${RODIFF_PODMAN_IMAGES:-busybox,redis}, == *",$name,"* ]] || return 0
  local host
  for host in "$RODIFF_PODMAN_HOST" "$RODIFF_PODMAN_ROOTLESS_HOST"; do
    podman --url "$host" import "${import[@]}" "$1" "$TAG" >/dev/null || die "cannot import $TAG into podman at $host"
  done
  log "imported $TAG into podman (rootful and rootless)"
}

# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------
#
# scripts/images/NAME/recipe (bash, sourced) sets
#   TAG              the image's name
#   CHANGES=(...)    `docker import --change` instructions (CMD, USER, ENV, ...)
#   CHECK, CHECK_WHAT  a shell command that must succeed (docker exec) in a container of the
#                    new image, without network, within two minutes; what it checks
#   CHECK_RUN=(...)  optional: the command that container runs (default: the image's CMD)
#   INPUTS=(...)     optional: files outside the directory that go into the image (relative to it)
# and either DEBIAN_SUITE + DEBIAN_PACKAGES (mmdebstrap, from the machine's apt sources, with
# NAME/customize as its customize hook, if there is one), or NAME/build, a program that writes
# the root tarball to $1.
#
# Root tarballs are cached, keyed by a hash of everything that makes them: the recipe
# directory, its INPUTS, the architecture, the mmdebstrap options. A tarball enters the cache
# only after its image passed its check, so a cached one is imported without checking again.

load_image() {
  local name=$1 rdir=$IMAGES_DIR/$1
  local TAG CHECK CHECK_WHAT DEBIAN_SUITE= DEBIAN_PACKAGES= CHANGES=() INPUTS=() CHECK_RUN=()
  # shellcheck source=/dev/null
  . "$rdir/recipe"
  local cache=${RODIFF_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/rodiff}/images key
  key=$(cd "$rdir" && {
    find . -type f -printf '%p %m\n' | LC_ALL=C sort
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 cat
    ((${#INPUTS[@]} == 0)) || cat "${INPUTS[@]}"
    dpkg --print-architecture
    [[ -z $DEBIAN_PACKAGES ]] || printf '%s\n' "${MMDEBSTRAP_OPTS[@]}"
  } | sha256sum | cut -c1-16)
  local tarball=$cache/$name.$key.tar import=() change
  for change in "${CHANGES[@]}"; do import+=(--change "$change"); done

  mkdir -p "$cache"
  # One builder per image at a time (two sandboxes may ask at once); the lock goes with us.
  local lock
  exec {lock}>"$cache/$name.lock"
  flock "$lock"
  if [[ -s $tarball ]]; then
    log "importing $TAG (cached $tarball)"
    docker import "${import[@]}" "$tarball" "$TAG" >/dev/null
  else
    log "building $TAG"
    local work=$DIR/build-$name
    mkdir -p "$work"
    if [[ -n $DEBIAN_PACKAGES ]]; then
      command -v mmdebstrap >/dev/null || die "mmdebstrap missing; run '$PROG deps'"
      # The machine's own apt sources (files mmdebstrap reads as mirror arguments); with none,
      # mmdebstrap falls back to Debian's default for the suite.
      local sources=() f hook=()
      for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -s $f ]] && sources+=("$f")
      done
      [[ ! -x $rdir/customize ]] || hook=(--customize-hook="$rdir/customize")
      TMPDIR=$work mmdebstrap "${MMDEBSTRAP_OPTS[@]}" --include="$DEBIAN_PACKAGES" "${hook[@]}" \
        "$DEBIAN_SUITE" "$work/root.tar" "${sources[@]}" >&2 || die "mmdebstrap failed for $name"
    else
      TMPDIR=$work "$rdir/build" "$work/root.tar" || die "$rdir/build failed"
    fi
    docker import "${import[@]}" "$work/root.tar" "$TAG" >/dev/null
    check_image
    # Into the cache (through a name of our own: the cache may be on another filesystem), and
    # out with this image's tarballs of older keys.
    mv "$work/root.tar" "$tarball.$BASHPID"
    mv "$tarball.$BASHPID" "$tarball"
    find "$cache" -maxdepth 1 -name "$name.*.tar*" ! -path "$tarball" -delete
    rm -rf "$work"
  fi
  podman_import "$tarball"
  exec {lock}>&-
}

# Uses the variables of load_image's recipe.
check_image() {
  local c=rodiff-image-check deadline=$((SECONDS + 120))
  docker run -d --network none --name "$c" "$TAG" "${CHECK_RUN[@]}" >/dev/null
  until docker exec "$c" sh -c "$CHECK" >/dev/null 2>&1; do
    if [[ $(docker inspect -f '{{.State.Running}}' "$c") != true ]] || ((SECONDS >= deadline)); then
      docker logs "$c" >&2 2>&1 || true
      die "$TAG does not work ($CHECK_WHAT failed; container log above)"
    fi
    sleep 0.5
  done
  docker rm -f "$c" >/dev/null
  log "built $TAG: $CHECK_WHAT"
}

# ---------------------------------------------------------------------------------------------

(($#)) || usage
sub=$1
shift
case $sub in
deps) cmd_deps "$@" ;;
run) cmd_run "$@" ;;
__inside) inside "$@" ;;
*) usage ;;
esac
