#!/usr/bin/env bash
# scripts/sandbox.sh - throw-away, fully isolated Docker daemons for rodiff's
# integration tests.
#
# Every sandbox is one directory (by default /tmp/rodiff-sb.XXXXXX) that holds
# everything a private dockerd needs: its data root (images, overlay2 layers,
# container state), its exec root (runtime state, including the containerd
# that dockerd starts and manages itself), its API socket, pidfile and log.
# Two sandboxes therefore never share images, containers, containerd state or
# sockets, and tearing one down is "stop its processes, unmount everything
# below the directory, delete the directory".
#
# No image registry is needed (or reachable): test images are built locally,
# from busybox-static and from a Debian root made by mmdebstrap, and loaded
# with `docker import`.
#
# Usage:
#   sandbox.sh deps                       install missing Debian packages
#   sandbox.sh up [DIR]                   start a sandbox, print its DIR
#   sandbox.sh images DIR [NAME[,NAME]...]  build test images (busybox,
#                                         postgres, nginx, redis)
#   sandbox.sh down DIR                   stop a sandbox and delete DIR
#   sandbox.sh containerd DIR             start a standalone containerd in DIR
#                                         (root on a btrfs loop filesystem, so
#                                         the overlayfs and btrfs snapshotters
#                                         work); RODIFF_CONTAINERD=1 makes `up`
#                                         (and `run`) do it; DIR/env then
#                                         exports CONTAINERD_ADDRESS
#
# $RODIFF_STORAGE_DRIVER picks dockerd's storage driver for `up` (default
# overlay2; btrfs puts the data root on a btrfs loop filesystem in DIR; the
# tests use vfs to check that rodiff refuses what it cannot read).
# RODIFF_USERNS_REMAP=1 starts it with --userns-remap=default (dockerd creates
# the host user `dockremap` and its /etc/subuid, /etc/subgid ranges if they
# are missing; its layers then belong to the remapped root).
#   sandbox.sh run [--images LIST] -- CMD...
#                                         up + images + CMD + down; exits with
#                                         CMD's status
#
# Only the sandbox directory goes to stdout (from `up`), so `d=$(sandbox.sh up)`
# works; every other message goes to stderr. Must run as root.
set -euo pipefail

