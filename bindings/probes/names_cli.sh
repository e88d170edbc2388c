#!/usr/bin/env bash
# bindings/probes/names_cli.sh: does the CLI resolve the same non-names as rodiff_diff (names.c)?
#   cargo build && scripts/sandbox.sh run --images busybox -- bindings/probes/names_cli.sh
# Exit 0 when no path-like name reaches another container.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
R=$ROOT/target/${RODIFF_PROFILE:-debug}/rodiff
c=probe-cli-corpus-$$
docker run -d --network none --name "$c" rodiff-test/busybox:latest sh -c 'echo hi > /srv/x; exec sleep 600' >/dev/null
sleep 1
fail=0
for name in "x/../$c" "../containers/$c" "$c/json?" "%2e%2e/containers/$c" "../../version?"; do
  if out=$("$R" diff "$name" 2>&1); then
    echo "CLI: '$name' -> success: $(echo "$out" | tr '\n' ' ' | cut -c1-120)"; fail=1
  else
    echo "CLI: '$name' -> error: $(echo "$out" | head -1 | cut -c1-160)"
  fi
done
docker rm -f "$c" >/dev/null
exit $fail
