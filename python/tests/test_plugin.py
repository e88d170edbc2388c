"""Tests of rodiff's pytest plugin (rodiff.pytest_plugin), run by pytester against a real Docker
daemon: scripts/sandbox.sh run --images busybox -- pytest python/tests/test_plugin.py

Each test makes throw-away busybox containers (no network, unique names, removed at teardown),
writes in them with `docker exec`, and runs pytest on a generated test file in a subprocess, as a
user would, with the plugin loaded from its entry point.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

import rodiff
from rodiff.pytest_plugin import (
    Write,
    WriteSet,
    REPORT_LINES,
    _glob_regex,
    _listing,
    escape_path,
    pytest_assertrepr_compare,
    safe_file_name,
    unescape_path,
)

pytest_plugins = ["pytester"]

IMAGE = "rodiff-test/busybox:latest"

# The generated tests' conftest: `box` is the container the outer test made, `sh` runs a script in it.
INNER_CONFTEST = """
import docker
import pytest

BOX = {box!r}

@pytest.fixture(scope="session")
def client():
    return docker.from_env()

@pytest.fixture
def box(client):
    return client.containers.get(BOX)

@pytest.fixture
def sh(client):
    def run(script):
        code, out = client.containers.get(BOX).exec_run(["sh", "-c", script])
        assert code == 0, out
    return run
"""


# ---------------------------------------------------------------------------------------------
# Fixtures: a Docker client, containers, running the plugin in a subprocess.
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def docker_client() -> Any:
    import docker

    client = docker.from_env()
    client.ping()  # the sandbox's dockerd (conftest.py refuses to run outside one)
    return client


@pytest.fixture
def make_box(docker_client: Any) -> Iterator[Callable[..., Any]]:
    """Makes a running busybox container (`sleep`), removed with its volumes at teardown."""
    made: list[Any] = []

    def make(**options: Any) -> Any:
        name = f"rodiff-plugin-{uuid.uuid4().hex[:12]}"
        container = docker_client.containers.run(
            IMAGE, ["sleep", "600"], name=name, detach=True, network_mode="none", **options
        )
        made.append(container)
        return container

    yield make
    for container in made:
        container.remove(force=True, v=True)


def sh(container: Any, script: str) -> None:
    code, out = container.exec_run(["sh", "-c", script])
    assert code == 0, out.decode(errors="replace")


@pytest.fixture
def run_plugin(pytester: pytest.Pytester) -> Callable[..., pytest.RunResult]:
    """Runs pytest on the generated files in a subprocess (the plugin comes from its entry point)."""

    def run(*args: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)

    return run


def teardown_errors(result: pytest.RunResult) -> dict[str, str]:
    """The text of each `ERROR at teardown of TEST` section, by test name."""
    text = result.stdout.str()
    parts = re.split(r"_+ ERROR at teardown of (\S+) _+\n", text)
    sections = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        sections[name] = re.split(r"\n[_=]{3,} ", body)[0]
    return sections


def unexpected_lines(report: str) -> list[str]:
    """The `K /path` lines of a failure report."""
    return re.findall(r"^  ([ACDT] /.*)$", report, re.M)


# ---------------------------------------------------------------------------------------------
# Pure functions: no container.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"/tmp/plain",
        b"/tmp/a\nb\xffc",
        b"/tmp/back\\slash",
        b"/tmp/\\xff literally",
        b"/tmp/tab\there\rcr",
        "/tmp/caf\u00e9 \u2028sep".encode(),
        b"/tmp/trailing ",
        b"/tmp/\xed\xb2\x80surrogate-bytes",
        b"/" + bytes(range(1, 256)),
    ],
)
def test_escape_round_trips_bytes_on_one_printable_line(raw: bytes) -> None:
    line = escape_path(raw)
    assert unescape_path(line) == raw
    assert line.isprintable() and not line.endswith(" ")
    assert unescape_path(escape_path(os.fsdecode(raw))) == raw  # a str path as rodiff.Change.path gives it
    assert Write.parse("A " + line) == Write("A", os.fsdecode(raw))


def test_escape_keeps_readable_paths_readable() -> None:
    assert escape_path(b"/var/lib/caf\xc3\xa9 x") == "/var/lib/caf\u00e9 x"
    assert escape_path(b"/tmp/a\nb\xffc") == "/tmp/a\\nb\\xffc"
    with pytest.raises(ValueError):
        unescape_path("/tmp/\\q")


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        ("/run/**", ["/run", "/run/a", "/run/a/b"], ["/running", "/var/run"]),
        ("/var/lib/*/data/**", ["/var/lib/pg/data", "/var/lib/pg/data/x"], ["/var/lib/a/b/data/x"]),
        ("/a/**/z", ["/a/z", "/a/b/c/z"], ["/a/zz", "/b/z"]),
        ("*.pyc", ["/x.pyc", "/a/b/c.pyc"], ["/a.pyc/x"]),
        ("/tmp/f[0-9]", ["/tmp/f1"], ["/tmp/fx", "/tmp/f10"]),
        ("/tmp/?", ["/tmp/\n"], ["/tmp/ab"]),
    ],
)
def test_allow_patterns(pattern: str, matches: list[str], misses: list[str]) -> None:
    regex = _glob_regex(pattern)
    assert [p for p in matches if not regex.fullmatch(p)] == []
    assert [p for p in misses if regex.fullmatch(p)] == []


def test_listing_folds_added_trees_and_counts_what_it_cuts() -> None:
    tree = [Write("A", "/a"), Write("A", "/a/b"), Write("A", "/a/b/c"), Write("C", "/a/d"), Write("A", "/ab")]
    assert _listing(tree) == ["  A /a (+2 below)", "  C /a/d", "  A /ab"]
    # A pod's writes fold per container; what is not an addition below an added directory keeps
    # its line, and the additions after it still fold.
    pod = sorted([Write("A", "/x", "web"), Write("A", "/x/y", "db"), Write("A", "/x/z", "web"), Write("T", "/x/w", "web")], key=lambda w: w.key)
    assert _listing(pod) == ["  A db:/x/y", "  A web:/x (+1 below)", "  T web:/x/w"]
    many = [Write("C", f"/f{i:03}") for i in range(100)] + [Write("A", "/z"), Write("A", "/z/1")]
    lines = _listing(many)
    assert len(lines) == REPORT_LINES and lines[:2] == ["  C /f000", "  C /f001"]
    assert lines[-1] == f"  ... and {102 - (REPORT_LINES - 1)} writes more"


def test_safe_file_names_are_distinct_single_components() -> None:
    names = ["test_x[a/b]", "test_x[a_b]", "test_x[a%2Fb]", "test_x[..]", "T.test_x[\u00e9\n]", "x" * 400, "x" * 401]
    safe = [safe_file_name(n) for n in names]
    assert len(set(safe)) == len(names)
    assert all(re.fullmatch(r"[A-Za-z0-9_\-.\[\]=+,@%~]+", s) and len(s) <= 200 for s in safe)
    assert safe[0] == "test_x[a%2Fb]"


# ---------------------------------------------------------------------------------------------
# The marker.
# ---------------------------------------------------------------------------------------------


def readme_example() -> str:
    """The pytest example of python/README.md, as a user copies it."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.M | re.S)
    assert len(blocks) == 1, "python/README.md should have one python example"
    return blocks[0]


