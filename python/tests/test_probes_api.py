"""Probes (a reviewer's attempts to break `import rodiff`): hostile names, signals, threads,
trackers, plans. Run in the sandbox like the other tests."""

from __future__ import annotations

import copy
import gc
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import rodiff
from conftest import BUSYBOX, Containers, docker, unique, wait_for


# ---- names ----


@pytest.mark.parametrize(
    "name",
    ["a\nb", "a b", " ", "\t", "x?all=1", "x#y", "../x", "a/b", "%2e%2e", "a\x00b", "\u00e9", "-", "."],
)
def test_odd_names_raise_rodiff_errors(name: str) -> None:
    """Any odd string is either found or a RodiffError/ValueError: no panic, no other exception."""
    with pytest.raises((rodiff.ContainerNotFound, ValueError)) as raised:
        rodiff.diff(name)
    if isinstance(raised.value, rodiff.RodiffError):
        assert raised.value.container == name
        str(raised.value)


def test_bytes_name_that_is_not_utf8() -> None:
    # container_ref accepts bytes (fsdecode); what the extension does with a surrogate.
    with pytest.raises((rodiff.ContainerNotFound, ValueError, TypeError)):
        rodiff.diff(b"\xffname")


def test_ambiguous_id_prefix(containers: Containers) -> None:
    """Two containers whose ids share a prefix: the prefix names neither."""
    ids: dict[str, str] = {}
    while True:
        name = unique("amb")
        containers.names.append(name)
        cid = docker("create", "--network", "none", "--name", name, BUSYBOX, "true").strip()
        if cid[0] in ids:
            prefix = cid[0]
            break
        ids[cid[0]] = cid
    with pytest.raises(rodiff.RodiffError) as raised:
        rodiff.diff(prefix)
    print(type(raised.value).__name__, raised.value.kind, str(raised.value))
    # The runtime answered (it is reachable): there are two such containers. A suite that skips
    # when the runtime is unavailable must not skip on this.
    assert "multiple" in str(raised.value).lower(), str(raised.value)
    assert not isinstance(raised.value, rodiff.RuntimeUnavailable), repr(raised.value)


def test_created_never_started_container(containers: Containers) -> None:
    name = unique("created")
    containers.names.append(name)
    docker("create", "--network", "none", "--name", name, BUSYBOX, "true")
    assert [c for c in rodiff.diff(name) if not c.runtime_made] == []
    plan = rodiff.plan(name)
    assert plan.mounts == []


def test_paused_container(containers: Containers) -> None:
    name = containers.run()
    containers.sh(name, "mkdir -p /srv/p && echo x > /srv/p/f")
    docker("pause", name)
    try:
        assert "/srv/p/f" in {c.path for c in rodiff.diff(name)}
        rodiff.plan(name)
    finally:
        docker("unpause", name)


# ---- exceptions ----


def test_exception_attributes_exist_on_every_instance() -> None:
    """The stub declares kind/code/container on RodiffError: an instance a user (or a mock) makes
    should not raise AttributeError on them."""
    e = rodiff.ContainerNotFound("x")
    assert getattr(e, "kind", "missing") != "missing", "ContainerNotFound('x').kind raises AttributeError"


def test_exceptions_pickle_with_attributes() -> None:
    with pytest.raises(rodiff.ContainerNotFound) as raised:
        rodiff.diff("no-such-container-probe")
    e = pickle.loads(pickle.dumps(raised.value))
    assert type(e) is rodiff.ContainerNotFound
    assert (e.kind, e.code, e.container, e.endpoint) == (
        raised.value.kind, raised.value.code, raised.value.container, raised.value.endpoint)
    assert str(e) == str(raised.value)


def test_changes_copy(containers: Containers) -> None:
    """dataclasses.asdict and copy.deepcopy copy values (a Change is immutable: itself)."""
    name = containers.run()
    containers.sh(name, "echo x > /f")
    changes = rodiff.diff(name)
    errors = []
    for what, fn in (("copy.copy", copy.copy), ("copy.deepcopy", copy.deepcopy)):
        try:
            assert fn(changes[0]) == changes[0]
        except Exception as e:
            errors.append(f"{what}: {type(e).__name__}: {e}")
    assert not errors, errors


# ---- Ctrl-C against a runtime that does not answer ----


