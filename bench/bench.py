#!/usr/bin/env python3
"""rodiff benchmark: rodiff against `docker diff` and `find` on the same layer, in one run.

Run it through the sandbox (`make bench`), which sets DOCKER_HOST to an isolated dockerd:

    scripts/sandbox.sh run -- python3 bench/bench.py [--runs N]

Cases (chosen by the sandbox daemon's storage driver; `make bench` runs both)
  overlay2-100k   a container that wrote 100,000 files (200 directories x 500), stopped.
                  rodiff diff (docker format), docker diff, and find over the upper directory;
                  the same diff through the C ABI (bench/c_diff.c, built with -O2 against
                  target/release/librodiff.a): streamed and as the sorted list, without metadata
                  (paths_only) as the docker format; streamed with metadata against the CLI's jsonl.
                  The same container through the Go package (bindings/go, bench program
                  bindings/go/cmd/godiff, built here with `go build` against the release
                  librodiff.a): Client.Diff (a sorted list with metadata) beside `rodiff diff
                  --format json`, and Client.DiffStream (batches with metadata) beside `--format
                  jsonl`; both again with rodiff.PathsOnly (no stat per entry) beside `rodiff
                  diff`; each a whole process, printing "A /path" lines. Skipped without `go`.
                  The same container through the Python package (bench/pydiff.py, run by the
                  virtualenv `make bench` installs it in, target/python-venv): rodiff.diff() timed
                  inside the process, as a test suite calls it, beside `rodiff diff --format json`
                  (a whole process); with metadata=False beside `rodiff diff`. Skipped without it.
  btrfs-100k      an image of 100,000 files (400 directories x 250) and a running container
                  that changed 6 paths: rodiff diff, docker diff, btrfs subvolume find-new,
                  find over the subvolume; rodiff on the same changes over a 10,000-file image
                  (cost follows the changes, not the image); and rodiff on a container whose
                  application read every file and listed every directory before the same changes.
  containerd-overlayfs-100k   (with the overlay2 case, when the sandbox has a containerd:
                  RODIFF_CONTAINERD=1) a containerd container (overlayfs snapshotter) that wrote
                  100,000 files, stopped: rodiff --runtime containerd diff, find over the upper
                  directory; and rodiff on unchanged containers of both runtimes, i.e. process
                  start plus resolution (socket, RPCs) plus an empty walk.

Every container is measured in the state users have it in: before anything is timed, `docker diff`
and `find` have walked it (as backup tools and scanners do; on btrfs with `relatime` the first read
of a file or listing of a directory rewrites its inode), so no figure depends on the order of the
measurements.

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
LIBRODIFF = os.path.join(ROOT, "target", "release", "librodiff.a")
GO_PACKAGE = os.path.join(ROOT, "bindings", "go")
GODIFF = os.path.join(ROOT, "target", "release", "godiff")
PYTHON = os.environ.get("RODIFF_PYTHON", os.path.join(ROOT, "target", "python-venv", "bin", "python"))


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


def walk_as_users_do(container, tree):
    """`docker diff` and `find` over a container, as users, backup tools and scanners do before
    rodiff runs: on btrfs the first read of each directory rewrites its inode (relatime)."""
    sh("docker", "diff", container)
    sh("find", tree)


def make_container(name, dirs, files):
    script = (
        f"mkdir /w && for d in $(seq {dirs}); do mkdir /w/$d; "
        f"for f in $(seq {files}); do : > /w/$d/$f; done; done"
    )
    sh("docker", "run", "--name", name, "--network", "none", IMAGE, "sh", "-c", script)
    return sh("docker", "inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", name)


def build_c_diff(outdir):
    """bench/c_diff.c, linked statically against the release librodiff.a; its path."""
    exe = os.path.join(outdir, "c_diff")
    sh("gcc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-I", os.path.join(ROOT, "include"),
       os.path.join(ROOT, "bench", "c_diff.c"), LIBRODIFF, "-lpthread", "-ldl", "-lm", "-o", exe)
    return exe


def overlay2_case(runs):
    name = f"rodiff-bench-{os.getpid()}"
    small = name + "-10k"
    c_diff = build_c_diff(os.environ.get("RODIFF_SANDBOX", "/tmp"))
    try:
        print("bench: creating a container that writes 100,000 files …", file=sys.stderr)
        upper = make_container(name, 200, 500)
        make_container(small, 20, 500)
        walk_as_users_do(name, upper)
        entries = int(sh("sh", "-c", f"find {upper} | wc -l")) - 1
        results = {
            "rodiff diff": median_time([RODIFF, "diff", name], runs),
            "C ABI, streamed (c_diff)": median_time([c_diff, name, "stream"], runs),
            "C ABI, sorted list (c_diff)": median_time([c_diff, name, "list"], runs),
            "rodiff diff --format jsonl": median_time([RODIFF, "diff", name, "--format", "jsonl"], runs),
            "C ABI, streamed with metadata": median_time([c_diff, name, "stream-metadata"], runs),
            "docker diff": median_time(["docker", "diff", name], runs),
            "find upperdir": median_time(["find", upper], runs),
        }
        # The C program sees the same changes as the CLI.
        if sorted(sh(c_diff, name).splitlines()) != sorted(sh(RODIFF, "diff", name).splitlines()):
            sys.exit("bench: c_diff and rodiff diff disagree")
        godiff = build_godiff()
        if godiff:
            results.update({
                "rodiff diff --format json": median_time([RODIFF, "diff", name, "--format", "json"], runs),
                "Go Client.Diff (godiff)": median_time([godiff, name], runs),
                "Go Client.DiffStream (godiff -stream)": median_time([godiff, "-stream", name], runs),
                "Go DiffStream, PathsOnly (godiff -stream -paths)": median_time([godiff, "-stream", "-paths", name], runs),
                "Go Diff, PathsOnly (godiff -paths)": median_time([godiff, "-paths", name], runs),
            })
        if os.path.exists(PYTHON):
            measured = json.loads(sh(PYTHON, os.path.join(ROOT, "bench", "pydiff.py"), name, str(runs)))
            if measured["changes"] != len(sh(RODIFF, "diff", name).splitlines()):
                sys.exit("bench: rodiff.diff and rodiff diff disagree")
            results.setdefault("rodiff diff --format json", median_time([RODIFF, "diff", name, "--format", "json"], runs))
            results.update({
                "Python rodiff.diff() (in process)": measured["diff"],
                "Python rodiff.diff(metadata=False)": measured["diff_paths_only"],
            })
        else:
            print(f"bench: no {PYTHON}: the Python package is not measured (make bench installs it)", file=sys.stderr)
        rss = {
            "docker format, 100k changes": peak_rss_kib([RODIFF, "diff", name]),
            "jsonl, 10k changes": peak_rss_kib([RODIFF, "diff", small, "--format", "jsonl"]),
            "jsonl, 100k changes": peak_rss_kib([RODIFF, "diff", name, "--format", "jsonl"]),
            "json (sorted), 100k changes": peak_rss_kib([RODIFF, "diff", name, "--format", "json"]),
        }
    finally:
        subprocess.run(["docker", "rm", "-f", name, small], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = results
    ratios = [
        ["docker diff / rodiff", round(r["docker diff"] / r["rodiff diff"], 1), ">= 20"],
        ["rodiff / find", round(r["rodiff diff"] / r["find upperdir"], 2), "<= 1.0"],
        ["C ABI streamed / CLI", round(r["C ABI, streamed (c_diff)"] / r["rodiff diff"], 2), "<= 1.2"],
        ["C ABI sorted list / CLI", round(r["C ABI, sorted list (c_diff)"] / r["rodiff diff"], 2), "-"],
        ["C ABI with metadata / CLI jsonl", round(r["C ABI, streamed with metadata"] / r["rodiff diff --format jsonl"], 2), "<= 1.2"],
    ]
    if "Go Client.Diff (godiff)" in r:
        ratios += [
            ["Go Diff / CLI json", round(r["Go Client.Diff (godiff)"] / r["rodiff diff --format json"], 2), "<= 1.2"],
            ["Go DiffStream / CLI jsonl",
             round(r["Go Client.DiffStream (godiff -stream)"] / r["rodiff diff --format jsonl"], 2), "<= 1.2"],
            ["Go DiffStream PathsOnly / CLI (docker)",
             round(r["Go DiffStream, PathsOnly (godiff -stream -paths)"] / r["rodiff diff"], 2), "<= 1.2"],
            ["Go Diff PathsOnly / CLI (docker)",
             round(r["Go Diff, PathsOnly (godiff -paths)"] / r["rodiff diff"], 2), "-"],
        ]
    if "Python rodiff.diff() (in process)" in r:
        ratios += [
            ["Python rodiff.diff() / CLI json", round(r["Python rodiff.diff() (in process)"] / r["rodiff diff --format json"], 2), "<= 1.3"],
            ["Python metadata=False / CLI (docker)", round(r["Python rodiff.diff(metadata=False)"] / r["rodiff diff"], 2), "-"],
        ]
    return {
        "case": "overlay2-100k",
        "what": f"{entries} entries in the upper dir",
        "runs": runs,
        "median_seconds": {k: round(v, 4) for k, v in r.items()},
        "ratios": ratios,
        "rodiff_peak_rss_kib": rss,
    }


def build_godiff():
    """Builds the Go benchmark program against the release librodiff.a; None without `go`."""
    if subprocess.run(["sh", "-c", "command -v go"], stdout=subprocess.DEVNULL).returncode != 0:
        print("bench: no `go`: the Go package is not measured", file=sys.stderr)
        return None
    sh("go", "build", "-o", GODIFF, "./cmd/godiff", cwd=GO_PACKAGE)
    return GODIFF


def report(result):
    print(f"\n== {result['case']}: {result['what']}, median of {result['runs']} ==")
    for tool, secs in result["median_seconds"].items():
        print(f"  {tool:<48} {secs * 1000:8.1f} ms")
    for label, value, target in result.get("ratios", []):
        print(f"  {label:<48} {value:>8}    (target {target})")
    for what, kib in result.get("rodiff_peak_rss_kib", {}).items():
        print(f"  rodiff peak RSS, {what:<28} {kib / 1024:6.1f} MiB")


def btrfs_subvolumes(name):
    """(container subvolume, parent subvolume) of a container on Docker's btrfs driver."""
    root = sh("docker", "info", "-f", "{{.DockerRootDir}}")
    cid = sh("docker", "inspect", "-f", "{{.Id}}", name)
    ids = os.path.join(root, "image/btrfs/layerdb/mounts", cid)
    read = lambda f: open(os.path.join(ids, f)).read().strip()
    subvolumes = os.path.join(root, "btrfs/subvolumes")
    return os.path.join(subvolumes, read("mount-id")), os.path.join(subvolumes, read("init-id"))


