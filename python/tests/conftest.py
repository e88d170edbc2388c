"""Fixtures of the Python package's tests: real containers on the sandbox's runtimes.

The tests run inside `scripts/sandbox.sh run` (see the Makefile's `test-python`), which starts a
throw-away dockerd (DOCKER_HOST) and, with RODIFF_CONTAINERD=1, a containerd (CONTAINERD_ADDRESS,
RODIFF_RUNC_ROOT). Outside a sandbox they refuse to run rather than touch the host's daemons.
"""

from __future__ import annotations

import itertools
import json
import os
import pathlib
import subprocess
import time
from collections.abc import Iterator
from typing import Any, Optional

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BUSYBOX = "rodiff-test/busybox:latest"
POSTGRES = "rodiff-demo/postgres:15"
_counter = itertools.count()


def pytest_configure(config: pytest.Config) -> None:
    if not os.environ.get("RODIFF_SANDBOX"):
        raise pytest.UsageError(
            "these tests need the sandbox's daemons: run them with `make test-python`, or\n"
            "  scripts/sandbox.sh run --images busybox,postgres -- pytest python/tests"
        )


def unique(prefix: str) -> str:
    """A container or image name no other test (or concurrent run) uses."""
    return f"rodiff-py-{prefix}-{os.getpid()}-{next(_counter)}"


def sh(*args: str, input: Optional[bytes] = None, check: bool = True) -> str:
    """Runs a command; returns its stdout; fails the test with its stderr."""
    out = subprocess.run(args, input=input, capture_output=True)
    if check and out.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {out.returncode}: {out.stderr.decode(errors='replace')}", pytrace=False)
    return out.stdout.decode(errors="surrogateescape")


def docker(*args: str, check: bool = True) -> str:
    return sh("docker", *args, check=check)


def rodiff_cli() -> str:
    """The `rodiff` command the package is compared with (`cargo build` makes it)."""
    path = os.environ.get("RODIFF_BIN") or str(REPO / "target" / "debug" / "rodiff")
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path}: no rodiff binary (run `cargo build`, or set RODIFF_BIN)", pytrace=False)
    return path


def cli_json(*args: str) -> Any:
    """`rodiff ARGS` (output JSON) parsed."""
    return json.loads(sh(rodiff_cli(), *args))


def wait_for(container: str, path: str, timeout: float = 30) -> None:
    """Waits until `path` exists in running `container`."""
    deadline = time.monotonic() + timeout
    while subprocess.run(["docker", "exec", container, "test", "-e", path], capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            pytest.fail(f"{container}: {path} did not appear within {timeout} s", pytrace=False)
        time.sleep(0.05)


def corpus_script(name: str) -> str:
    return (REPO / "tests" / "corpus" / name).read_text()


@pytest.fixture(scope="session")
def fixture_image() -> Iterator[str]:
    """The oracle corpus's image: busybox plus the fixture layer (tests/corpus/fixture.sh)."""
    builder, image = unique("fixture-build"), unique("fixture") + ":latest"
    docker("run", "--network", "none", "--name", builder, BUSYBOX, "sh", "-c", corpus_script("fixture.sh"))
    docker("commit", builder, image)
    docker("rm", "-f", builder)
    yield image
    docker("rmi", "-f", image, check=False)


@pytest.fixture(scope="session")
def corpus_container(fixture_image: str) -> Iterator[str]:
    """A running container of the fixture image that ran the whole corpus (tests/corpus/ops.sh),
    with a volume (mount points)."""
    name = unique("corpus")
    script = corpus_script("ops.sh") + "\ntouch /corpus-done\nexec sleep 3600\n"
    docker("run", "-d", "--network", "none", "-v", "/fx/vol", "--name", name, fixture_image, "sh", "-c", script)
    wait_for(name, "/corpus-done")
    yield name
    docker("rm", "-f", "-v", name, check=False)


# A command that waits and ends on SIGTERM (`sleep` as PID 1 ignores it), so that verification's
# graceful stops take moments, not the stop timeout.
IDLE = ("sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done")


class Containers:
    """Starts containers for one test and removes them after it."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def run(self, *args: str, image: str = BUSYBOX, command: tuple[str, ...] = IDLE) -> str:
        """`docker run -d --network none ARGS IMAGE COMMAND`; returns the name."""
        name = unique("c")
        self.names.append(name)
        docker("run", "-d", "--network", "none", "--name", name, *args, image, *command)
        return name

    def sh(self, name: str, script: str) -> str:
        return docker("exec", name, "sh", "-c", script)

    def remove(self) -> None:
        for name in self.names:
            docker("rm", "-f", "-v", name, check=False)


@pytest.fixture
def containers() -> Iterator[Containers]:
    c = Containers()
    yield c
    c.remove()