readonly PROG=${0##*/}
# The repository (test tools built into the busybox image live in tests/tools).
REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO_DIR

# Debian packages the sandbox (and rodiff's test-suite) relies on (gcc and
# libc6-dev build the static test tools of the busybox image).
readonly DEPS=(docker.io containerd runc btrfs-progs busybox-static mmdebstrap
  protobuf-compiler python3-venv iproute2 util-linux time gcc libc6-dev)

# Written by `up` into every sandbox directory; `down` refuses to touch a
# directory that lacks it, so a typo cannot `rm -rf` something precious.
readonly MARKER=.rodiff-sandbox

# The longest unix socket paths that end up below DIR are
# DIR/exec/containerd/containerd-debug.sock and .../containerd.sock.ttrpc
# (DIR + 38 bytes); sun_path holds 107 bytes plus the NUL.
readonly MAX_DIR_LEN=64

# Test image names.
readonly BUSYBOX_IMAGE=rodiff-test/busybox:latest
readonly POSTGRES_IMAGE=rodiff-demo/postgres:15
readonly NGINX_IMAGE=rodiff-demo/nginx:bookworm
readonly REDIS_IMAGE=rodiff-demo/redis:bookworm
# The Debian-package images (postgres, nginx, redis) are made by mmdebstrap;
# suite, variant, packages, options and scripts are their cache key.
readonly DEBIAN_SUITE=bookworm
readonly DEBIAN_VARIANT=apt
readonly PG_PACKAGES=postgresql-15
# curl: the workload tests fetch pages from inside the container.
readonly NGINX_PACKAGES=nginx-light,curl
readonly REDIS_PACKAGES=redis-server
# Further mmdebstrap options (also part of the cache key):
#  - keep /run: mmdebstrap empties it by default, but the services put their
#    sockets and pid files in /run/<service>, which must exist and belong to
#    the service's user (each hook removes everything else below /run but
#    /run/lock, as a Debian base image has it);
#  - leave out documentation, man pages and translations (smaller image).
readonly DEBIAN_MMDEBSTRAP_OPTS=(
  --skip=cleanup/run
  --dpkgopt=path-exclude=/usr/share/doc/*
  --dpkgopt=path-include=/usr/share/doc/*/copyright
  --dpkgopt=path-exclude=/usr/share/man/*
  --dpkgopt=path-exclude=/usr/share/info/*
  --dpkgopt=path-exclude=/usr/share/locale/*
)

# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

usage() {
  cat >&2 <<EOF
usage: $PROG deps
       $PROG up [DIR]
       $PROG images DIR [busybox|postgres|nginx|redis[,...]]   (busybox is always built)
       $PROG down DIR
       $PROG containerd DIR                        (standalone containerd in DIR)
       $PROG run [--images LIST] -- CMD [ARG...]   (LIST default: busybox)
EOF
  exit 2
}

need_root() {
  [[ $(id -u) -eq 0 ]] || die "must run as root (dockerd, mounts, mmdebstrap)"
}

# Absolute path of $1 without requiring it to exist (no symlink games: the
# marker check and /proc matching must see the same spelling every time).
abs_path() {
  local p=$1
  [[ $p == /* ]] || p="$PWD/$p"
  # Squeeze duplicate slashes and drop a trailing slash.
  p=$(printf '%s' "$p" | tr -s /)
  [[ $p == / ]] || p=${p%/}
  printf '%s\n' "$p"
}

is_sandbox() { [[ -f "$1/$MARKER" ]]; }

# Point the docker CLI at sandbox $1 only (ignore contexts / TLS settings that
# might be in the caller's environment).
use_sandbox() {
  unset DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH
  export DOCKER_HOST="unix://$1/docker.sock"
}

# The NUL-separated command line of process $1, joined by spaces, in REPLY.
# Pure bash (no fork) so that scanning /proc does not create processes whose
# command line is our own (and which would therefore match the sandbox DIR).
read_cmdline() {
  local -a argv=()
  REPLY=
  [[ -r /proc/$1/cmdline ]] || return 1
  mapfile -d '' argv <"/proc/$1/cmdline" 2>/dev/null || return 1
  REPLY="${argv[*]}"
}

# Parent pid of $1 in REPLY (field 4 of /proc/PID/stat; field 2 may contain
# spaces, so cut after the last ')').
read_ppid() {
  local stat rest
  REPLY=
  read -r stat <"/proc/$1/stat" 2>/dev/null || return 1
  rest=${stat##*) }
  read -r _ REPLY _ <<<"$rest"
}

# ---------------------------------------------------------------------------
# deps
# ---------------------------------------------------------------------------

cmd_deps() {
  local pkg missing=()
  for pkg in "${DEPS[@]}"; do
    # `dpkg -s` also succeeds for removed-but-not-purged packages, so look at
    # the status line rather than just the exit code.
    if ! dpkg -s "$pkg" 2>/dev/null | grep -x 'Status: install ok installed' >/dev/null; then
      missing+=("$pkg")
    fi
  done
  ((${#missing[@]})) || return 0
  need_root
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update >&2
  apt-get install -y "${missing[@]}" >&2
}

# ---------------------------------------------------------------------------
# up
# ---------------------------------------------------------------------------

check_dir_len() {
  ((${#1} <= MAX_DIR_LEN)) ||
    die "$1 is too long (${#1} > $MAX_DIR_LEN bytes): unix socket paths below it would exceed 108 bytes"
}

cmd_up() {
  need_root
  local dir
  if (($# > 1)); then usage; fi
  if (($# == 1)); then
    dir=$(abs_path "$1")
    check_dir_len "$dir"
    mkdir -p "$dir"
    # Accept an empty directory or a sandbox that is down; never take over a
    # random non-empty directory (down would delete it).
    if ! is_sandbox "$dir" && [[ -n $(ls -A "$dir") ]]; then
      die "$dir is not empty and not a sandbox"
    fi
    if is_sandbox "$dir" && [[ -S $dir/docker.sock ]] && sandbox_dockerd_pid "$dir" >/dev/null; then
      die "sandbox $dir is already up"
    fi
  else
    dir=$(mktemp -d /tmp/rodiff-sb.XXXXXX)
  fi
  command -v dockerd >/dev/null || die "dockerd not found; run '$PROG deps' first"

  # Marker first, so that `down` can clean up a half-started sandbox.
  printf 'rodiff sandbox created %s by pid %s\n' "$(date -u +%FT%TZ)" "$$" >"$dir/$MARKER"
  chmod 0711 "$dir"
  # The data root: a directory of DIR, or for the btrfs driver the top of a
  # btrfs filesystem made on a loop file in DIR (helper snapshots then go to
  # DIR/docker-btrfs/.rodiff-snapshots, outside dockerd's data root).
  local data=$dir/data
  if [[ ${RODIFF_STORAGE_DRIVER:-overlay2} == btrfs ]]; then
    data=$(make_btrfs "$dir/docker-btrfs" 8G)/data
  fi
  mkdir -p "$data" "$dir/exec"
  # The sandbox's own daemon config, so that a host /etc/docker/daemon.json
  # cannot change (or conflict with) its settings. The only entry keeps
  # dockerd 20.10's "trust key" (libtrust) in DIR: it defaults to
  # /etc/docker/key.json, shared by every dockerd (there is no command line
  # flag for it, only this config key).
  printf '{ "deprecated-key-path": "%s/key.json" }\n' "$dir" >"$dir/daemon.json"

  # dockerd starts and supervises its own containerd when no --containerd
  # address is given; that containerd keeps its state under the exec root
  # (DIR/exec/containerd) and data root (DIR/data/containerd), so sandboxes
  # share nothing.
  # setsid: own session, so a Ctrl-C aimed at the caller's terminal does not
  # kill dockerd behind `down`'s back.
  local extra=()
  if [[ ${RODIFF_USERNS_REMAP:-0} == 1 ]]; then
    extra+=(--userns-remap=default)
  fi
  log "starting dockerd in $dir"
  setsid dockerd \
    --config-file "$dir/daemon.json" \
    --data-root "$data" \
    --exec-root "$dir/exec" \
    --pidfile "$dir/dockerd.pid" \
    --host "unix://$dir/docker.sock" \
    --iptables=false --ip6tables=false --bridge=none \
    --storage-driver "${RODIFF_STORAGE_DRIVER:-overlay2}" \
    "${extra[@]}" \
    </dev/null >"$dir/dockerd.log" 2>&1 &
  local launcher=$!
  printf '%s\n' "$launcher" >"$dir/dockerd.launch-pid"

  # Wait for the API. Give up early if dockerd died.
  local deadline=$((SECONDS + 60)) ok=0
  while ((SECONDS < deadline)); do
    if docker -H "unix://$dir/docker.sock" version >/dev/null 2>&1; then
      ok=1
      break
    fi
    kill -0 "$launcher" 2>/dev/null || break
    sleep 0.5
  done
  if ((!ok)); then
    log "dockerd did not come up; last lines of $dir/dockerd.log:"
    tail -n 40 "$dir/dockerd.log" >&2 || true
    cmd_down "$dir" || true
    exit 1
  fi

  {
    printf 'export DOCKER_HOST=%q\n' "unix://$dir/docker.sock"
    printf 'export RODIFF_SANDBOX=%q\n' "$dir"
  } >"$dir/env"
  if [[ ${RODIFF_CONTAINERD:-0} == 1 ]] && ! start_containerd "$dir"; then
    cmd_down "$dir" || true
    exit 1
  fi
  log "sandbox up: $dir (source $dir/env)"
  printf '%s\n' "$dir"
}

# Print the pid of the sandbox's dockerd if it is alive (pidfile written by
# dockerd, falling back to the pid `up` launched), after checking that the
# pid really is a dockerd of this sandbox (pids get reused).
sandbox_dockerd_pid() {
  local dir=$1 f pid
  for f in "$dir/dockerd.pid" "$dir/dockerd.launch-pid"; do
    [[ -r $f ]] || continue
    read -r pid <"$f" || continue
    [[ $pid =~ ^[0-9]+$ ]] || continue
    read_cmdline "$pid" || continue
    if [[ $REPLY == *dockerd* && $REPLY == *"$dir/"* ]]; then
      printf '%s\n' "$pid"
      return 0
    fi
  done
  return 1
}

# ---------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------

cmd_images() {
  need_root
  (($# >= 1)) || usage
  local dir
  dir=$(abs_path "$1")
  shift
  is_sandbox "$dir" || die "$dir is not a sandbox"
  use_sandbox "$dir"
  docker version >/dev/null 2>&1 || die "sandbox $dir is not running"

  # Names may be given as several arguments and/or comma-separated.
  local name names=() debian=()
  IFS=', ' read -r -a names <<<"$*"
  for name in "${names[@]}"; do
    case $name in
    busybox) ;;
    postgres | nginx | redis) debian+=("$name") ;;
    *) die "unknown image '$name' (known: busybox, postgres, nginx, redis)" ;;
    esac
  done

  build_busybox "$dir"
  for name in "${debian[@]}"; do
    "build_$name"
  done
  if sandbox_containerd_pid "$dir" >/dev/null; then
    local ns
    for ns in default k8s.io; do
      ctrd_import "$dir" "$ns" "$BUSYBOX_IMAGE"
    done
    log "imported $BUSYBOX_IMAGE into containerd (namespaces default, k8s.io)"
  fi
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# rodiff-test/busybox:latest: a tiny root file system around busybox-static,
# plus fixed files that the diff tests modify, delete and rename, and
# /bin/tmpfile-holder (tests/tools/tmpfile-holder.c).
build_busybox() {
  local dir=$1
  if image_exists "$BUSYBOX_IMAGE"; then
    log "$BUSYBOX_IMAGE already present"
    return 0
  fi
  [[ -x /bin/busybox ]] || die "/bin/busybox missing; run '$PROG deps' (busybox-static)"
  # It must be the static build: the image has no libc.
  if ldd /bin/busybox >/dev/null 2>&1; then
    die "/bin/busybox is dynamically linked; install busybox-static"
  fi

  log "building $BUSYBOX_IMAGE"
  local work root applet
  work=$(mktemp -d "$dir/build.XXXXXX")
  root=$work/root
  mkdir -p "$root/bin"
  cp /bin/busybox "$root/bin/busybox"
  chmod 0755 "$root/bin/busybox"
  while read -r applet; do
    [[ -n $applet && $applet != busybox && $applet != */* ]] || continue
    ln -s busybox "$root/bin/$applet"
  done < <(/bin/busybox --list)

  mkdir -p "$root"/{etc,root,home,var/log,usr/share/doc/pkg,proc,sys,dev}
  install -d -m 1777 "$root/tmp" "$root/var/tmp"
  chmod 0700 "$root/root"

  cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
  cat >"$root/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
