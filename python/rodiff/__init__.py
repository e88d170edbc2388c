"""rodiff: which paths does a container write?

Exact diffs of a container's writable layer (Docker, containerd, Kubernetes pods; overlay2 and
btrfs), the mounts it needs to run with a read-only root filesystem, and their verification::

    import rodiff

    for change in rodiff.diff("db"):                # a name, an id, or a docker-py container
        print(change.kind, change.path)
    plan = rodiff.plan("db")
    subprocess.run(["docker", "run", *plan.docker_args(), "postgres:16"])

    with rodiff.track(container) as block:          # what this block makes it write
        run_migrations()
    assert all(c.path.startswith("/var/lib/postgresql/") for c in block.changes)

Everything runs in rodiff's Rust core (the same engine as the `rodiff` command), with the GIL
released. The pytest plugin (`rodiff.pytest_plugin`) is registered on install.
"""

from __future__ import annotations

import os
import threading
from types import TracebackType
from typing import Any, Literal, Optional

from rodiff._rodiff import (
    Change,
    ContainerNotFound,
    Mount,
    Plan,
    Probe,
    Report,
    RodiffError,
    RuntimeUnavailable,
    UnsupportedStorage,
    __version__,
)
from rodiff._rodiff import Client as _CoreClient

__all__ = [
    "Change",
    "Client",
    "ContainerNotFound",
    "Mount",
    "Plan",
    "Probe",
    "Report",
    "RodiffError",
    "RuntimeUnavailable",
    "Tracker",
    "UnsupportedStorage",
    "container_ref",
    "diff",
    "plan",
    "track",
    "verify",
    "__version__",
]

#: The runtimes rodiff asks.
Runtime = Literal["docker", "containerd"]

#: What names a container: a name, an id or id prefix, or a container object of docker-py
#: (`.id`) or testcontainers (`.get_wrapped_container()`).
ContainerLike = Any


def container_ref(container: ContainerLike) -> str:
    """The reference rodiff passes to the runtime for `container`."""
    if isinstance(container, str):
        return container
    if isinstance(container, bytes):
        return os.fsdecode(container)
    wrapped = getattr(container, "get_wrapped_container", None)
    if callable(wrapped):  # testcontainers' DockerContainer
        inner = wrapped()
        if inner is None:
            raise ValueError(f"{container!r} has not been started: it has no container yet")
        container = inner
    ident = getattr(container, "id", None)
    if isinstance(ident, str) and ident:
        return ident
    raise TypeError(
        "container must be a name or id (str), a docker-py Container or a testcontainers "
        f"container, not {type(container).__name__}"
    )


class Client:
    """A connection to one runtime, kept between calls and safe to share between threads.

    `host` (Docker: `unix:///var/run/docker.sock`, `tcp://...`), `address` (containerd's socket)
    and `namespace` (containerd) default to `$DOCKER_HOST`, `$CONTAINERD_ADDRESS` and
    `$CONTAINERD_NAMESPACE` as the `rodiff` command reads them, then to the runtimes' defaults.
    `timeout` bounds each request to the runtime, in seconds (default 30).

    A client does not survive a fork (its threads stay in the parent): a forked child makes its own
    (the module-level functions do so by themselves).
    """

    def __init__(
        self,
        runtime: Runtime = "docker",
        *,
        host: Optional[str] = None,
        address: Optional[str] = None,
        namespace: Optional[str] = None,
        host_root: Optional[str] = None,
        timeout: Optional[float] = None,
        walkers: int = 0,
    ) -> None:
        for option, value in (("host", host), ("address", address), ("namespace", namespace)):
            if value == "":
                raise ValueError(f"{option} is empty: leave it out for the default")
        self._core = _CoreClient(
            runtime,
            host=host if host is not None else os.environ.get("DOCKER_HOST") or None,
            address=address if address is not None else os.environ.get("CONTAINERD_ADDRESS") or None,
            namespace=namespace if namespace is not None else os.environ.get("CONTAINERD_NAMESPACE") or None,
            host_root=host_root,
            timeout=timeout,
            walkers=walkers,
        )

    @property
    def runtime(self) -> str:
        """`docker` or `containerd`."""
        return self._core.runtime

    def diff(self, container: ContainerLike = None, *, pod: Optional[str] = None, metadata: bool = True) -> list[Change]:
        """The changes of `container`'s root filesystem, sorted by path, as `rodiff diff` lists
        them. With `pod` (`NAMESPACE/NAME`, containerd), the pod's containers, or the one named
        `container`; each change names its container."""
        return self._core.diff(_optional_ref(container, pod), pod=pod, metadata=metadata)

    def plan(self, container: ContainerLike = None, *, pod: Optional[str] = None) -> Plan:
        """The mounts `container` needs to run read-only. A pod with several containers needs
        `container` to say which."""
        plans = self._core.plan(_optional_ref(container, pod), pod=pod)
        if len(plans) != 1:
            names = ", ".join(p.container for p in plans)
            raise ValueError(f"pod {pod} has {len(plans)} containers ({names}): name one")
        return plans[0]

    def verify(
        self, container: ContainerLike, plan: Optional[Plan] = None, *, probe: Optional[str] = None, wait: float = 5.0
    ) -> Report:
        """Runs `container` again (a copy: its image, command and environment) with a read-only
        root and `plan`'s mounts (planned now when None), waits `wait` seconds, runs `probe` in it
        (`sh -c`), and reports; what it made is removed before it returns. Docker only."""
        ref = container_ref(container)
        if plan is None:
            plan = self.plan(ref)
        return self._core.verify(ref, plan, probe=probe, wait=wait)

    def track(self, container: ContainerLike = None, *, pod: Optional[str] = None) -> Tracker:
        """A context manager recording what `container` writes while its block runs."""
        return Tracker(self, container, pod=pod)