def test_the_readme_example_on_postgresql(docker_client: Any, pytester: pytest.Pytester, run_plugin: Any) -> None:
    # The example names `postgres:16`; the sandbox has no registry, so that name is given to the
    # PostgreSQL image the sandbox built (its server initialises /var/lib/postgresql/data and
    # writes its pid file and socket in /run/postgresql).
    docker_client.images.get("rodiff-demo/postgres:15").tag("postgres", "16")
    example = readme_example()
    assert 'containers.run("postgres:16"' in example and "rodiff_writes(container=\"db\"" in example
    # The example with a body that waits for the server, and the same test with one write more.
    ready = (
        "    import time\n"
        "    while db.exec_run(['psql', '-Atqc', 'select 1']).exit_code != 0:\n"
        "        time.sleep(0.2)\n"
    )
    body = "    ...  # exercise it; at teardown, any other write fails the test with the mounts that cover it\n"
    assert body in example
    waiting = example.replace(body, ready)
    extra = waiting.split("@pytest.mark.rodiff_writes", 1)[1].replace("test_db_stays_within_its_mounts", "test_db_writes_elsewhere")
    extra += "    assert db.exec_run(['sh', '-c', 'mkdir /var/cache/pg && echo x > /var/cache/pg/x'], user='root').exit_code == 0\n"
    # Containers on the sandbox's daemon get no network (it runs with --bridge=none).
    pytester.makepyfile(test_readme=(example + "\n" + waiting.replace("def test_db_stays", "def test_db_ready_stays") + "\n@pytest.mark.rodiff_writes" + extra).replace(
        "detach=True,", "detach=True, network_mode=\"none\","
    ))
    result = run_plugin()
    result.assert_outcomes(passed=3, errors=1)
    errors = teardown_errors(result)
    assert list(errors) == ["test_db_writes_elsewhere"], result.stdout.str()
    report = errors["test_db_writes_elsewhere"]
    assert unexpected_lines(report) == ["A /var/cache/pg (+1 below)"], report
    assert re.search(r"^  --(volume|tmpfs) \S*/var/cache\S*\s+# /var/cache/pg, /var/cache/pg/x$", report, re.M), report
    assert "as a Kubernetes pod-template patch:" in report and "mountPath: /var/cache" in report, report