EOF
  printf 'rodiff test image: busybox-static plus diff-test fixtures in /srv\n' \
    >"$root/usr/share/doc/pkg/README"
  printf 'Busybox is licensed under the GNU GPL version 2.\n' >"$root/usr/share/doc/pkg/copyright"

  # Fixture files for the diff tests:
  #   data/   files to modify / append to / chmod
  #   tree/   a deep path (copy-up of parents)
  #   del/    files to delete (whiteouts)
  #   ren/    a file to rename; rendir/ a directory to rename (overlayfs
  #           copies it up whole, or uses redirect_dir where enabled)
  mkdir -p "$root"/srv/{data,tree/x/y,del,ren,rendir/inner}
  printf 'alpha\n' >"$root/srv/data/a.txt"
  printf 'bravo\n' >"$root/srv/data/b.txt"
  printf 'charlie\n' >"$root/srv/data/c.txt"
  printf 'deep\n' >"$root/srv/tree/x/y/z.txt"
  printf 'one\n' >"$root/srv/del/1"
  printf 'two\n' >"$root/srv/del/2"
  printf 'three\n' >"$root/srv/del/3"
  printf 'rename me\n' >"$root/srv/ren/file"
  printf 'inner\n' >"$root/srv/rendir/inner/f"

  # /bin/tmpfile-holder: writes that leave no name (O_TMPFILE, unlinked
  # files held open) for the live-evidence tests; static, as the image has
  # no libc.
  command -v gcc >/dev/null || die "gcc missing; run '$PROG deps' (gcc, libc6-dev)"
  gcc -static -O2 -Wall -Wextra -Werror -o "$root/bin/tmpfile-holder" \
    "$REPO_DIR/tests/tools/tmpfile-holder.c" ||
    die "cannot build tests/tools/tmpfile-holder.c (static: needs libc6-dev)"

  tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$work/x.tar" .
  docker import -c 'CMD ["/bin/sh"]' "$work/x.tar" "$BUSYBOX_IMAGE" >/dev/null
  rm -rf "$work"

  # Smoke test: the image runs without any network.
  docker run --rm --network none "$BUSYBOX_IMAGE" /bin/sh -c \
    'test -f /srv/rendir/inner/f && tmpfile-holder once /tmp 0 >/dev/null' ||
    die "$BUSYBOX_IMAGE does not run"
  log "built $BUSYBOX_IMAGE"
}