def _optional_ref(container: ContainerLike, pod: Optional[str]) -> Optional[str]:
    if container is None:
        if pod is None:
            raise TypeError("name a container (or a pod)")
        return None
    return container_ref(container)


class Tracker:
    """What a container wrote while a `with` block ran (see `track`).

    At entry it diffs the container; at exit it diffs it again. `changes` holds the entries of the
    second diff that the first did not have or had with other metadata (added, modified, deleted,
    chmod-ed or touched in the block, directories where files were created and removed included);
    `reverted` the entries of the first diff that are gone from the second (the block undid a
    change made before it: deleted a file added earlier, restored a file).
    """

    def __init__(self, client: Client, container: ContainerLike = None, *, pod: Optional[str] = None) -> None:
        self._client = client
        self._container = container
        self._pod = pod
        self._before: Optional[dict[tuple[Optional[str], bytes], Change]] = None
        self.changes: list[Change] = []
        self.reverted: list[Change] = []

    @property
    def client(self) -> Client:
        """The client the tracker diffs with."""
        return self._client

    @property
    def container(self) -> ContainerLike:
        """The tracked container, as given to `track`."""
        return self._container

    @property
    def pod(self) -> Optional[str]:
        """The tracked pod, when `track` was given one."""
        return self._pod

    def plan(self, container: ContainerLike = None) -> Plan:
        """The tracked container's plan now; in a pod, of its `container` (a container's name)."""
        return self._client.plan(container if self._pod and container else self._container, pod=self._pod)

    def __enter__(self) -> Tracker:
        self._before = self._index(self._client.diff(self._container, pod=self._pod))
        return self

    def __exit__(
        self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        before = self._before if self._before is not None else {}
        try:
            after = self._client.diff(self._container, pod=self._pod)
        except RodiffError:
            if exc is not None:
                return  # the block's own exception says more (the container may be gone because of it)
            raise
        self.changes = [c for c in after if before.get((c.container, c.path_bytes)) != c]
        seen = self._index(after)
        self.reverted = [c for key, c in before.items() if key not in seen]

    @staticmethod
    def _index(changes: list[Change]) -> dict[tuple[Optional[str], bytes], Change]:
        return {(c.container, c.path_bytes): c for c in changes}


# Module-level functions share one client per set of connection options.
_clients: dict[tuple[Any, ...], Client] = {}
_clients_lock = threading.Lock()


def _forget_clients() -> None:
    """In a forked child: the parent's clients' threads did not come along; make new ones."""
    global _clients, _clients_lock
    _clients, _clients_lock = {}, threading.Lock()


os.register_at_fork(after_in_child=_forget_clients)


def _client(runtime: Runtime, host: Optional[str], address: Optional[str], namespace: Optional[str]) -> Client:
    key = (
        runtime,
        host if host is not None else os.environ.get("DOCKER_HOST"),
        address if address is not None else os.environ.get("CONTAINERD_ADDRESS"),
        namespace if namespace is not None else os.environ.get("CONTAINERD_NAMESPACE"),
    )
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = Client(runtime, host=host, address=address, namespace=namespace)
        return client


def diff(
    container: ContainerLike = None,
    *,
    runtime: Runtime = "docker",
    host: Optional[str] = None,
    address: Optional[str] = None,
    namespace: Optional[str] = None,
    pod: Optional[str] = None,
    metadata: bool = True,
) -> list[Change]:
    """The changes of `container`'s root filesystem relative to its image, sorted by path: what
    `rodiff diff --format json` prints. See `Client` for the connection options."""
    return _client(runtime, host, address, namespace).diff(container, pod=pod, metadata=metadata)


def plan(
    container: ContainerLike = None,
    *,
    runtime: Runtime = "docker",
    host: Optional[str] = None,
    address: Optional[str] = None,
    namespace: Optional[str] = None,
    pod: Optional[str] = None,
) -> Plan:
    """The mounts `container` needs to run with a read-only root filesystem: `rodiff plan`."""
    return _client(runtime, host, address, namespace).plan(container, pod=pod)


def verify(
    container: ContainerLike,
    plan: Optional[Plan] = None,
    *,
    probe: Optional[str] = None,
    wait: float = 5.0,
    host: Optional[str] = None,
) -> Report:
    """Proves `plan` (planned now when None) by running `container` again read-only with its
    mounts: `rodiff verify`. Docker only."""
    return _client("docker", host, None, None).verify(container, plan, probe=probe, wait=wait)


def track(
    container: ContainerLike = None,
    *,
    runtime: Runtime = "docker",
    host: Optional[str] = None,
    address: Optional[str] = None,
    namespace: Optional[str] = None,
    pod: Optional[str] = None,
) -> Tracker:
    """A context manager: `.changes` holds what `container` wrote while the block ran::

        with rodiff.track(db) as block:
            client.post("/users", ...)
        assert [c.path for c in block.changes if c.type == "file"] == [...]
    """
    return _client(runtime, host, address, namespace).track(container, pod=pod)


