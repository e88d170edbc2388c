# The extension module rodiff._rodiff (python/src), kept by hand; `make test` checks it against the
# module with mypy.stubtest. Users import from `rodiff`, which re-exports all of it.
from collections.abc import Iterable
from typing import Any, Final, Literal, Optional, Union, final

__version__: Final[str]

__all__ = [
    "__version__",
    "Client",
    "Change",
    "Plan",
    "Mount",
    "Report",
    "Probe",
    "RodiffError",
    "ContainerNotFound",
    "RuntimeUnavailable",
    "UnsupportedStorage",
]

_Kind = Literal["A", "C", "D", "T"]
_FileType = Literal["file", "dir", "symlink", "fifo", "socket", "char", "block"]
_PathArg = Union[str, bytes]

class RodiffError(Exception):
    """Any error rodiff reports. `kind` names it (`"container-not-found"`, `"timeout"`, ...);
    `code` is the core's stable numeric code (rodiff.h's RODIFF_* result codes)."""

    kind: str
    code: int
    container: Optional[str]

class ContainerNotFound(RodiffError):
    """The runtime answered but has no such container."""

    runtime: str
    endpoint: str

class RuntimeUnavailable(RodiffError):
    """The runtime cannot be reached at `endpoint`, or did not answer in time."""

    runtime: str
    endpoint: str

class UnsupportedStorage(RodiffError):
    """The container's storage is not something rodiff can read (`detail` says what)."""

    detail: str

@final
class Change:
    """One change of a container's root filesystem relative to its image (`docker diff`'s line,
    with metadata). Hashable, compared by every field."""

    @property
    def path(self) -> str:
        """The absolute path in the container; bytes that are not UTF-8 as `os.fsdecode` makes
        them (surrogate escapes)."""
    @property
    def path_bytes(self) -> bytes: ...
    @property
    def kind(self) -> _Kind:
        """`A` added, `C` changed, `D` deleted, `T` written but identical to the image."""
    @property
    def type(self) -> _FileType: ...
    @property
    def mode(self) -> Optional[int]:
        """Permission bits (`st_mode & 0o7777`); None for a diff made with `metadata=False`."""
    @property
    def uid(self) -> Optional[int]: ...
    @property
    def gid(self) -> Optional[int]: ...
    @property
    def size(self) -> Optional[int]: ...
    @property
    def mtime(self) -> Optional[float]:
        """Modification time in seconds since the epoch (see `mtime_ns` for the exact value)."""
    @property
    def mtime_ns(self) -> Optional[int]: ...
    @property
    def mountpoint(self) -> bool:
        """The entry exists because the runtime made a mount point there."""
    @property
    def runtime_made(self) -> bool:
        """The runtime, not the application, made this entry: a mount point, or a file or tree the
        runtime manages (`/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`, `/etc/mtab`,
        `/.dockerenv`, `/.containerenv`, `/dev`, `/proc`, `/sys`). A plan gives it no mount."""
    @property
    def container(self) -> Optional[str]:
        """The container's name, in a pod's diff."""
    @property
    def evidence(self) -> Optional[str]:
        """Why a change the layer does not show is reported (`"open-deleted"`), else None."""
    def json(self) -> str:
        """The change as one object of `rodiff diff --format json`."""
    def __copy__(self) -> Change: ...
    def __deepcopy__(self, memo: Any, /) -> Change: ...
    def __hash__(self) -> int: ...
    def __repr__(self) -> str: ...
    def __eq__(self, other: object, /) -> bool: ...