@pytest.fixture
def silent_socket(tmp_path: object) -> object:
    """A unix socket that accepts connections and never answers."""
    path = f"{tmp_path}/silent.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(16)
    held: list[socket.socket] = []
    stop = False

    def accept() -> None:
        server.settimeout(0.2)
        while not stop:
            try:
                held.append(server.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield path
    stop = True
    t.join()
    for s in held:
        s.close()
    server.close()


@pytest.mark.parametrize("runtime", ["docker", "containerd"])
def test_ctrl_c_interrupts_a_diff_waiting_for_a_silent_runtime(silent_socket: str, runtime: str) -> None:
    if runtime == "docker":
        client = rodiff.Client(host=f"unix://{silent_socket}", timeout=20)
    else:
        client = rodiff.Client("containerd", address=silent_socket, timeout=20)
    main = threading.get_ident()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Timer(0.5, lambda: signal.pthread_kill(main, signal.SIGINT)).start()
    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            client.diff("web")
    finally:
        signal.signal(signal.SIGINT, previous)
    elapsed = time.monotonic() - t0
    assert elapsed < 3, f"Ctrl-C took {elapsed:.1f} s to interrupt a diff"


def test_timeout_against_a_silent_runtime_is_runtime_unavailable(silent_socket: str) -> None:
    client = rodiff.Client(host=f"unix://{silent_socket}", timeout=0.5)
    t0 = time.monotonic()
    with pytest.raises(rodiff.RodiffError) as raised:
        client.diff("web")
    assert time.monotonic() - t0 < 5
    print(type(raised.value).__name__, raised.value.kind, raised.value)
    assert isinstance(raised.value, rodiff.RuntimeUnavailable), (type(raised.value), str(raised.value))


def test_ctrl_c_during_a_real_diff(containers: Containers) -> None:
    name = containers.run(command=("sh", "-c", "mkdir /w && cd /w && for d in $(seq 30); do mkdir $d; (cd $d && seq 1000 | xargs touch); done; touch /done; sleep 3600"))
    wait_for(name, "/done", timeout=120)
    client = rodiff.Client()
    main = threading.get_ident()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    interrupted = 0
    try:
        for delay in (0.01, 0.05, 0.1, 0.2):
            threading.Timer(delay, lambda: signal.pthread_kill(main, signal.SIGINT)).start()
            try:
                client.diff(name)
                time.sleep(0.5)  # the signal arrived after the diff: let it land here
            except KeyboardInterrupt:
                interrupted += 1
    finally:
        signal.signal(signal.SIGINT, previous)
    # The client still works after being interrupted.
    assert len(client.diff(name)) > 30_000


# ---- threads while the container goes away ----


def test_threads_diff_while_the_container_is_removed(containers: Containers) -> None:
    name = containers.run(command=("sh", "-c", "mkdir /w && cd /w && for d in $(seq 20); do mkdir $d; (cd $d && seq 1000 | xargs touch); done; touch /done; sleep 3600"))
    wait_for(name, "/done", timeout=120)
    client = rodiff.Client()
    outcomes: list[object] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(6):
            try:
                r: object = len(client.diff(name))
            except rodiff.RodiffError as e:
                r = (type(e).__name__, e.kind)
            except BaseException as e:  # noqa: BLE001
                r = ("UNEXPECTED", type(e).__name__, str(e))
            with lock:
                outcomes.append(r)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    docker("rm", "-f", name)
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a diff hangs after the container was removed"
    print(outcomes)
    assert not [o for o in outcomes if isinstance(o, tuple) and o[0] == "UNEXPECTED"], outcomes
    # A diff either sees the whole layer (20,000 files and their parents) or raises: never a part.
    full = max(o for o in outcomes if isinstance(o, int))
    partial = [o for o in outcomes if isinstance(o, int) and o != full]
    assert not partial, f"diffs returned {partial} of {full} changes without an error"


# ---- track ----


def test_track_does_not_hide_the_blocks_exception_when_the_container_is_gone(containers: Containers) -> None:
    name = containers.run()
    with pytest.raises(ZeroDivisionError):
        with rodiff.track(name):
            docker("rm", "-f", name)
            1 / 0


def test_track_does_not_hide_the_blocks_exception_when_diff_fails(containers: Containers) -> None:
    name = containers.run()
    with pytest.raises(AssertionError, match="the test's own failure"):
        with rodiff.track(name):
            docker("rm", "-f", name)
            raise AssertionError("the test's own failure")


def test_track_container_removed_inside_the_block(containers: Containers) -> None:
    name = containers.run()
    with pytest.raises(rodiff.ContainerNotFound):
        with rodiff.track(name):
            docker("rm", "-f", name)


def test_tracker_reused(containers: Containers) -> None:
    name = containers.run()
    tracker = rodiff.track(name)
    with tracker:
        containers.sh(name, "echo 1 > /one")
    with tracker:
        containers.sh(name, "echo 2 > /two")
    assert {c.path for c in tracker.changes if c.type == "file"} == {"/two"}


# ---- plans ----


def test_covering_a_single_str_is_not_its_characters(containers: Containers) -> None:
    name = containers.run()
    containers.sh(name, "mkdir -p /var/cache/app && echo x > /var/cache/app/x")
    plan = rodiff.plan(name)
    assert plan.mounts, plan
    whole = plan.covering(["/var/cache/app/x"])
    assert whole.mounts
    # A str is an Iterable[str] (the stub accepts it): its characters are not paths.
    single = plan.covering("/var/cache/app/x")
    assert [m.path for m in single.mounts] == [m.path for m in whole.mounts], "covering(str) iterated characters"


@pytest.mark.parametrize("dirname", ["/srv/with space", "/srv/eq=ual", "/srv/new\nline", "/srv/we:ird,dir", "/srv/bad\udcffbyte"])
def test_docker_args_run_with_subprocess(containers: Containers, dirname: str) -> None:
    """A plan's docker_args() passed as-is to `docker run` starts a read-only container that can
    write its path; a path Docker cannot carry (`:` or `,`, bytes that are not UTF-8, which the
    API's JSON would turn into U+FFFD) is refused, never rendered as a mount on another path."""
    raw = os.fsencode(dirname)
    name = containers.run()
    # Docker passes argv as JSON (a byte that is not UTF-8 would arrive as U+FFFD): printf makes it.
    quoted = "".join(f"\\{b:03o}" for b in raw)
    setdir = f'd="$(printf "{quoted}")"; '
    subprocess.run(["docker", "exec", name, "sh", "-c", setdir + 'mkdir -p "$d" && echo x > "$d/f"'], check=True)
    plan = rodiff.plan(name)
    assert any(m.path_bytes == raw for m in plan.mounts), plan.json()
    if b":" in raw or b"," in raw or b"\xff" in raw:
        with pytest.raises(rodiff.RodiffError) as raised:
            plan.docker_args()
        assert raised.value.kind == "unrepresentable", raised.value
        return
    args = plan.docker_args()
    vname = unique("ro")
    containers.names.append(vname)
    out = subprocess.run(
        ["docker", "run", "--network", "none", "--name", vname, *args, BUSYBOX, "sh", "-c",
         setdir + 'echo y > "$d/f2" && echo ok'],
        capture_output=True,
    )
    subprocess.run(["docker", "volume", "prune", "-f"], capture_output=True)
    assert out.returncode == 0 and out.stdout.strip() == b"ok", (args, out.stderr.decode(errors="replace"))


def test_mount_and_plan_outlive_each_other(containers: Containers) -> None:
    name = containers.run()
    containers.sh(name, "mkdir -p /var/cache/app && echo x > /var/cache/app/x")
    mounts = rodiff.plan(name).mounts
    gc.collect()
    assert [m.path for m in mounts] and all(m.docker_args() for m in mounts)


# ---- fork ----


@pytest.mark.parametrize("fresh", [False, True])
def test_the_shared_client_works_in_a_forked_child(containers: Containers, fresh: bool) -> None:
    """multiprocessing's default start method on Linux before 3.14 is fork."""
    name = containers.run()
    rodiff.diff(name)  # the module's client is made (and used) in the parent
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            ok = bool((rodiff.Client() if fresh else rodiff).diff(name) is not None)
            os.write(w, b"ok" if ok else b"no")
        except BaseException as e:  # noqa: BLE001
            os.write(w, repr(e).encode()[:200])
        os._exit(0)
    os.close(w)
    deadline = time.monotonic() + 20
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("rodiff.diff hangs in a forked child")
        time.sleep(0.1)
    assert os.read(r, 300) == b"ok"


# ---- leaks ----


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_no_leak_over_many_calls(containers: Containers) -> None:
    name = containers.run()
    containers.sh(name, "mkdir /w && cd /w && seq 300 | xargs touch")
    client = rodiff.Client()

    def burst(n: int) -> None:
        for _ in range(n):
            changes = client.diff(name)
            hash(tuple(changes)); [c.path for c in changes]; [c.json() for c in changes[:5]]
            try:
                client.diff("no-such-container-leak")
            except rodiff.ContainerNotFound:
                pass
            plan = client.plan(name)
            plan.covering([c.path_bytes for c in changes]).docker_args()

    burst(50)
    gc.collect()
    before = _rss_kb()
    burst(300)
    gc.collect()
    grown = _rss_kb() - before
    print("RSS grew", grown, "kB")
    assert grown < 20_000, f"RSS grew {grown} kB over 300 rounds"


# ---- Change equality, verify edge cases ----


def test_change_eq_hash_against_other_types(containers: Containers) -> None:
    name = containers.run()
    containers.sh(name, "echo x > /f")
    a = rodiff.diff(name)
    b = rodiff.diff(name)
    paths_only = rodiff.diff(name, metadata=False)
    assert a == b and {hash(c) for c in a} == {hash(c) for c in b} and set(a) == set(b)
    assert a[0] != "x" and (a[0] == None) is False  # noqa: E711
    assert set(a).isdisjoint(paths_only)  # metadata is part of equality
    assert len({*a, *b}) == len(a)


def test_verify_edge_cases(containers: Containers) -> None:
    name = containers.run()
    containers.sh(name, "mkdir -p /var/cache/app && echo x > /var/cache/app/x")
    plan = rodiff.plan(name)
    report = rodiff.verify(name, plan, wait=0, probe="exit 3")
    assert report.probe is not None and report.probe.exit_code == 3 and not report.passed
    with pytest.raises(ValueError):
        rodiff.verify(name, plan, wait=-1)
    with pytest.raises(ValueError):
        rodiff.verify(name, plan, wait=float("nan"))
    # containerd has no verify: the error says so.
    with pytest.raises(rodiff.RodiffError, match="(?i)docker"):
        rodiff.Client("containerd").verify(name, plan, wait=0)
    leftover = docker("ps", "-aq", "--filter", "name=rodiff-verify")
    assert leftover == "", leftover
