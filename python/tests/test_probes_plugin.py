"""Probes (a reviewer's attempts to break the pytest plugin), run by pytester against the sandbox's
dockerd like test_plugin.py."""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from rodiff.pytest_plugin import Write, _Patterns
from test_plugin import INNER_CONFTEST, docker_client, make_box, run_plugin, sh, teardown_errors  # noqa: F401

pytest_plugins = ["pytester"]


def write_tests(pytester: pytest.Pytester, box: Any, body: str) -> None:
    pytester.makeconftest(INNER_CONFTEST.format(box=box.name))
    pytester.makepyfile(test_x=body)


# ---- patterns ----


@pytest.mark.parametrize("pattern", ["[!]", "/run/[z-a]", "/x/[!]/y"])
def test_malformed_pattern_is_a_type_or_value_error(pattern: str) -> None:
    """The marker turns TypeError/ValueError into a clean `pytest.fail`; anything else is a traceback
    from the plugin's internals."""
    with pytest.raises(ValueError, match="allow pattern .* is malformed"):
        _Patterns([pattern], "allow")


def test_malformed_pattern_in_a_marker_reads_well(make_box: Any, pytester: pytest.Pytester, run_plugin: Any) -> None:
    box = make_box()
    write_tests(pytester, box, f"""
import pytest
@pytest.mark.rodiff_writes({box.name!r}, allow=["/tmp/[!]"])
def test_a():
    pass
""")
    result = run_plugin()
    out = result.stdout.str()
    assert "rodiff_writes" in out and "pytest_plugin.py" not in out, out


# ---- a container name that is also one of pytest's own fixtures ----


def test_container_named_like_a_builtin_fixture(docker_client: Any, pytester: pytest.Pytester) -> None:
    """A container named `cache` (a common name for a redis container): pytest has a `cache`
    fixture (cacheprovider), so the marker takes pytest's Cache object for the container."""
    try:
        docker_client.containers.get("cache").remove(force=True)
    except Exception:
        pass
    box = docker_client.containers.run("rodiff-test/busybox:latest", ["sleep", "600"], name="cache",
                                       detach=True, network_mode="none")
    try:
        sh(box, "echo x > /oops")
        write_tests(pytester, box, """
import pytest
@pytest.mark.rodiff_writes("cache", allow=["/tmp/**"])
def test_a():
    pass
""")
        result = pytester.runpytest_subprocess()  # cacheprovider on, as users run pytest
        out = result.stdout.str()
        assert "A /oops" in out, out
    finally:
        box.remove(force=True, v=True)


# ---- snapshots edited by hand ----


def _snapshot_run(make_box: Any, pytester: pytest.Pytester, run_plugin: Any, edit: Callable[[str], str]) -> str:
    box = make_box()
    sh(box, "mkdir -p /srv && echo x > /srv/a")
    write_tests(pytester, box, """
def test_s(box, rodiff_writes, rodiff_snapshot):
    assert rodiff_writes(box) == rodiff_snapshot
""")
    run_plugin().assert_outcomes(passed=1)
    path = pytester.path / "__rodiff__" / "test_x" / "test_s.txt"
    text = path.read_text()
    assert "A /srv/a\n" in text
    path.write_bytes(edit(text).encode("utf-8"))
    result = run_plugin()
    return result.stdout.str() + f"\n[outcomes {result.parseoutcomes()}]"


@pytest.mark.parametrize(
    "label, edit",
    [
        ("BOM (Windows editors)", lambda t: "\ufeff" + t),
        ("indented comment", lambda t: "  # note\n" + t),
        ("tab after kind", lambda t: t.replace("A /srv/a\n", "A\t/srv/a\n")),
        ("CRLF", lambda t: t.replace("\n", "\r\n")),
    ],
)
def test_hand_edited_snapshot(make_box: Any, pytester: pytest.Pytester, run_plugin: Any, label: str, edit: Any) -> None:
    out = _snapshot_run(make_box, pytester, run_plugin, edit)
    assert "'passed': 1" in out, f"{label}: {out}"