# Entry point of the postgres image: initdb an empty $PGDATA, then run the
# server on its unix socket only.
pg_start_script() {
  cat <<'EOF'
#!/bin/sh
# Entry point of rodiff-demo/postgres:15 (written by rodiff's scripts/sandbox.sh).
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA
if [ ! -d "$PGDATA" ] || [ -z "$(ls -A "$PGDATA")" ]; then
    mkdir -p "$PGDATA"
    chmod 0700 "$PGDATA"
    initdb --pgdata="$PGDATA" --username=postgres --auth=trust \
        --encoding=UTF8 --locale=C
fi
exec postgres -D "$PGDATA" -c listen_addresses=''
EOF
}

# mmdebstrap customize hook (run on the host with the chroot as $1): make the
# tree ready for `docker import` as the postgres image.
pg_hook_script() {
  cat <<'EOF'
#!/bin/sh
set -eu
root=$1
# postgresql-15's postinst creates a "main" cluster; the image initdb's
# $PGDATA itself on first start, so drop it to keep the image small.
if [ -d "$root/etc/postgresql/15/main" ]; then
    chroot "$root" pg_dropcluster 15 main
fi
# Home of the postgres user (PGDATA lives below it) and the socket directory
# Debian's postgres uses (/var/run/postgresql; /var/run -> /run).
chroot "$root" install -d -o postgres -g postgres -m 0755 /var/lib/postgresql
# mmdebstrap runs with --skip=cleanup/run so that this survives; empty the
# rest of /run as mmdebstrap would have done.
find "$root/run" -mindepth 1 -maxdepth 1 ! -name lock ! -name postgresql \
    -exec rm -rf {} +
chroot "$root" install -d -o postgres -g postgres -m 2775 /var/run/postgresql
install -d -m 0755 "$root/usr/local/bin"
install -m 0755 "$(dirname "$0")/pg-start" "$root/usr/local/bin/pg-start"
# apt's package lists are useless in the image.
rm -rf "$root"/var/lib/apt/lists/*
EOF
}

cache_dir() {
  printf '%s\n' "${RODIFF_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/rodiff}/images"
}

# The postgres image's scripts: printed (the cache key), or written into DIR.
pg_scripts() {
  if (($#)); then
    pg_start_script >"$1/pg-start"
    pg_hook_script >"$1/hook.sh"
    chmod 0755 "$1/pg-start" "$1/hook.sh"
  else
    pg_start_script
    pg_hook_script
  fi
}

build_postgres() {
  build_debian_image "$POSTGRES_IMAGE" postgres-15 "$PG_PACKAGES" pg_scripts \
    'test "$(psql -Atqc "select 1")" = 1' "psql 'select 1' over the unix socket" \
    -c 'USER postgres' \
    -c 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENV PGDATA=/var/lib/postgresql/data' \
    -c 'CMD ["/usr/local/bin/pg-start"]'
}

# mmdebstrap customize hook of the nginx image: Debian's default site (the
# welcome page on port 80, IPv4 only: a container without network may have no
# IPv6 loopback), /run as a Debian base image has it.
nginx_hook_script() {
  cat <<'EOF'
#!/bin/sh
set -eu
root=$1
sed -i '/listen \[::\]/d' "$root/etc/nginx/sites-available/default"
find "$root/run" -mindepth 1 -maxdepth 1 ! -name lock -exec rm -rf {} +
rm -rf "$root"/var/lib/apt/lists/*
EOF
}

# The nginx image's scripts: printed (the cache key), or written into DIR.
nginx_scripts() {
  if (($#)); then
    nginx_hook_script >"$1/hook.sh"
    chmod 0755 "$1/hook.sh"
  else
    nginx_hook_script
  fi
}

build_nginx() {
  build_debian_image "$NGINX_IMAGE" nginx "$NGINX_PACKAGES" nginx_scripts \
    'curl -fsS http://127.0.0.1/ | grep -q "Welcome to nginx"' "curl fetches the welcome page" \
    -c 'CMD ["nginx", "-g", "daemon off;"]'
}

# mmdebstrap customize hook of the redis image: Debian's redis-server, run in
# the foreground as user redis, with its pid file and unix socket in
# /run/redis (made here as systemd's RuntimeDirectory= would), its log in
# /var/log/redis (redis:adm 2750) and its data in /var/lib/redis.
redis_hook_script() {
  cat <<'EOF'
#!/bin/sh
set -eu
root=$1
conf=$root/etc/redis/redis.conf
sed -i -e 's/^daemonize .*/daemonize no/' -e 's/^supervised .*/supervised no/' \
    -e 's|^# *unixsocket .*|unixsocket /run/redis/redis-server.sock|' \
    -e 's/^# *unixsocketperm .*/unixsocketperm 770/' \
    -e 's/^bind .*/bind 127.0.0.1/' "$conf"
grep -q '^unixsocket /run/redis/redis-server.sock' "$conf"
find "$root/run" -mindepth 1 -maxdepth 1 ! -name lock -exec rm -rf {} +
chroot "$root" install -d -o redis -g redis -m 2755 /run/redis
rm -rf "$root"/var/lib/apt/lists/*
EOF
}

# The redis image's scripts: printed (the cache key), or written into DIR.
redis_scripts() {
  if (($#)); then
    redis_hook_script >"$1/hook.sh"
    chmod 0755 "$1/hook.sh"
  else
    redis_hook_script
  fi
}

build_redis() {
  build_debian_image "$REDIS_IMAGE" redis "$REDIS_PACKAGES" redis_scripts \
    'test "$(redis-cli -s /run/redis/redis-server.sock ping)" = PONG' "redis-cli ping over the unix socket" \
    -c 'USER redis' \
    -c 'CMD ["redis-server", "/etc/redis/redis.conf"]'
}

# debian_tarball NAME PACKAGES SCRIPTS: build (or take from the cache) the
# root tarball of a Debian-package image and print its path. `SCRIPTS DIR`
# writes DIR/hook.sh (mmdebstrap's customize hook) and the files it installs;
# `SCRIPTS` alone prints them (part of the cache key).
debian_tarball() {
  local name=$1 packages=$2 scripts=$3 cache key tarball
  cache=$(cache_dir)
  mkdir -p "$cache"
  # Keyed by what goes into the tarball: suite, variant, package list and the
  # scripts added on top. Change any of them and a new tarball is made.
  key=$({
    printf 'suite=%s variant=%s packages=%s arch=%s\n' \
      "$DEBIAN_SUITE" "$DEBIAN_VARIANT" "$packages" "$(dpkg --print-architecture)"
    printf '%s\n' "${DEBIAN_MMDEBSTRAP_OPTS[@]}"
    "$scripts"
  } | sha256sum | cut -c1-16)
  tarball="$cache/$name-$DEBIAN_SUITE-$key.tar"

  # One builder per cache at a time (two sandboxes may ask concurrently).
  exec 9>"$cache/.lock"
  flock 9
  if [[ -s $tarball ]]; then
    log "using cached $tarball"
  else
    log "running mmdebstrap for $name (cold cache, takes a minute or two)"
    local work
    work=$(mktemp -d "$cache/build.XXXXXX")
    "$scripts" "$work"
    # The machine's own apt sources (files mmdebstrap reads as mirror arguments); with none,
    # mmdebstrap falls back to Debian's default for the suite. No host name is written here.
    local sources=()
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
      [[ -s $f ]] && sources+=("$f")
    done
    if ! mmdebstrap --variant="$DEBIAN_VARIANT" --include="$packages" \
      "${DEBIAN_MMDEBSTRAP_OPTS[@]}" \
      --customize-hook="$work/hook.sh" \
      "$DEBIAN_SUITE" "$work/out.tar" "${sources[@]}" >&2; then
      rm -rf "$work"
      exec 9>&-
      die "mmdebstrap failed"
    fi
    mv "$work/out.tar" "$tarball"
    rm -rf "$work"
    # Drop this image's tarballs made under older keys.
    find "$cache" -maxdepth 1 -name "$name-$DEBIAN_SUITE-*.tar" ! -path "$tarball" -delete
  fi
  exec 9>&-
  printf '%s\n' "$tarball"
}

# build_debian_image IMAGE NAME PACKAGES SCRIPTS CHECK WHAT [IMPORT-OPTION...]:
# import the tarball of debian_tarball as IMAGE (with `docker import` options
# such as -c 'CMD [...]'), then check that it works: CHECK (a shell command run
# with docker exec) must succeed within two minutes; WHAT says what it checks.
build_debian_image() {
  local image=$1 name=$2 packages=$3 scripts=$4 check=$5 what=$6
  shift 6
  if image_exists "$image"; then
    log "$image already present"
    return 0
  fi
  command -v mmdebstrap >/dev/null || die "mmdebstrap missing; run '$PROG deps'"
  local tarball
  tarball=$(debian_tarball "$name" "$packages" "$scripts")
  log "importing $image"
  docker import "$@" "$tarball" "$image" >/dev/null
  verify_image "$image" "$check" "$what"
}

# Start IMAGE without network, wait until CHECK succeeds in it, remove the
# container again. A broken image is removed (the next call would skip
# building it).
verify_image() {
  local image=$1 check=$2 what=$3 c="rodiff-image-check-$$" deadline ok=0
  log "verifying $image"
  docker rm -f "$c" >/dev/null 2>&1 || true
  docker run -d --network none --name "$c" "$image" >/dev/null
  deadline=$((SECONDS + 120))
  while ((SECONDS < deadline)); do
    if docker exec "$c" sh -c "$check" >/dev/null 2>&1; then
      ok=1
      break
    fi
    [[ $(docker inspect -f '{{.State.Running}}' "$c" 2>/dev/null) == true ]] || break
    sleep 1
  done
  if ((!ok)); then
    log "$image does not work ($what failed); container log:"
    docker logs "$c" >&2 2>&1 || true
    docker rm -f "$c" >/dev/null 2>&1 || true
    docker rmi "$image" >/dev/null 2>&1 || true
    die "$image verification failed"
  fi
  docker rm -f "$c" >/dev/null
  log "$image works ($what)"
}

# ---------------------------------------------------------------------------
# Loop-mounted btrfs filesystems (generic: any part of a sandbox may use one)
# ---------------------------------------------------------------------------

# make_btrfs PREFIX SIZE: make a btrfs filesystem in the sparse file
# PREFIX.img (SIZE as for truncate, e.g. 4G), mount it on PREFIX (loop
# device with autoclear), and print PREFIX. PREFIX must be below a sandbox
# DIR: `down` unmounts it and detaches its loop device (detach_loops).
make_btrfs() {
  local prefix=$1 size=$2
  command -v mkfs.btrfs >/dev/null || die "mkfs.btrfs missing; run '$PROG deps' (btrfs-progs)"
  truncate -s "$size" "$prefix.img"
  mkfs.btrfs -q "$prefix.img" >&2
  mkdir -p "$prefix"
  mount -o loop "$prefix.img" "$prefix" || die "cannot loop-mount $prefix.img"
  printf '%s\n' "$prefix"
}

# release_btrfs PREFIX: undo make_btrfs (unmount, detach the loop device).
release_btrfs() {
  local prefix=$1
  if mountpoint -q "$prefix" 2>/dev/null; then
    umount "$prefix" 2>/dev/null || umount -l "$prefix" 2>/dev/null || log "warning: cannot unmount $prefix"
  fi
  detach_loops "$prefix.img"
}

# detach_loops PATH: detach every loop device whose backing file is PATH or
# lies below PATH (autoclear does it on the last unmount; a lazy unmount or
# a crash may leave one behind).
detach_loops() {
  local path=$1 dev back
  command -v losetup >/dev/null || return 0
  while read -r dev back; do
    [[ -n $dev ]] || continue
    if [[ $back == "$path" || $back == "$path"/* ]]; then
      losetup -d "$dev" 2>/dev/null || log "warning: cannot detach $dev ($back)"
    fi
  done < <(losetup -l -n -O NAME,BACK-FILE 2>/dev/null || true)
}

# ---------------------------------------------------------------------------
# Standalone containerd (RODIFF_CONTAINERD=1 `up`, or `containerd DIR`)
# ---------------------------------------------------------------------------
#
# DIR/ctrd holds its config, state, socket, pid and log; its root lives on a
# btrfs loop filesystem (DIR/ctrd-btrfs), so that both the overlayfs and the
# btrfs snapshotters work. The CRI plugin is disabled: tests make their "pods"
# themselves (containers with CRI labels in namespace k8s.io). Tests pass
# `ctr run --runc-root DIR/ctrd/runc` so that runc's state stays in DIR too.

ctrd_address() { printf '%s\n' "$1/ctrd/containerd.sock"; }

cmd_containerd() {
  need_root
  (($# == 1)) || usage
  local dir
  dir=$(abs_path "$1")
  is_sandbox "$dir" || die "$dir is not a sandbox"
  start_containerd "$dir"
}

start_containerd() {
  local dir=$1 addr root
  command -v containerd >/dev/null || die "containerd not found; run '$PROG deps'"
  addr=$(ctrd_address "$dir")
  if sandbox_containerd_pid "$dir" >/dev/null; then
    log "containerd already up in $dir"
    return 0
  fi
  mkdir -p "$dir/ctrd/state" "$dir/ctrd/opt" "$dir/ctrd/runc"
  root=$(make_btrfs "$dir/ctrd-btrfs" 4G)/root
  cat >"$dir/ctrd/config.toml" <<CONFIG
version = 2
root = "$root"
state = "$dir/ctrd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$addr"
[ttrpc]
  address = "$addr.ttrpc"
[debug]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/ctrd/opt"
CONFIG
  log "starting containerd in $dir (root on btrfs: $root)"
  setsid containerd --config "$dir/ctrd/config.toml" </dev/null >"$dir/ctrd/containerd.log" 2>&1 &
  local launcher=$!
  printf '%s\n' "$launcher" >"$dir/ctrd/containerd.pid"
  local deadline=$((SECONDS + 30)) ok=0
  while ((SECONDS < deadline)); do
    if [[ -S $addr ]] && ctr -a "$addr" version >/dev/null 2>&1; then
      ok=1
      break
    fi
    kill -0 "$launcher" 2>/dev/null || break
    sleep 0.2
  done
  if ((!ok)); then
    tail -n 30 "$dir/ctrd/containerd.log" >&2 || true
    log "containerd did not come up in $dir"
    return 1
  fi
  {
    printf 'export CONTAINERD_ADDRESS=%q\n' "$addr"
    printf 'export RODIFF_RUNC_ROOT=%q\n' "$dir/ctrd/runc"
  } >>"$dir/env"
  log "containerd up: $addr"
}

# The sandbox containerd's pid, if it is alive and really ours.
sandbox_containerd_pid() {
  local dir=$1 pid
  [[ -r $dir/ctrd/containerd.pid ]] || return 1
  read -r pid <"$dir/ctrd/containerd.pid" || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  read_cmdline "$pid" || return 1
  [[ $REPLY == *containerd* && $REPLY == *"$dir/ctrd/config.toml"* ]] || return 1
  printf '%s\n' "$pid"
}

# ctrd_import DIR NS IMAGE: copy docker image IMAGE from the sandbox dockerd
# into containerd namespace NS.
ctrd_import() {
  local dir=$1 ns=$2 image=$3
  docker save "$image" | ctr -a "$(ctrd_address "$dir")" -n "$ns" images import - >/dev/null ||
    die "cannot import $image into containerd namespace $ns"
}

# Remove every task and container through the API, then stop containerd;
# then clean up what a dead containerd may have left: runc containers and
# shim sockets. `down` unmounts everything below DIR and detaches the loop
# device afterwards.
stop_containerd() {
  local dir=$1 addr pid ns id
  [[ -d $dir/ctrd ]] || return 0
  addr=$(ctrd_address "$dir")
  if pid=$(sandbox_containerd_pid "$dir"); then
    while read -r ns; do
      [[ -n $ns ]] || continue
      while read -r id; do
        [[ -n $id ]] || continue
        timeout 20 ctr -a "$addr" -n "$ns" tasks rm -f "$id" >/dev/null 2>&1 || true
      done < <(timeout 10 ctr -a "$addr" -n "$ns" tasks ls -q 2>/dev/null || true)
      while read -r id; do
        [[ -n $id ]] || continue
        timeout 20 ctr -a "$addr" -n "$ns" containers rm "$id" >/dev/null 2>&1 || true
      done < <(timeout 10 ctr -a "$addr" -n "$ns" containers ls -q 2>/dev/null || true)
    done < <(timeout 10 ctr -a "$addr" namespaces ls -q 2>/dev/null || true)
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone 15 "$pid"; then
      kill -KILL "$pid" 2>/dev/null || true
      wait_gone 5 "$pid" || true
    fi
  fi
  # Containers that outlived containerd: runc keeps them in its root (the
  # tests' DIR/ctrd/runc/NS, or the default /run/containerd/runc/NS).
  local task rel hash rroot
  for task in "$dir"/ctrd/state/io.containerd.runtime.v2.task/*/*; do
    [[ -d $task ]] || continue
    rel=${task#*/io.containerd.runtime.v2.task/}
    ns=${rel%%/*}
    id=${rel#*/}
    for rroot in "$dir/ctrd/runc/$ns" "/run/containerd/runc/$ns"; do
      [[ -d $rroot/$id ]] || continue
      runc --root "$rroot" kill "$id" KILL >/dev/null 2>&1 || true
      runc --root "$rroot" delete --force "$id" >/dev/null 2>&1 || true
    done
    # Shim sockets: /run/containerd/s/sha256(<address>/<ns>/<id>).
    hash=$(printf '%s' "$addr/$rel" | sha256sum | cut -d' ' -f1)
    rm -f "/run/containerd/s/$hash"
  done
}

# ---------------------------------------------------------------------------
# down
# ---------------------------------------------------------------------------

# Pids of processes whose command line mentions the sandbox directory,
# excluding this script and its ancestors (whose command line may well
# contain DIR, e.g. `sandbox.sh down DIR`).
sandbox_pids() {
  local dir=$1 p pid
  local -A skip=()
  p=$BASHPID
  while [[ -n $p && $p != 0 ]]; do
    skip[$p]=1
    read_ppid "$p" || break
    p=$REPLY
  done
  skip[$$]=1
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [[ -z ${skip[$pid]:-} ]] || continue
    read_cmdline "$pid" || continue
    # DIR followed by '/' or a word boundary, so /tmp/rodiff-sb.abc does not
    # match /tmp/rodiff-sb.abcdef.
    if [[ " $REPLY " == *"$dir/"* || " $REPLY " == *" $dir "* || " $REPLY " == *"=$dir "* ]]; then
      printf '%s\n' "$pid"
    fi
  done
}

# Wait up to $1 seconds for all pids in $2... to exit; return 1 if some live.
wait_gone() {
  local secs=$1 pid alive
  shift
  local deadline=$((SECONDS + secs))
  while :; do
    alive=0
    for pid in "$@"; do
      if kill -0 "$pid" 2>/dev/null; then alive=1; fi
    done
    ((alive)) || return 0
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# Mount points at or below $1, deepest first. mountinfo escapes blanks etc.
# as \ooo; printf %b decodes them.
sandbox_mounts() {
  local dir=$1 mp
  local -a fields
  while read -r -a fields; do
    mp=$(printf '%b' "${fields[4]}")
    if [[ $mp == "$dir" || $mp == "$dir"/* ]]; then
      printf '%s\t%s\n' "${#mp}" "$mp"
    fi
  done </proc/self/mountinfo | sort -rn -k1,1 | cut -f2-
}

cmd_down() {
  need_root
  (($# == 1)) || usage
  local dir pid pids
  dir=$(abs_path "$1")
  [[ $dir != / ]] || die "refusing to act on /"
  if [[ ! -e $dir ]]; then
    log "$dir does not exist; nothing to do"
    return 0
  fi
  is_sandbox "$dir" || die "$dir is not a rodiff sandbox (no $MARKER); refusing to touch it"
  log "tearing down $dir"

  # 1. Remove the containers through the API while dockerd still runs: this
  #    stops them cleanly and unmounts their layers.
  if [[ -S $dir/docker.sock ]] && sandbox_dockerd_pid "$dir" >/dev/null; then
    local ids
    ids=$(timeout 30 docker -H "unix://$dir/docker.sock" ps -aq 2>/dev/null) || true
    if [[ -n $ids ]]; then
      # shellcheck disable=SC2086 # one id per word
      timeout 60 docker -H "unix://$dir/docker.sock" rm -f $ids >/dev/null 2>&1 || true
    fi
  fi

  # 1b. The standalone containerd, if the sandbox has one: its containers,
  #     the daemon, leftover runc containers and shim sockets.
  stop_containerd "$dir"

  # 2. Stop dockerd (it stops its containerd on the way out): TERM, up to
  #    20 s, then KILL.
  if pid=$(sandbox_dockerd_pid "$dir"); then
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone 20 "$pid"; then
      log "dockerd $pid ignored TERM for 20 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      wait_gone 5 "$pid" || true
    fi
  fi

  # 3. Containers that outlived dockerd (half-started or killed sandbox):
  #    runc keeps their state below the exec root.
  #    (dockerd 20.10 passes runc --root DIR/exec/runtime-runc/moby.)
  local rroot id
  for rroot in "$dir"/exec/runtime-*/moby; do
    [[ -d $rroot ]] || continue
    while read -r id; do
      [[ -n $id ]] || continue
      runc --root "$rroot" kill "$id" KILL >/dev/null 2>&1 || true
      runc --root "$rroot" delete --force "$id" >/dev/null 2>&1 || true
    done < <(runc --root "$rroot" list -q 2>/dev/null || true)
  done

  # 4. Anything else still running with DIR in its command line: the managed
  #    containerd, containerd-shims, ... TERM first, KILL after 5 s.
  mapfile -t pids < <(sandbox_pids "$dir")
  if ((${#pids[@]})); then
    log "stopping leftover processes: ${pids[*]}"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    if ! wait_gone 5 "${pids[@]}"; then
      kill -KILL "${pids[@]}" 2>/dev/null || true
      wait_gone 5 "${pids[@]}" || log "warning: some processes survived KILL: ${pids[*]}"
    fi
  fi

  # 4b. containerd 1.6 keeps each shim's socket outside DIR, in
  #     /run/containerd/s/sha256(<containerd address>/<namespace>/<id>). A
  #     shim that got TERM removes it; one that needed KILL does not.
  local task hash
  for task in "$dir"/exec/containerd/daemon/io.containerd.runtime.v2.task/*/*; do
    [[ -d $task ]] || continue
    hash=$(printf '%s' "$dir/exec/containerd/containerd.sock/${task#*/io.containerd.runtime.v2.task/}" |
      sha256sum | cut -d' ' -f1)
    rm -f "/run/containerd/s/$hash"
  done

  # 5. Unmount everything below DIR, deepest first; lazily if busy. Repeat a
  #    few times in case unmounting uncovers further mounts.
  local mp pass mps
  for pass in 1 2 3 4 5; do
    mapfile -t mps < <(sandbox_mounts "$dir")
    ((${#mps[@]})) || break
    for mp in "${mps[@]}"; do
      umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null ||
        log "warning: cannot unmount $mp (pass $pass)"
    done
  done

  # 5b. Loop devices backed by files in DIR (make_btrfs).
  detach_loops "$dir"

  # 6. Delete the directory; --one-file-system so that a mount we failed to
  #    remove is never descended into.
  if ! rm -rf --one-file-system "$dir"; then
    die "could not remove $dir completely"
  fi
  log "removed $dir"
}

# ---------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------

cmd_run() {
  need_root
  local images=busybox
  while (($#)); do
    case $1 in
    --images)
      (($# >= 2)) || usage
      images=$2
      shift 2
      ;;
    --images=*)
      images=${1#--images=}
      shift
      ;;
    --)
      shift
      break
      ;;
    *) usage ;;
    esac
  done
  (($#)) || usage

  # Create the directory here, so the cleanup trap knows it even if `up` is
  # interrupted half-way.
  local dir
  dir=$(mktemp -d /tmp/rodiff-sb.XXXXXX)
  # shellcheck disable=SC2064 # expand $dir now
  trap "rc=\$?; trap - EXIT INT TERM; cmd_down '$dir' || true; exit \$rc" EXIT
  trap 'run_interrupted 130' INT
  trap 'run_interrupted 143' TERM

  cmd_up "$dir" >/dev/null
  cmd_images "$dir" "$images"

  # CMD runs in the background and we `wait` for it: bash runs traps only
  # between commands, so with CMD in the foreground a TERM would be acted on
  # only after CMD finished by itself. `0<&0` keeps CMD's stdin (background
  # jobs get /dev/null otherwise).
  local rc=0
  (
    # shellcheck source=/dev/null
    . "$dir/env"
    # A sandbox that CMD (a test) starts asks for its own containerd.
    unset RODIFF_CONTAINERD
    exec "$@"
  ) 0<&0 &
  RUN_CHILD=$!
  wait "$RUN_CHILD" || rc=$?
  RUN_CHILD=
  exit "$rc"
}

# INT/TERM during `run`: pass TERM on to CMD (a background job ignores INT),
# give it 10 s to finish, then exit; the EXIT trap tears the sandbox down.
RUN_CHILD=
run_interrupted() {
  log "interrupted; stopping CMD and tearing down"
  if [[ -n $RUN_CHILD ]]; then
    kill -TERM "$RUN_CHILD" 2>/dev/null || true
    wait_gone 10 "$RUN_CHILD" || kill -KILL "$RUN_CHILD" 2>/dev/null || true
  fi
  exit "$1"
}

# ---------------------------------------------------------------------------

main() {
  (($#)) || usage
  local sub=$1
  shift
  case $sub in
  deps) cmd_deps "$@" ;;
  up) cmd_up "$@" ;;
  images) cmd_images "$@" ;;
  down) cmd_down "$@" ;;
  containerd) cmd_containerd "$@" ;;
  run) cmd_run "$@" ;;
  -h | --help | help) usage ;;
  *) usage ;;
  esac
}

main "$@"
