"""The Python package's side of bench.py: times `rodiff.diff(CONTAINER)` in this process (one
warm-up call, then the median of RUNS calls), as a test suite calls it; prints JSON
{"diff": seconds, "diff_paths_only": seconds, "changes": n}. Run with the virtualenv's python that
has `pip install ./python` (`make bench` makes it)."""

import json
import statistics
import sys
import time

import rodiff


def median_call(container, runs, **options):
    rodiff.diff(container, **options)  # warm-up: the client's connection, caches
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        changes = rodiff.diff(container, **options)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(changes)


def main():
    container, runs = sys.argv[1], int(sys.argv[2])
    with_metadata, n = median_call(container, runs)
    paths_only, _ = median_call(container, runs, metadata=False)
    print(json.dumps({"diff": with_metadata, "diff_paths_only": paths_only, "changes": n}))


if __name__ == "__main__":
    main()