def test_snapshot_path_is_a_directory(make_box: Any, pytester: pytest.Pytester, run_plugin: Any) -> None:
    box = make_box()
    write_tests(pytester, box, """
def test_s(box, rodiff_writes, rodiff_snapshot):
    assert rodiff_writes(box) == rodiff_snapshot
""")
    (pytester.path / "__rodiff__" / "test_x" / "test_s.txt").mkdir(parents=True)
    out = run_plugin().stdout.str()
    assert "test_s.txt" in out and "pytest_plugin.py:" not in out, out


# ---- --rodiff-update with odd parameter ids ----


ODD_IDS = ["a/b", "../../evil", "a::b", "x" * 300, "sp ace", "caf\u00e9", "q'uote", "[br]", "", "-dash", "$(echo pwned)"]


def test_update_hints_select_the_test_with_odd_ids(make_box: Any, pytester: pytest.Pytester, run_plugin: Any) -> None:
    box = make_box()
    write_tests(pytester, box, f"""
import pytest
@pytest.mark.parametrize("p", [pytest.param(i, id=i) for i in {ODD_IDS!r}])
def test_p(box, sh, p, rodiff_writes, rodiff_snapshot):
    assert rodiff_writes(box) == rodiff_snapshot
""")
    run_plugin().assert_outcomes(passed=len(ODD_IDS))
    files = sorted(p.relative_to(pytester.path) for p in pytester.path.rglob("*.txt"))
    assert len(files) == len(ODD_IDS), files
    assert all(str(f).startswith("__rodiff__/test_x/") and f.parent == Path("__rodiff__/test_x") for f in files), files
    # Now every test writes something new: each failure says how to accept it.
    sh(box, "echo x > /new")
    result = run_plugin()
    hints = [h for h in re.findall(r"accept them: pytest --rodiff-update (.*)$", result.stdout.str(), re.M)
             if not h.endswith("...")]  # pytest cuts long lines of the assertion message
    assert len(set(hints)) == len(ODD_IDS), result.stdout.str()
    broken = []
    for hint in sorted(set(hints)):
        args = shlex.split(hint)
        r = run_plugin("--rodiff-update", *args)
        if r.ret != 0 or r.parseoutcomes().get("passed") != 1:
            broken.append((hint, r.ret, r.parseoutcomes()))
    assert not broken, broken


# ---- containers that stop or vanish during the test ----


def test_container_stopped_during_the_test(make_box: Any, pytester: pytest.Pytester, run_plugin: Any) -> None:
    box = make_box()
    write_tests(pytester, box, f"""
import pytest
@pytest.mark.rodiff_writes("box", allow=["/tmp/**"])
def test_a(box, sh):
    sh("echo x > /bad")
    box.stop(timeout=0)
""")
    result = run_plugin()
    errs = teardown_errors(result)
    assert "A /bad" in errs.get("test_a", ""), result.stdout.str()


@pytest.fixture
def make_box_gone_ok(docker_client: Any) -> Any:
    """make_box whose teardown tolerates a container the test removed."""
    import uuid
    made: list[Any] = []

    def make() -> Any:
        c = docker_client.containers.run("rodiff-test/busybox:latest", ["sleep", "600"],
                                         name=f"rodiff-plugin-{uuid.uuid4().hex[:12]}", detach=True, network_mode="none")
        made.append(c)
        return c

    yield make
    for c in made:
        try:
            c.remove(force=True, v=True)
        except Exception:
            pass


@pytest.mark.parametrize("only_test", [False, True])
def test_container_removed_during_the_test(make_box_gone_ok: Any, pytester: pytest.Pytester, run_plugin: Any, only_test: bool) -> None:
    box = make_box_gone_ok()
    write_tests(pytester, box, f"""
import pytest
@pytest.mark.rodiff_writes("box", allow=["/tmp/**"], only_test={only_test})
def test_a(box):
    box.remove(force=True)
""")
    result = run_plugin()
    out = result.stdout.str()
    errs = teardown_errors(result)
    assert "cannot tell what container" in errs.get("test_a", ""), out
    assert "Traceback" not in out and "pytest_plugin.py:" not in out, out