def test_marker_passes_when_every_write_is_allowed(make_box: Any, pytester: pytest.Pytester, run_plugin: Any) -> None:
    box = make_box()
    pytester.makeconftest(INNER_CONFTEST.format(box=box.name))
    pytester.makepyfile(
        test_allowed="""
        import pytest

        ALLOW = ["/tmp/**", "/var/cache/**", "/run/**"]

        @pytest.mark.rodiff_writes(container="box", allow=ALLOW)
        def test_1_writes_inside_allow(box, sh):
            # /var (in the image) becomes C: an implied parent, not to be listed in ALLOW
            sh("mkdir -p /var/cache/app /run/app && echo 1 > /var/cache/app/x && echo 2 > /tmp/y"
               " && echo 3 > /run/app/pid")

        @pytest.mark.rodiff_writes("box", allow=ALLOW)
        def test_2_fixture_set_up_by_the_marker():
            pass  # `box` is not requested: the marker sets the fixture up (no container is named "box")

        @pytest.mark.rodiff_writes(container="box", allow=ALLOW)
        def test_3_control(sh):
            sh("echo 4 > /etc/not-allowed")
        """
    )
    result = run_plugin("--strict-markers")
    result.assert_outcomes(passed=3, errors=1)
    errors = teardown_errors(result)
    assert list(errors) == ["test_3_control"]
    assert unexpected_lines(errors["test_3_control"]) == ["A /etc/not-allowed"]


def test_marker_failure_report_names_paths_and_covering_mounts(
    make_box: Any, pytester: pytest.Pytester, run_plugin: Any
) -> None:
    box = make_box()
    pytester.makeconftest(INNER_CONFTEST.format(box=box.name))
    pytester.makepyfile(
        test_report=f"""
        import pytest

        @pytest.mark.rodiff_writes(container={box.name!r}, allow=["/tmp/**"])
        def test_writes_outside(sh):
            sh("mkdir -p /var/cache/app && echo 1 > /var/cache/app/x && echo 2 > /tmp/ok")
        """
    )
    result = run_plugin()
    result.assert_outcomes(passed=1, errors=1)
    report = teardown_errors(result)["test_writes_outside"]
    # Each unexpected path with its kind; /tmp/ok is allowed, /var (C) is an implied parent.
    assert unexpected_lines(report) == ["A /var/cache (+2 below)"]
    assert f"container {box.name} wrote 3 paths outside its allow-list" in report
    assert "allowed: /tmp/**" in report
    # The docker run argument of the mount that covers them (a volume or a tmpfs at /var/cache).
    assert re.search(r"^  --(volume \S+:|tmpfs )/var/cache\b.*# /var/cache, /var/cache/app, /var/cache/app/x$", report, re.M), report
    assert "readOnlyRootFilesystem: true" in report and "mountPath: /var/cache" in report
    # No traceback: a report a person reads at a glance.
    assert "Traceback" not in report and "pytest_plugin.py" not in report


def test_only_test_checks_what_the_test_wrote(make_box: Any, pytester: pytest.Pytester, run_plugin: Any) -> None:
    box = make_box()
    sh(box, "mkdir -p /var/cache && echo old > /var/cache/old && echo pre > /srv/pre")  # before the tests
    pytester.makeconftest(INNER_CONFTEST.format(box=box.name))
    pytester.makepyfile(
        test_scope=f"""
        import pytest

        NAME = {box.name!r}

        @pytest.mark.rodiff_writes(container=NAME, allow=["/tmp/**"], only_test=True)
        def test_a_only_test(sh):
            sh("echo 1 > /tmp/new")

        @pytest.mark.rodiff_writes(container=NAME, allow=["/tmp/**"])
        def test_b_whole_layer():
            pass

        @pytest.mark.rodiff_writes(container=NAME, allow=["/tmp/**"], only_test=True)
        def test_c_only_test_reports_its_own(sh):
            sh("echo 1 > /etc/x && rm /srv/pre /tmp/new")

        def test_d_guard_fixture(rodiff_guard, box, sh):
            rodiff_guard(box, allow=["/tmp/**"], only_test=True)
            sh("echo 1 > /tmp/fine && echo 2 > /srv/guarded")
        """
    )
    result = run_plugin()
    result.assert_outcomes(passed=4, errors=3)
    errors = teardown_errors(result)
    assert sorted(errors) == ["test_b_whole_layer", "test_c_only_test_reports_its_own", "test_d_guard_fixture"]
    # test_a passed although the layer holds /var/cache/old: only its own write counts.
    assert unexpected_lines(errors["test_b_whole_layer"]) == ["A /srv/pre", "A /var/cache (+1 below)"]
    # What test_c added, and what it removed (a file added before it) as D; nothing older.
    assert unexpected_lines(errors["test_c_only_test_reports_its_own"]) == ["A /etc/x", "D /srv/pre"]
    assert "during the test" in errors["test_c_only_test_reports_its_own"]
    assert unexpected_lines(errors["test_d_guard_fixture"]) == ["A /srv/guarded"]