@final
class Mount:
    """One mount of a plan."""

    @property
    def path(self) -> str: ...
    @property
    def path_bytes(self) -> bytes: ...
    @property
    def kind(self) -> Literal["tmpfs", "volume"]: ...
    @property
    def name(self) -> str:
        """A short name derived from the path, valid as a Kubernetes volume name."""
    @property
    def persistent(self) -> bool: ...
    @property
    def seed(self) -> bool:
        """The image ships entries here that the mount must start with."""
    @property
    def uid(self) -> int: ...
    @property
    def gid(self) -> int: ...
    @property
    def owner(self) -> str:
        """`uid:gid`."""
    @property
    def mode(self) -> int: ...
    @property
    def rule(self) -> str: ...
    @property
    def anticipated(self) -> bool:
        """No change needs it: planned on ownership evidence alone."""
    @property
    def evidence(self) -> Optional[str]:
        """Why directories the container's user owns are covered without a write there, or None."""
    @property
    def reason(self) -> str: ...
    @property
    def covers(self) -> list[str]:
        """The changed paths that need this mount."""
    def docker_args(self) -> list[str]:
        """This mount alone as `docker run` arguments (`["--tmpfs", "/run:..."]`)."""

@final
class Plan:
    """The mounts a container needs to run with a read-only root filesystem."""

    @property
    def container(self) -> str: ...
    @property
    def image(self) -> Optional[str]: ...
    @property
    def mounts(self) -> list[Mount]: ...
    @property
    def ignored(self) -> list[tuple[str, str]]:
        """Changes that need no mount, with the reason: `(path, reason)`."""
    @property
    def uncovered(self) -> list[tuple[str, str]]:
        """Writes no mount can cover, with the reason: `(path, reason)`."""
    def docker_args(self) -> list[str]:
        """`docker run` arguments, starting with `--read-only`, one list item per argument."""
    def compose(self) -> str: ...
    def k8s(self) -> str:
        """A strategic-merge patch for the pod template (YAML)."""
    def json(self) -> str: ...
    def covering(self, paths: Union[_PathArg, Iterable[_PathArg]]) -> Plan:
        """The plan reduced to what concerns `paths` (a path, or an iterable of paths): the mounts at
        or above one of them, and the `ignored` and `uncovered` entries for exactly those paths."""

@final
class Probe:
    """The outcome of a verification's probe command."""

    @property
    def command(self) -> str: ...
    @property
    def exit_code(self) -> Optional[int]: ...
    @property
    def output(self) -> str: ...
    @property
    def passed(self) -> bool: ...

@final
class Report:
    """What a verification found (the container is removed by the time you read it)."""

    @property
    def passed(self) -> bool:
        """The plan held: the read-only container kept running, the probe passed before the
        graceful stop and after the restart, it stopped cleanly, no read-only error was logged,
        and the writable shadow copy wrote nothing outside the plan's mounts (see json())."""
    @property
    def container(self) -> str: ...
    @property
    def start_error(self) -> Optional[str]: ...
    @property
    def running(self) -> bool: ...
    @property
    def ran_for(self) -> float: ...
    @property
    def exit_code(self) -> Optional[int]: ...
    @property
    def probe(self) -> Optional[Probe]: ...
    @property
    def failures(self) -> list[tuple[str, Optional[str]]]:
        """Log lines about the read-only root filesystem, with the path each names."""
    @property
    def log_tail(self) -> list[str]: ...
    @property
    def leftovers(self) -> list[str]: ...
    def json(self) -> str: ...

@final
class Client:
    """A connection to one runtime, shared by any number of threads. `host`, `address` and
    `namespace` given as None mean the runtime's defaults (this class reads no environment
    variable; `rodiff.Client` does)."""

    def __new__(
        cls,
        runtime: Literal["docker", "containerd"] = "docker",
        host: Optional[str] = None,
        address: Optional[str] = None,
        namespace: Optional[str] = None,
        host_root: Optional[str] = None,
        timeout: Optional[float] = None,
        walkers: int = 0,
    ) -> Client: ...
    @property
    def runtime(self) -> str: ...
    def diff(self, container: Optional[str], *, pod: Optional[str] = None, metadata: bool = True) -> list[Change]: ...
    def plan(self, container: Optional[str], *, pod: Optional[str] = None) -> list[Plan]: ...
    def verify(self, container: str, plan: Plan, *, probe: Optional[str] = None, wait: float = 5.0) -> Report: ...
