#!/usr/bin/env python3
"""rodiff benchmark: rodiff against `docker diff` and `find` on the same layer, in one run.

Run it through the sandbox (`make bench`), which sets DOCKER_HOST to an isolated dockerd:

    scripts/sandbox.sh run -- python3 bench/bench.py [--runs N]

Cases
  overlay2-100k   a container that wrote 100,000 files (200 directories x 500), stopped.
                  rodiff diff (docker format), docker diff, and find over the upper directory.

Reports medians of N warm runs (after one warm-up each), the ratios, and rodiff's peak memory
(GNU time's max RSS) for the streamed formats (docker, jsonl: the peak must not grow with the number
of changes, so jsonl is measured at 10,000 and 100,000 files) and for json (sorted, so it holds all
changes).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RODIFF = os.environ.get("RODIFF_BIN", os.path.join(ROOT, "target", "release", "rodiff"))
IMAGE = "rodiff-test/busybox:latest"


def sh(*args, **kw):
    return subprocess.run(args, check=True, stdout=subprocess.PIPE, text=True, **kw).stdout.strip()


def timed(argv):
    """Runs argv with stdout to /dev/null; returns its wall time in seconds."""
    start = time.perf_counter()
    if subprocess.run(argv, stdout=subprocess.DEVNULL).returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed")
    return time.perf_counter() - start


def peak_rss_kib(argv):
    """Peak RSS of argv in KiB, measured by GNU time. (A child forked from Python would start with
    Python's own high-water mark, so wait4's ru_maxrss cannot tell.)"""
    out = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, check=True).stderr
    return int(out.strip().splitlines()[-1])


def median_time(argv, runs):
    timed(argv)  # warm-up: caches, daemon connections
    return statistics.median(timed(argv) for _ in range(runs))


def make_container(name, dirs, files):
    script = (
        f"mkdir /w && for d in $(seq {dirs}); do mkdir /w/$d; "
        f"for f in $(seq {files}); do : > /w/$d/$f; done; done"
    )
    sh("docker", "run", "--name", name, "--network", "none", IMAGE, "sh", "-c", script)
    return sh("docker", "inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", name)


def overlay2_case(runs):
    name = f"rodiff-bench-{os.getpid()}"
    small = name + "-10k"
    try:
        print("bench: creating a container that writes 100,000 files …", file=sys.stderr)
        upper = make_container(name, 200, 500)
        make_container(small, 20, 500)
        entries = int(sh("sh", "-c", f"find {upper} | wc -l")) - 1
        results = {
            "rodiff diff": median_time([RODIFF, "diff", name], runs),
            "docker diff": median_time(["docker", "diff", name], runs),
            "find upperdir": median_time(["find", upper], runs),
        }
        rss = {
            "docker format, 100k changes": peak_rss_kib([RODIFF, "diff", name]),
            "jsonl, 10k changes": peak_rss_kib([RODIFF, "diff", small, "--format", "jsonl"]),
            "jsonl, 100k changes": peak_rss_kib([RODIFF, "diff", name, "--format", "jsonl"]),
            "json (sorted), 100k changes": peak_rss_kib([RODIFF, "diff", name, "--format", "json"]),
        }
    finally:
        subprocess.run(["docker", "rm", "-f", name, small], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = results
    return {
        "case": "overlay2-100k",
        "entries_in_upper": entries,
        "runs": runs,
        "median_seconds": {k: round(v, 4) for k, v in r.items()},
        "docker_diff_over_rodiff": round(r["docker diff"] / r["rodiff diff"], 1),
        "rodiff_over_find": round(r["rodiff diff"] / r["find upperdir"], 2),
        "rodiff_peak_rss_kib": rss,
    }


def report(result):
    print(f"\n== {result['case']}: {result['entries_in_upper']} entries in the upper dir, median of {result['runs']} ==")
    for tool, secs in result["median_seconds"].items():
        print(f"  {tool:<16} {secs * 1000:8.1f} ms")
    print(f"  docker diff / rodiff  {result['docker_diff_over_rodiff']:>6}x   (target >= 20x)")
    print(f"  rodiff / find         {result['rodiff_over_find']:>6}    (target <= 1.0)")
    for what, kib in result["rodiff_peak_rss_kib"].items():
        print(f"  rodiff peak RSS, {what:<28} {kib / 1024:6.1f} MiB")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per tool (default 5)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    if not os.environ.get("DOCKER_HOST"):
        sys.exit("bench: DOCKER_HOST is not set; run through `make bench` (scripts/sandbox.sh run -- …)")
    if not os.access(RODIFF, os.X_OK):
        sys.exit(f"bench: {RODIFF} missing; run `cargo build --release`")
    print(f"bench: {os.cpu_count()} CPUs, {sh('uname', '-r')}", file=sys.stderr)
    results = [overlay2_case(args.runs)]
    for r in results:
        report(r)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