def test_runtime_paths_and_mount_points_are_not_writes(
    make_box: Any, pytester: pytest.Pytester, run_plugin: Any
) -> None:
    from docker.types import Mount  # type: ignore[import-untyped]

    # CAP_SYS_ADMIN to unmount the runtime's bind mounts, so that writes land in the layer.
    box = make_box(cap_add=["SYS_ADMIN"], mounts=[Mount(target="/data", source=None, type="volume")])
    sh(box, "for f in hosts hostname resolv.conf; do umount /etc/$f && echo x >> /etc/$f; done")
    changes = {c.path: c for c in rodiff.diff(box.name)}
    # The diff does report them (so that leaving them out is the plugin's doing):
    assert {p: (c.kind, c.mountpoint) for p, c in changes.items()} == {
        "/data": ("A", True),
        "/etc": ("C", False),
        "/etc/hostname": ("C", False),
        "/etc/hosts": ("C", False),
        "/etc/resolv.conf": ("C", False),
    }
    pytester.makeconftest(INNER_CONFTEST.format(box=box.name))
    pytester.makepyfile(
        test_runtime="""
        import pytest

        @pytest.mark.rodiff_writes(container="box", allow=[])
        def test_nothing_allowed(box, rodiff_writes):
            assert rodiff_writes(box) == []

        @pytest.mark.rodiff_writes(container="box", allow=[])
        def test_control(sh):
            sh("echo 1 > /etc/hosts.bak")
        """
    )
    result = run_plugin()
    result.assert_outcomes(passed=2, errors=1)
    assert unexpected_lines(teardown_errors(result)["test_control"]) == ["A /etc/hosts.bak"]


# ---------------------------------------------------------------------------------------------
# Snapshots.
# ---------------------------------------------------------------------------------------------


def snapshot_lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]


def test_snapshot_lifecycle(make_box: Any, pytester: pytest.Pytester, run_plugin: Any) -> None:
    box = make_box()
    sh(box, "echo a > /tmp/a")
    pytester.makeconftest(INNER_CONFTEST.format(box=box.name))
    pytester.makepyfile(
        test_snap="""
        import pytest

        def test_it(box, rodiff_writes, rodiff_snapshot):
            assert rodiff_writes(box) == rodiff_snapshot

        @pytest.mark.parametrize("where", ["a/b c"])
        def test_param(box, rodiff_writes, rodiff_snapshot, where):
            assert rodiff_writes(box, ignore=["/var/**"]) == rodiff_snapshot
        """
    )
    directory = pytester.path / "__rodiff__" / "test_snap"
    snap = directory / "test_it.txt"

    # 1. No snapshot: written, the tests pass, the summary says so.
    result = run_plugin()
    result.assert_outcomes(passed=2)
    assert sorted(p.name for p in directory.iterdir()) == ["test_it.txt", "test_param[a%2Fb%20c].txt"]
    result.stdout.fnmatch_lines(["*rodiff snapshots*", "wrote __rodiff__/test_snap/test_it.txt (1 write) for test_snap.py::test_it"])
    text = snap.read_text(encoding="utf-8")
    assert text.startswith("# rodiff snapshot") and "pytest --rodiff-update" in text
    assert snapshot_lines(snap) == ["A /tmp/a"]  # not `C /tmp`: an implied parent

    # 2. Unchanged: passes, nothing written.
    result = run_plugin()
    result.assert_outcomes(passed=2)
    assert "rodiff snapshots" not in result.stdout.str()

    # 3. A new write: fails, the explanation names it and the mount that covers it.
    sh(box, "mkdir -p /var/cache/app && echo x > /var/cache/app/x")
    result = run_plugin()
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert re.search(r"^E +assert rodiff: \S+ made 3 writes not in its snapshot __rodiff__/test_snap/test_it.txt$", out, re.M), out
    assert re.findall(r"^E +([ACDT] /.*)$", out, re.M) == ["A /var/cache (+2 below)"]
    assert re.search(r"^E +--(volume \S+:|tmpfs )/var/cache\b", out, re.M), out
    assert "accept them: pytest --rodiff-update test_snap.py::test_it" in out
    assert "Captured rodiff call" in out and "readOnlyRootFilesystem: true" in out  # the full report, k8s included
    assert snapshot_lines(snap) == ["A /tmp/a"]  # a failing comparison does not touch the file

    # 4. --rodiff-update rewrites it.
    result = run_plugin("--rodiff-update")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["updated __rodiff__/test_snap/test_it.txt (4 writes) for test_snap.py::test_it"])
    assert "test_param" not in result.stdout.str().split("rodiff snapshots")[1]  # its writes did not change
    assert snapshot_lines(snap) == ["A /tmp/a", "A /var/cache", "A /var/cache/app", "A /var/cache/app/x"]

    # 5. Then it passes.
    run_plugin().assert_outcomes(passed=2)

    # 6. A write that no longer happens: still passes, and is mentioned.
    sh(box, "rm /var/cache/app/x")
    result = run_plugin()
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "test_snap.py::test_it: 1 write of __rodiff__/test_snap/test_it.txt no longer happens "
            "(--rodiff-update drops it): A /var/cache/app/x",
        ]
    )


