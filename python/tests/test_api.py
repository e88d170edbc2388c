"""`import rodiff` against real runtimes: the API equals the `rodiff` command on the oracle corpus,
takes the container objects users have, raises exceptions that say what failed, and releases the
GIL."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time

import docker as docker_py
import pytest

import rodiff
from conftest import BUSYBOX, POSTGRES, REPO, Containers, cli_json, docker, rodiff_cli, unique, wait_for


def as_json(changes: list[rodiff.Change]) -> list[object]:
    return [json.loads(c.json()) for c in changes]


# ---- parity with the CLI ----


def test_diff_equals_the_cli_json_on_the_corpus(corpus_container: str) -> None:
    changes = rodiff.diff(corpus_container)
    assert as_json(changes) == cli_json("diff", corpus_container, "--format", "json")
    # The corpus reaches every kind and type it should, or the comparison proves little.
    assert {c.kind for c in changes} == {"A", "C", "D", "T"}
    assert {"file", "dir", "symlink", "fifo"} <= {c.type for c in changes}
    assert any(c.mountpoint for c in changes)


def test_diff_equals_the_cli_on_a_stopped_container(fixture_image: str, containers: Containers) -> None:
    name = containers.run(image=fixture_image, command=("sh", "-c", "echo x > /fx/data/stopped && rm /fx/data/e.txt"))
    docker("wait", name)
    changes = rodiff.diff(name)
    assert as_json(changes) == cli_json("diff", name, "--format", "json")
    assert ("A", "/fx/data/stopped") in {(c.kind, c.path) for c in changes}
    assert ("D", "/fx/data/e.txt") in {(c.kind, c.path) for c in changes}


def test_paths_only_diff_equals_the_cli(corpus_container: str) -> None:
    changes = rodiff.diff(corpus_container, metadata=False)
    metadata = {"mode", "uid", "gid", "size", "mtime"}
    cli = [{k: v for k, v in c.items() if k not in metadata} for c in cli_json("diff", corpus_container, "--format", "json")]
    assert as_json(changes) == cli
    assert all(c.mode is None and c.mtime is None for c in changes)


def test_odd_names_round_trip_as_os_fsdecode_does(corpus_container: str) -> None:
    by_bytes = {c.path_bytes: c for c in rodiff.diff(corpus_container)}
    for raw in (b"/fx/bad\xffbyte", b"/fx/new\nline", b"/fx/with space"):
        change = by_bytes[raw]
        assert change.path == os.fsdecode(raw)
        assert os.fsencode(change.path) == raw
        assert change.kind == "A" and change.type == "file"


def test_change_fields_hash_and_repr(corpus_container: str) -> None:
    changes = rodiff.diff(corpus_container)
    by_path = {c.path: c for c in changes}
    chmod = by_path["/fx/modes/chmod"]
    assert (chmod.kind, chmod.type, chmod.mode) == ("C", "file", 0o600)
    chown = by_path["/fx/modes/chown"]
    assert (chown.uid, chown.gid) == (65534, 65534)
    big = by_path["/fx/big"]
    assert big.size == 8 << 20
    assert big.mtime_ns is not None and big.mtime is not None
    assert abs(big.mtime - big.mtime_ns / 1e9) < 1e-6
    assert time.time() - big.mtime < 3600
    assert by_path["/fx/data/b.txt"].kind == "D"
    assert by_path["/fx/tmpd"].kind == "T"
    # Hashable and compared by value: a second diff of the same container gives equal objects.
    again = rodiff.diff(corpus_container)
    assert set(changes) == set(again) and len(set(changes)) == len(changes)
    assert changes[0] == again[0] and changes[0] is not again[0]
    assert by_path["/fx/big"] != by_path["/fx/empty"]
    assert repr(chmod).startswith("Change(C \"/fx/modes/chmod\" file mode=0o600")


# ---- what names a container ----


def test_container_objects_of_docker_py_and_testcontainers(corpus_container: str) -> None:
    client = docker_py.from_env()
    container = client.containers.get(corpus_container)
    expected = rodiff.diff(corpus_container)
    assert rodiff.diff(container) == expected
    assert rodiff.diff(container.id[:12]) == expected

    class TestcontainersLike:  # testcontainers' DockerContainer hands out docker-py's object
        def get_wrapped_container(self) -> object:
            return container

    assert rodiff.diff(TestcontainersLike()) == expected
    with pytest.raises(TypeError, match="docker-py Container"):
        rodiff.diff(42)


# ---- errors ----


def test_unknown_container_raises_container_not_found() -> None:
    with pytest.raises(rodiff.ContainerNotFound) as raised:
        rodiff.diff("no-such-container-here")
    err = raised.value
    assert isinstance(err, rodiff.RodiffError)
    assert err.container == "no-such-container-here"
    assert err.runtime == "docker" and err.endpoint == os.environ["DOCKER_HOST"]
    assert err.kind == "container-not-found" and err.code == 2
    assert "no such container: no-such-container-here" in str(err)


def test_a_daemon_that_is_not_there_raises_runtime_unavailable(tmp_path: object) -> None:
    endpoint = f"unix://{tmp_path}/docker.sock"
    with pytest.raises(rodiff.RuntimeUnavailable) as raised:
        rodiff.diff("web", host=endpoint)
    assert raised.value.endpoint == endpoint and raised.value.runtime == "docker"
    assert raised.value.code == 1 and endpoint in str(raised.value)
    with pytest.raises(rodiff.RuntimeUnavailable, match="containerd"):
        rodiff.diff("web", runtime="containerd", address=f"{tmp_path}/containerd.sock")


def test_bad_arguments_raise_value_error() -> None:
    with pytest.raises(ValueError, match="runtime must be"):
        rodiff.Client("podman")
    with pytest.raises(ValueError, match="NAMESPACE/NAME"):
        rodiff.diff(pod="no-slash", runtime="containerd")
    with pytest.raises(ValueError, match="timeout"):
        rodiff.Client(timeout=0)
    with pytest.raises(ValueError, match="empty"):
        rodiff.diff("")


def test_an_unsupported_storage_driver_raises_unsupported_storage() -> None:
    # A throw-away sandbox of its own whose dockerd uses the vfs driver.
    script = (
        "docker run --name on-vfs --network none rodiff-test/busybox:latest touch /x >/dev/null && "
        "exec \"$0\" -c 'import rodiff\ntry:\n rodiff.diff(\"on-vfs\")\nexcept rodiff.UnsupportedStorage as e:\n"
        " print(type(e).__name__, e.container, e.detail, sep=\"|\")'"
    )
    out = subprocess.run(
        [str(REPO / "scripts" / "sandbox.sh"), "run", "--images", "busybox", "--", "sh", "-c", script, sys.executable],
        env={**os.environ, "RODIFF_STORAGE_DRIVER": "vfs"},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "UnsupportedStorage|on-vfs|storage driver vfs (supported: overlay2, btrfs)"


# ---- plan and verify ----


@pytest.fixture(scope="module")
def postgres() -> object:
    name = unique("pg")
    docker("run", "-d", "--network", "none", "--name", name, POSTGRES)
    deadline = time.monotonic() + 60
    while subprocess.run(["docker", "exec", name, "psql", "-Atqc", "select 1"], capture_output=True).returncode != 0:
        assert time.monotonic() < deadline, docker("logs", name)
        time.sleep(0.2)
    yield name
    docker("rm", "-f", "-v", name, check=False)


def test_plan_equals_the_cli_in_every_format(postgres: str) -> None:
    plan = rodiff.plan(postgres)
    assert json.loads(plan.json()) == cli_json("plan", postgres, "--format", "json")
    for fmt, text in (("compose", plan.compose()), ("k8s", plan.k8s())):
        assert text == subprocess.run([rodiff_cli(), "plan", postgres, "--format", fmt], capture_output=True, text=True, check=True).stdout
    docker_line = subprocess.run([rodiff_cli(), "plan", postgres, "--format", "docker"], capture_output=True, text=True, check=True).stdout
    assert plan.docker_args() == shlex.split(docker_line)
    assert plan.docker_args()[0] == "--read-only"
    data = [m for m in plan.mounts if m.path == "/var/lib/postgresql"]
    assert len(data) == 1 and data[0].kind == "volume" and data[0].persistent
    assert data[0].owner == f"{data[0].uid}:{data[0].gid}" and data[0].uid != 0
    assert data[0].reason and data[0].covers == ["/var/lib/postgresql/data"]


def test_covering_and_one_mounts_args(postgres: str) -> None:
    plan = rodiff.plan(postgres)
    run = [m for m in plan.mounts if m.kind == "tmpfs"][0]
    some_path = run.path + "/x"
    only = plan.covering([some_path])
    assert [m.path for m in only.mounts] == [run.path]
    assert run.docker_args()[0] == "--tmpfs" and run.docker_args()[1].startswith(run.path + ":")
    assert run.docker_args() == only.docker_args()[1:]
    assert plan.covering([b"/nowhere/at/all"]).mounts == []


def test_runtime_made_is_what_the_plan_ignores_as_the_runtimes(containers: Containers) -> None:
    # /etc/mtab is managed by the runtime (Docker makes it a symlink to /proc/mounts: replaced by a
    # file here); /srv/app is the application's; /data is a mount point.
    script = "rm /etc/mtab && echo x > /etc/mtab && mkdir /srv/app && touch /srv/app/f && sleep 3600"
    name = containers.run("-v", "/data", command=("sh", "-c", script))
    wait_for(name, "/srv/app/f")
    changes = rodiff.diff(name)
    made = {c.path for c in changes if c.runtime_made}
    assert {"/etc/mtab", "/data"} <= made and not made & {"/srv/app", "/srv/app/f"}
    plan = rodiff.plan(name)
    runtimes = {p for p, reason in plan.ignored if reason in ("managed by the runtime", "a mount point the runtime made")}
    assert runtimes == {c.path for c in changes if c.runtime_made and not (c.kind == "C" and c.type == "dir")}
    # covering keeps the ignored and uncovered entries of the paths it is given, and only those.
    assert plan.covering(["/etc/mtab"]).ignored == [("/etc/mtab", "managed by the runtime")]
    app = plan.covering(["/srv/app/f"])
    assert app.ignored == [] and [m.path for m in app.mounts] == [m.path for m in plan.mounts if "/srv/app/f".startswith(m.path + "/")]
    assert app.mounts, plan.json()


def test_verify_runs_the_plan_read_only(postgres: str) -> None:
    # The probe waits for the server (up to 40 s: a loaded machine starts it slowly), then writes;
    # it runs again after verify restarts the container on the same volumes, where the table is.
    probe = "for i in $(seq 200); do pg_isready -q && break; sleep 0.2; done; psql -Atqc 'create table if not exists t(x int)'"
    report = rodiff.verify(postgres, probe=probe, wait=2)
    assert report.passed, report.json()
    assert report.running and report.probe is not None and report.probe.exit_code == 0
    assert report.leftovers == []
    assert docker("ps", "-aq", "--filter", f"name={report.container}") == ""


def test_verify_fails_a_plan_without_mounts(postgres: str) -> None:
    plan = rodiff.plan(postgres).covering([])
    report = rodiff.verify(postgres, plan, wait=2)
    assert not report.passed
    assert report.failures or not report.running


# ---- track ----


def test_track_reports_what_the_block_wrote(containers: Containers) -> None:
    name = containers.run(command=("sh", "-c", "mkdir -p /app && echo 1 > /app/before && echo 2 > /app/gone && sleep 3600"))
    wait_for(name, "/app/gone")
    with rodiff.track(name) as block:
        containers.sh(name, "echo 3 > /app/during && rm /app/gone && touch /tmp/t && rm /tmp/t && chmod 700 /bin")
    got = {(c.kind, c.path) for c in block.changes}
    assert ("A", "/app/during") in got
    assert ("T", "/tmp") in got  # a file made and removed in the block
    assert ("C", "/bin") in got  # chmod only
    assert "/app/before" not in {c.path for c in block.changes}  # written before the block
    assert [c.path for c in block.reverted] == ["/app/gone"]
    assert block.container == name and block.pod is None
    assert [m.path for m in block.plan().mounts] == [m.path for m in rodiff.plan(name).mounts]


def test_track_with_docker_py_object_and_nothing_written(containers: Containers) -> None:
    name = containers.run()
    container = docker_py.from_env().containers.get(name)
    with rodiff.track(container) as block:
        pass
    assert block.changes == [] and block.reverted == []


# ---- containerd ----


def ctr(*args: str) -> str:
    return subprocess.run(
        ["ctr", "-a", os.environ["CONTAINERD_ADDRESS"], *args], capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture(scope="module")
def ctr_image() -> str:
    if not os.environ.get("CONTAINERD_ADDRESS"):
        pytest.fail("no CONTAINERD_ADDRESS: run with RODIFF_CONTAINERD=1 (make test-python does)", pytrace=False)
    for ns in ("default", "k8s.io"):
        subprocess.run(
            f"docker save {BUSYBOX} | ctr -a {os.environ['CONTAINERD_ADDRESS']} -n {ns} images import - >/dev/null",
            shell=True,
            check=True,
        )
    return "docker.io/" + BUSYBOX


def ctr_run(ns: str, ident: str, image: str, script: str, labels: tuple[str, ...] = ()) -> None:
    label_args = [a for label in labels for a in ("--label", label)]
    subprocess.run(
        ["ctr", "-a", os.environ["CONTAINERD_ADDRESS"], "-n", ns, "run", "-d", "--runc-root", os.environ["RODIFF_RUNC_ROOT"],
         *label_args, image, ident, "sh", "-c", script + " && touch /done && sleep 3600"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True,
    )
    deadline = time.monotonic() + 30
    while subprocess.run(["ctr", "-a", os.environ["CONTAINERD_ADDRESS"], "-n", ns, "tasks", "exec", "--exec-id",
                          unique("x"), ident, "test", "-e", "/done"], capture_output=True).returncode != 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def ctr_rm(ns: str, ident: str) -> None:
    subprocess.run(["ctr", "-a", os.environ["CONTAINERD_ADDRESS"], "-n", ns, "tasks", "rm", "-f", ident], capture_output=True)
    subprocess.run(["ctr", "-a", os.environ["CONTAINERD_ADDRESS"], "-n", ns, "containers", "rm", ident], capture_output=True)


def test_containerd_diff_equals_the_cli(ctr_image: str) -> None:
    ident = unique("ctrd")
    ctr_run("default", ident, ctr_image, "mkdir -p /srv/w && echo x > /srv/w/f && printf y > \"$(printf '/srv/odd\\377')\"")
    try:
        changes = rodiff.diff(ident, runtime="containerd")
        cli = cli_json("--runtime", "containerd", "diff", ident, "--format", "json")
        assert as_json(changes) == cli
        assert ("A", "/srv/w/f") in {(c.kind, c.path) for c in changes}
        assert b"/srv/odd\xff" in {c.path_bytes for c in changes}
    finally:
        ctr_rm("default", ident)


def test_a_pods_containers_each_tagged(ctr_image: str) -> None:
    pod = unique("pod")
    labels = lambda kind, c: (f"io.kubernetes.pod.name={pod}", "io.kubernetes.pod.namespace=shop",
                              f"io.kubernetes.container.name={c}", f"io.cri-containerd.kind={kind}")
    made = []
    try:
        for kind, c in (("sandbox", "POD"), ("container", "app"), ("container", "sidecar")):
            ident = unique(c)
            made.append(ident)
            ctr_run("k8s.io", ident, ctr_image, f"echo {c} > /srv/{c}-wrote", labels(kind, c))
        changes = rodiff.diff(pod=f"shop/{pod}", runtime="containerd")
        wrote = {(c.container, c.path) for c in changes if c.path.endswith("-wrote")}
        assert wrote == {("app", "/srv/app-wrote"), ("sidecar", "/srv/sidecar-wrote")}
        assert as_json(changes) == cli_json("--runtime", "containerd", "--pod", f"shop/{pod}", "diff", "--format", "json")
        only = rodiff.diff("app", pod=f"shop/{pod}", runtime="containerd")
        assert {c.container for c in only} == {"app"}
        assert rodiff.plan("app", pod=f"shop/{pod}", runtime="containerd").container == "app"
        with pytest.raises(ValueError, match="name one"):
            rodiff.plan(pod=f"shop/{pod}", runtime="containerd")
    finally:
        for ident in made:
            ctr_rm("k8s.io", ident)


# ---- threads, the GIL, signals ----


@pytest.fixture(scope="module")
def many_files() -> object:
    """A stopped container that wrote 40,000 files."""
    name = unique("many")
    docker("run", "--network", "none", "--name", name, BUSYBOX, "sh", "-c",
           "mkdir /w && cd /w && for d in $(seq 40); do mkdir $d; (cd $d && seq 1000 | xargs touch); done")
    yield name
    docker("rm", "-f", name, check=False)


def test_calls_from_many_threads_agree(many_files: str) -> None:
    client = rodiff.Client()
    expected = client.diff(many_files)
    assert len(expected) > 40_000
    results: list[object] = [None] * 8

    def work(i: int) -> None:
        results[i] = client.diff(many_files) if i % 2 else rodiff.diff(many_files)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == expected for r in results)


def test_the_gil_is_released_during_a_walk(many_files: str) -> None:
    ticks = 0
    running = True

    def count() -> None:
        nonlocal ticks
        while running:
            ticks += 1

    counter = threading.Thread(target=count)
    counter.start()
    try:
        time.sleep(0.05)
        # A walk that holds the GIL would let the counter run only between the two reads.
        start, t0 = ticks, time.monotonic()
        rodiff.diff(many_files)
        during, elapsed = ticks - start, time.monotonic() - t0
    finally:
        running = False
        counter.join()
    assert elapsed > 0.02, "the walk is too short to tell"
    assert during > 1000, f"{during} counter ticks in a {elapsed:.3f} s diff"


def test_ctrl_c_cancels_a_verification_and_removes_its_container(postgres: str) -> None:
    plan = rodiff.plan(postgres)
    main = threading.get_ident()
    # Python's own Ctrl-C handler (a background job of a non-interactive shell ignores SIGINT).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Timer(1.0, lambda: signal.pthread_kill(main, signal.SIGINT)).start()
    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            rodiff.verify(postgres, plan, wait=30)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - t0 < 10
    leftover = docker("ps", "-aq", "--filter", "name=rodiff-verify")
    assert leftover == "", f"verification containers left: {leftover}"
