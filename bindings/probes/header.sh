#!/usr/bin/env bash
# bindings/probes/header.sh: include/rodiff.h under other language modes, and whether the header
# test (bindings/c/tests/header.rs) catches a stale header. No sandbox needed:
#   bindings/probes/header.sh
# Prints a verdict per check; exits non-zero if the stale-header test misses an edit (the C89 /
# C++98 lines are informational: the issue asks for C11).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
T=$(mktemp -d)
printf '#include "rodiff.h"\nint main(void) { return rodiff_version() == 0; }\n' >"$T/h.c"
cp "$T/h.c" "$T/h.cc"
for mode in "gcc -std=c89" "gcc -std=c99" "gcc -std=c11" "gcc -std=c17" "g++ -std=c++98" "g++ -std=c++11" "g++ -std=c++17"; do
  src=$T/h.c; [[ $mode == g++* ]] && src=$T/h.cc
  if err=$($mode -Wall -Wextra -Werror -pedantic -Iinclude -fsyntax-only "$src" 2>&1); then
    echo "header: $mode -pedantic -Werror: ok"
  else
    echo "header: $mode -pedantic -Werror: FAILS: $(echo "$err" | grep -m2 error | tr '\n' ' ')"
  fi
done
command -v clang >/dev/null || echo "header: clang not installed (not checked)"
fail=0
check_stale() { # DESCRIPTION: the header test must fail after the edit made just before
  if cargo test -q -p rodiff-c --test header >"$T/out" 2>&1; then
    echo "stale header NOT caught: $1"; fail=1
  else
    echo "stale header caught: $1"
  fi
  git checkout -q -- bindings/c/src include
}
sed -i 's|/// Frees a string rodiff returned (NULL is fine).|/// Frees a string rodiff returned (NULL is fine!).|' bindings/c/src/lib.rs
check_stale "a doc comment edited in lib.rs"
sed -i 's|Frees a string rodiff returned (NULL is fine).|Frees a string rodiff returned (NULL is OK).|' include/rodiff.h
check_stale "a doc comment edited in rodiff.h"
sed -i 's|RODIFF_OTHER = 103,|RODIFF_OTHER = 104,|' include/rodiff.h
check_stale "an enum value edited in rodiff.h"
printf '\n' >>include/rodiff.h
check_stale "a trailing newline added to rodiff.h"
rm -rf "$T"
exit $fail