def test_snapshot_round_trips_newlines_and_bytes_that_are_not_utf8(
    make_box: Any, pytester: pytest.Pytester, run_plugin: Any
) -> None:
    box = make_box()
    # /tmp/a<newline>b<0xff>c, /tmp/back\slash é<space>, /tmp/t<tab>
    sh(box, r"""printf z > "$(printf '/tmp/a\nb\377c')" && printf z > '/tmp/back\slash é ' && printf z > "$(printf '/tmp/t\t')" """)
    expected = {b"/tmp/a\nb\xffc", b"/tmp/back\\slash \xc3\xa9 ", b"/tmp/t\t"}
    assert {c.path_bytes for c in rodiff.diff(box.name) if c.kind == "A"} == expected
    pytester.makeconftest(INNER_CONFTEST.format(box=box.name))
    pytester.makepyfile(
        test_names="""
        def test_names(box, rodiff_writes, rodiff_snapshot):
            assert rodiff_writes(box) == rodiff_snapshot
        """
    )
    run_plugin().assert_outcomes(passed=1)
    snap = pytester.path / "__rodiff__" / "test_names" / "test_names.txt"
    raw = snap.read_bytes()
    raw.decode("utf-8")  # a UTF-8 text file
    lines = snapshot_lines(snap)
    assert lines == ["A /tmp/a\\nb\\xffc", "A /tmp/back\\\\slash \u00e9\\x20", "A /tmp/t\\t"]
    assert {Write.parse(line).path_bytes for line in lines} == expected
    # Read back: the same writes, so the comparison passes.
    result = run_plugin()
    result.assert_outcomes(passed=1)
    assert "rodiff snapshots" not in result.stdout.str()
    # And a new oddly named write is reported escaped, on one line.
    sh(box, r"""printf z > "$(printf '/tmp/new\nline')" """)
    result = run_plugin()
    result.assert_outcomes(failed=1)
    assert re.findall(r"^E +([ACDT] /\S+)$", result.stdout.str(), re.M) == ["A /tmp/new\\nline"]


def test_write_set_compares_with_lists_and_takes_trackers(make_box: Any, pytestconfig: pytest.Config) -> None:
    box = make_box()
    sh(box, "echo 1 > /tmp/x")
    writes = WriteSet.of(box)
    assert writes == [("A", "/tmp/x")] and writes == ["A /tmp/x"] and writes != ["A /tmp/y"]
    assert list(writes) == [Write("A", "/tmp/x")] and writes.paths == ["/tmp/x"]
    explanation = pytest_assertrepr_compare(pytestconfig, "==", writes, ["A /tmp/y"])
    assert explanation is not None and explanation[1:] == ["  + A /tmp/x", "  - A /tmp/y"]
    with rodiff.track(box) as block:
        sh(box, "echo 2 > /tmp/y && rm /tmp/x")
    assert WriteSet.of(block) == ["A /tmp/y", "D /tmp/x"]