def test_only_test_container_gone_before_the_call(make_box_gone_ok: Any, pytester: pytest.Pytester, run_plugin: Any) -> None:
    """only_test starts tracking in pytest_runtest_call: a container that is already gone."""
    box = make_box_gone_ok()
    write_tests(pytester, box, f"""
import pytest
@pytest.fixture
def gone(box):
    box.remove(force=True)
    return box
@pytest.mark.rodiff_writes("gone", only_test=True)
def test_a(gone):
    pass
""")
    result = run_plugin()
    out = result.stdout.str()
    assert "cannot tell what container" in teardown_errors(result).get("test_a", ""), out
    assert "pytest_plugin.py:" not in out, out


# ---- many writes: report size and time ----


def test_report_of_many_unexpected_writes(make_box: Any, pytester: pytest.Pytester, run_plugin: Any) -> None:
    box = make_box()
    sh(box, "mkdir -p /srv/w && cd /srv/w && seq 20000 | xargs touch")
    write_tests(pytester, box, f"""
import pytest
@pytest.mark.rodiff_writes("box", allow=["/tmp/**"])
def test_a(box):
    pass
""")
    t0 = time.monotonic()
    result = run_plugin()
    elapsed = time.monotonic() - t0
    report = teardown_errors(result).get("test_a", "")
    lines = report.count("\n")
    print(f"{elapsed:.1f} s, {lines} report lines")
    assert lines < 500, f"a teardown report of {lines} lines for 20,000 writes under one directory"


# ---- marker options ----


@pytest.mark.parametrize(
    "options, expected",
    [
        ("allow=None", "allow"),
        ("only_test='no'", "only_test"),
        ("runtime='podman'", "runtime"),
        ("allow=['/tmp/**'], alow=['/x']", "unknown option"),
    ],
)
def test_bad_marker_options_fail_at_setup(make_box: Any, pytester: pytest.Pytester, run_plugin: Any, options: str, expected: str) -> None:
    box = make_box()
    write_tests(pytester, box, f"""
import pytest
@pytest.mark.rodiff_writes("box", {options})
def test_a(box):
    pass
""")
    result = run_plugin()
    out = result.stdout.str()
    assert "ERROR at setup of test_a" in out and expected in out, out


def test_marker_and_guard_on_the_same_container_report_once(make_box: Any, pytester: pytest.Pytester, run_plugin: Any) -> None:
    box = make_box()
    sh(box, "echo x > /bad")
    write_tests(pytester, box, f"""
import pytest
@pytest.mark.rodiff_writes("box", allow=["/tmp/**"])
def test_a(box, rodiff_guard):
    rodiff_guard(box, allow=["/tmp/**"])
""")
    report = teardown_errors(run_plugin()).get("test_a", "")
    assert report.count("A /bad") == 1, report


# ---- reruns (pytest-rerunfailures) ----


def test_rerun_does_not_stack_watches(make_box: Any, pytester: pytest.Pytester, run_plugin: Any) -> None:
    """A flaky test writes /bad1 and fails on its first attempt; the rerun writes nothing and passes.
    With only_test, the rerun's check covers the rerun only: the test passes."""
    box = make_box()
    write_tests(pytester, box, f"""
import pytest
RUNS = []
@pytest.mark.rodiff_writes("box", allow=["/tmp/**"], only_test=True)
def test_a(box, sh):
    RUNS.append(1)
    if len(RUNS) == 1:
        sh("echo x > /bad1")
        assert False, "flaky first attempt"
""")
    result = run_plugin("-p", "rerunfailures", "--reruns", "2")
    out = result.stdout.str()
    # The first attempt's call and its teardown check fail (rerunfailures counts both as reruns);
    # the second attempt, which wrote nothing, passes: its check is its own.
    outcomes = result.parseoutcomes()
    assert result.ret == 0 and outcomes.get("passed") == 1 and "error" not in outcomes and "failed" not in outcomes, out
