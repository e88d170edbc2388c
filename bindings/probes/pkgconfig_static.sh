#!/usr/bin/env bash
# bindings/probes/pkgconfig_static.sh: after `make install PREFIX=...`, does
# `pkg-config --static --libs rodiff` give a binary that needs no librodiff.so? No sandbox needed:
#   cargo build && bindings/probes/pkgconfig_static.sh
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
P=$(mktemp -d)
make -s -C "$ROOT" install PREFIX="$P" PROFILE=debug >/dev/null
export PKG_CONFIG_PATH=$P/lib/pkgconfig
echo "pkg-config --static --libs rodiff: $(pkg-config --static --libs rodiff)"
gcc -std=c11 -o "$P/ex" "$ROOT/bindings/c/examples/diff.c" $(pkg-config --cflags --static --libs rodiff)
if ldd "$P/ex" | grep -q librodiff.so; then
  echo "FAIL: linked with the flags of pkg-config --static, the binary still needs librodiff.so"; rc=1
else
  echo "ok: static"; rc=0
fi
rm -rf "$P"
exit $rc
