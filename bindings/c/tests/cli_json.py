#!/usr/bin/env python3
"""Reads `rodiff diff --format json` on stdin and prints each change as the C tests print a
rodiff_change (tests/c/check.h, check_print_change): kind, type, path bytes in hex, mode (octal),
uid, gid, size, mtime (seconds.nanoseconds, exactly as printed: the numbers are not parsed as
floats), mountpoint, container."""
import json
import sys

for c in json.loads(sys.stdin.read(), parse_float=str, parse_int=str):
    path = c["path"]
    raw = path.encode("utf-8", "surrogateescape") if isinstance(path, str) else bytes(int(b) for b in path)
    meta = "- - - - -"
    if "mode" in c:
        meta = f"{int(c['mode']):o} {c['uid']} {c['gid']} {c['size']} {c['mtime']}"
    print(f"{c['kind']} {c['type']} {raw.hex()} {meta} {'mountpoint' if c.get('mountpoint') else '-'} {c.get('container', '-')}")