def btrfs_image(tag, dirs, files):
    """An image with dirs x files files (committed from a container), on the btrfs driver."""
    name = f"rodiff-bench-img-{os.getpid()}-{dirs}"
    script = (f"mkdir /img && for d in $(seq {dirs}); do mkdir /img/$d; "
              f"for f in $(seq {files}); do : > /img/$d/$f; done; done")
    sh("docker", "run", "--name", name, "--network", "none", IMAGE, "sh", "-c", script)
    sh("docker", "commit", name, tag)
    sh("docker", "rm", name)


# The six changes of the btrfs case: modify, delete, empty file, new directory, chmod, rename.
SIX_CHANGES = ("echo x >> /img/1/1; rm /img/2/2; : > /img/3/new; mkdir /newdir; "
               "chmod 600 /img/4/4; mv /img/5/5 /img/5/renamed")
# An application that reads every file and lists every directory of its image first.
READ_EVERYTHING = "find /img -type f -exec cat {} + > /dev/null; "


def btrfs_case(runs):
    pid = os.getpid()
    tags = {"100k": f"rodiff-bench/btrfs-100k:{pid}", "10k": f"rodiff-bench/btrfs-10k:{pid}"}
    names = {k: f"rodiff-bench-btrfs-{k}-{pid}" for k in tags}
    reader = f"rodiff-bench-btrfs-reader-{pid}"
    try:
        print("bench: building 100,000- and 10,000-file images on btrfs …", file=sys.stderr)
        btrfs_image(tags["100k"], 400, 250)
        btrfs_image(tags["10k"], 40, 250)
        for k in tags:
            sh("docker", "run", "-d", "--name", names[k], "--network", "none", tags[k],
               "sh", "-c", SIX_CHANGES + "; exec sleep 3600")
        sh("docker", "run", "-d", "--name", reader, "--network", "none", tags["100k"],
           "sh", "-c", READ_EVERYTHING + SIX_CHANGES + "; exec sleep 3600")
        subvolume, parent = btrfs_subvolumes(names["100k"])
        for name in (*names.values(), reader):
            # The last of the six changes is the rename: wait for it (`docker diff` walks too).
            while "/img/5/renamed" not in sh("docker", "diff", name):
                time.sleep(0.5)
            walk_as_users_do(name, btrfs_subvolumes(name)[0])
        shown = sh("btrfs", "subvolume", "show", parent).splitlines()
        init_generation = next(l.split(":")[1].strip() for l in shown if l.strip().startswith("Generation:"))
        results = {
            "rodiff diff (running, frozen)": median_time([RODIFF, "diff", names["100k"]], runs),
            "docker diff": median_time(["docker", "diff", names["100k"]], runs),
            "btrfs subvolume find-new": median_time(["btrfs", "subvolume", "find-new", subvolume, init_generation], runs),
            "find subvolume": median_time(["find", subvolume], runs),
            "rodiff diff, 10k-file image": median_time([RODIFF, "diff", names["10k"]], runs),
            "rodiff diff, app read every file": median_time([RODIFF, "diff", reader], runs),
        }
        lines = sorted(sh(RODIFF, "diff", names["100k"]).splitlines())
        changes = len(lines)
        if sorted(sh(RODIFF, "diff", reader).splitlines()) != lines:
            sys.exit("bench: the container that read every file has another diff than the one that did not")
    finally:
        subprocess.run(["docker", "rm", "-f", *names.values(), reader], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["docker", "rmi", *tags.values()], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = results
    ours = r["rodiff diff (running, frozen)"]
    return {
        "case": "btrfs-100k-image",
        "what": f"image of 100,000 files, container changed 6 paths ({changes} docker-diff lines)",
        "runs": runs,
        "median_seconds": {k: round(v, 4) for k, v in r.items()},
        "ratios": [
            ["docker diff / rodiff", round(r["docker diff"] / ours, 1), ">= 40"],
            ["rodiff / find-new", round(ours / r["btrfs subvolume find-new"], 2), "<= 2.0"],
            ["rodiff 100k / rodiff 10k image", round(ours / r["rodiff diff, 10k-file image"], 2), "<= 1.5"],
            ["rodiff, app read all / rodiff", round(r["rodiff diff, app read every file"] / ours, 2), "-"],
        ],
    }


def ctr(*args, ns="default"):
    return sh("ctr", "-a", os.environ["CONTAINERD_ADDRESS"], "-n", ns, *args)


def containerd_case(runs):
    pid = os.getpid()
    big, empty, docker_empty = (f"rodiff-bench-ctrd-{pid}", f"rodiff-bench-ctrd-empty-{pid}",
                                f"rodiff-bench-docker-empty-{pid}")
    ref = "docker.io/" + IMAGE
    script = "mkdir /w && for d in $(seq 200); do mkdir /w/$d; for f in $(seq 500); do : > /w/$d/$f; done; done"
    ctrd = [RODIFF, "--runtime", "containerd", "diff"]
    try:
        print("bench: creating a containerd container that writes 100,000 files …", file=sys.stderr)
        run = ["run", "--runc-root", os.environ["RODIFF_RUNC_ROOT"], "--snapshotter", "overlayfs", ref]
        ctr(*run, big, "sh", "-c", script)  # in the foreground: stopped when it returns
        ctr(*run, empty, "true")
        sh("docker", "run", "--name", docker_empty, "--network", "none", IMAGE, "true")
        mount = ctr("snapshots", "--snapshotter", "overlayfs", "mounts", "/x", big)
        upper = next(o.split("=", 1)[1] for o in mount.split()[-1].split(",") if o.startswith("upperdir="))
        sh("find", upper)
        walk_as_users_do(docker_empty, "/dev/null")
        entries = int(sh("sh", "-c", f"find {upper} | wc -l")) - 1
        results = {
            "rodiff diff (containerd)": median_time([*ctrd, big], runs),
            "find upperdir": median_time(["find", upper], runs),
            "rodiff, unchanged (containerd)": median_time([*ctrd, empty], runs),
            "rodiff, unchanged (docker)": median_time([RODIFF, "diff", docker_empty], runs),
        }
    finally:
        for name in (big, empty):
            subprocess.run(["ctr", "-a", os.environ["CONTAINERD_ADDRESS"], "-n", "default", "containers", "rm", name],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["docker", "rm", "-f", docker_empty], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = results
    return {
        "case": "containerd-overlayfs-100k",
        "what": f"{entries} entries in the upper dir",
        "runs": runs,
        "median_seconds": {k: round(v, 4) for k, v in r.items()},
        "ratios": [
            ["rodiff / find", round(r["rodiff diff (containerd)"] / r["find upperdir"], 2), "<= 1.0"],
            ["unchanged containerd (ms)", round(r["rodiff, unchanged (containerd)"] * 1000, 1), "< 20"],
        ],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per tool (default 5)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    if not os.environ.get("DOCKER_HOST"):
        sys.exit("bench: DOCKER_HOST is not set; run through `make bench` (scripts/sandbox.sh run -- …)")
    for built in (RODIFF, LIBRODIFF):
        if not os.path.exists(built):
            sys.exit(f"bench: {built} missing; run `cargo build --release`")
    print(f"bench: {os.cpu_count()} CPUs, {sh('uname', '-r')}", file=sys.stderr)
    driver = sh("docker", "info", "-f", "{{.Driver}}")
    cases = {"overlay2": [overlay2_case], "btrfs": [btrfs_case]}.get(driver)
    if cases and driver == "overlay2" and os.environ.get("CONTAINERD_ADDRESS"):
        cases = cases + [containerd_case]
    if not cases:
        sys.exit(f"bench: no benchmark for storage driver {driver}")
    results = [case(args.runs) for case in cases]
    for r in results:
        report(r)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
