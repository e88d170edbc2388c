"""rodiff's pytest plugin: guard what a container writes, and record it as a baseline.

Installed with rodiff (entry point ``pytest11: rodiff``); nothing to import or enable.

The marker
==========

``@pytest.mark.rodiff_writes(container, *, allow=(), ignore=(), only_test=False, runtime="docker",
host=None, address=None, namespace=None, pod=None)``

At the test's teardown (before any fixture is torn down, so the container still runs), every path
the container wrote must match one of the ``allow`` patterns, or the test errors at teardown with a
report: each unexpected path with its kind (an added tree as its root and a count), then the
mounts that would cover them (``docker run`` arguments and a Kubernetes pod-template patch, from
``rodiff.plan(container).covering(paths)``)::

    @pytest.mark.rodiff_writes(container="db", allow=["/run/**", "/var/lib/postgresql/data/**"])
    def test_insert(db):
        ...

    ERROR at teardown of test_insert
    rodiff: container pg-1 (fixture db) wrote 2 paths outside its allow-list
      allowed: /run/**, /var/lib/postgresql/data/**
      A /var/cache/pg (+1 below)
    mounts that would cover them (docker run arguments):
      --tmpfs /var/cache/pg:uid=0,gid=0,mode=755  # /var/cache/pg, /var/cache/pg/x
    as a Kubernetes pod-template patch:
      ...

- ``container`` (positional or keyword) names a fixture when the test has a fixture of that name
  (requested or not: the marker sets it up); its value is a docker-py container, a testcontainers
  container, or a name/id string. Otherwise it is the container's name or id.
- ``allow``: glob patterns of absolute paths. ``*`` and ``?`` stay within one path segment,
  ``[...]`` is a character class, ``**`` spans any number of segments, none included:
  ``/run/**`` allows ``/run`` itself and everything below it. A pattern that does not start with
  ``/`` matches at any depth (``*.pyc``).
- ``ignore``: patterns of writes to leave out altogether (they also stay out of write sets).
- ``only_test=True``: only what the test function itself wrote (``rodiff.track`` around the call
  phase: what changed or appeared in the layer, and what the test removed, as ``D``). By default
  the check covers every write in the container's layer at teardown: what a read-only run of the
  container would need, whoever made the write.
- ``runtime``, ``host``, ``address``, ``namespace``, ``pod``: as for ``rodiff.diff``.

Several markers (for several containers) may apply to a test; for one container the closest marker
(function over class over module) wins. A test whose call phase did not run or was skipped is not
checked.

What counts as a write
----------------------

Every entry of ``rodiff.diff(container)`` but:

- what the runtime made (``Change.runtime_made``): mount points, the files the runtime manages
  (``/etc/hosts``, ``/etc/hostname``, ``/etc/resolv.conf``, ``/etc/mtab``, ``/.dockerenv``,
  ``/.containerenv``) and anything under ``/dev``, ``/proc`` and ``/sys``;
- implied parents: a directory reported ``C`` or ``T`` that is an ancestor of another reported
  change (``docker diff`` marks the parents of a change ``C``), so that an allow-list need not
  list ``/var`` and ``/var/lib``;
- what matches an ``ignore`` pattern.

The fixtures
============

``rodiff_guard(container, *, allow=(), ignore=(), only_test=False, runtime=..., host=...,
address=..., namespace=..., pod=...)``
    The marker as a function, for containers known only at run time: registers the container to
    be checked at teardown, as the marker would. With ``only_test=True`` tracking starts with the
    call phase, or at the call when made from the test function itself, and ends with it.

``rodiff_writes(container, *, ignore=(), runtime=..., host=..., address=..., namespace=...,
pod=...) -> WriteSet``
    The container's write set now: its writes (see above) as ``Write(kind, path)``, sorted by
    path. ``container`` may also be a finished ``rodiff.Tracker`` (``with rodiff.track(c) as
    block``): its changes, and what the block removed as ``D``.

``rodiff_snapshot``
    A recorded baseline that compares with a ``WriteSet``::

        def test_startup(app, rodiff_writes, rodiff_snapshot):
            assert rodiff_writes(app) == rodiff_snapshot

    The first run writes the snapshot file and passes (the terminal summary says so). Later runs
    fail on any new write, a path the file does not list (kinds are shown but paths are what is
    compared), with the new writes and the mounts covering them instead of the values' repr.
    Writes in the file that no longer happen do not fail; the terminal summary lists them.
    ``pytest --rodiff-update`` rewrites the files of the tests it runs. One test with several
    write sets takes ``rodiff_snapshot.named("db")``, a snapshot of its own.

Options
=======

``--rodiff-update``
    Rewrite the snapshots of the tests that run, instead of comparing with them.

ini ``rodiff_snapshot_dir`` (default ``__rodiff__``)
    The directory of the snapshots, relative to each test file's directory.

The snapshot file
=================

``<test file's directory>/__rodiff__/<test file stem>/<test name>.txt``, where the test name is
the node's name below its module (``TestClass.test_x[param]``) with every byte outside
``A-Za-z0-9_-.[]=+,@`` written ``%XX`` (a name past 200 bytes is cut and given a hash), and
``.NAME`` before ``.txt`` for ``named(NAME)``. UTF-8 text::

    # rodiff snapshot: what test_startup's container writes (tests/test_app.py::test_startup).
    # One write a line, sorted by path: KIND PATH, KIND A added, C changed, D deleted, T touched.
    # In paths \\\\ is a backslash, \\n \\t \\r control characters, \\xNN a byte that is not printable
    # UTF-8 (a trailing space is \\x20). Rewrite it with: pytest --rodiff-update 'tests/test_app.py::test_startup'
    A /run/app/app.pid
    C /var/lib/app/state.db

Lines starting with ``#`` and blank lines are comments. A pod's writes read
``KIND CONTAINER:/PATH``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import string
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, NamedTuple, Optional, Union, overload

import pytest

import rodiff

__all__ = [
    "Snapshot",
    "SnapshotComparison",
    "SnapshotError",
    "Write",
    "WriteSet",
    "escape_path",
    "unescape_path",
    "write_set",
]

MARKER = "rodiff_writes"

Runtime = Literal["docker", "containerd"]

_CONNECTION_OPTIONS = ("runtime", "host", "address", "namespace", "pod")
_KINDS = frozenset("ACDT")


# ---------------------------------------------------------------------------------------------
# Paths: escaping for the snapshot file and for the terminal, glob patterns.
# ---------------------------------------------------------------------------------------------

_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_UNESCAPES = {"\\": b"\\", "n": b"\n", "t": b"\t", "r": b"\r"}


def escape_path(path: Union[str, bytes]) -> str:
    """`path` as one line of printable text: `\\\\`, `\\n`, `\\t`, `\\r`, and `\\xNN` for each
    byte that is not printable UTF-8 (and for a trailing space). `unescape_path` reverses it."""
    raw = path if isinstance(path, bytes) else os.fsencode(path)
    text = raw.decode("utf-8", "surrogateescape")
    out: list[str] = []
    last = len(text) - 1
    for i, ch in enumerate(text):
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif "\udc80" <= ch <= "\udcff":  # a byte that is not UTF-8
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif not ch.isprintable() or (ch == " " and i == last):
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))
        else:
            out.append(ch)
    return "".join(out)


def unescape_path(text: str) -> bytes:
    """The bytes `escape_path` made `text` of; ValueError for a malformed escape."""
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "\\":
            out += ch.encode("utf-8", "surrogateescape")
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt in _UNESCAPES and nxt:
            out += _UNESCAPES[nxt]
            i += 2
        elif nxt == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", text[i + 2 : i + 4]):
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        else:
            raise ValueError(f"bad escape {text[i : i + 4]!r} at character {i}")
    return bytes(out)


def _printable(text: str) -> str:
    """`text` (arguments, reasons) with what a terminal cannot show escaped as in `escape_path`,
    backslashes left alone."""
    out: list[str] = []
    for ch in text:
        if "\udc80" <= ch <= "\udcff":
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif ch in "\n\t\r":
            out.append(_ESCAPES[ch])
        elif not ch.isprintable():
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))
        else:
            out.append(ch)
    return "".join(out)


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A path pattern (see the module documentation) as a regular expression."""
    out: list[str] = [] if pattern.startswith("/") else ["(?:.*/)?"]
    i, n = 0, len(pattern)
    while i < n:
        if pattern.startswith("/**", i) and (i + 3 == n or pattern[i + 3] == "/"):
            out.append("(?:/.*)?")  # any number of segments, none included
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "]") else i + 1)
            if end < 0:
                out.append(re.escape("["))
                i += 1
                continue
            body = pattern[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out), re.DOTALL)


class _Patterns:
    """A list of path patterns, compiled once."""

    def __init__(self, patterns: Iterable[str], what: str) -> None:
        if isinstance(patterns, (str, bytes)):
            patterns = [patterns]  # `allow="/run/**"`: one pattern, not its characters
        try:
            given = list(patterns)
        except TypeError:
            raise TypeError(f"{what} takes a list of path patterns, not {patterns!r}") from None
        self.patterns: list[str] = []
        self._regexes: list[re.Pattern[str]] = []
        for p in given:
            p = os.fsdecode(p) if isinstance(p, bytes) else p
            if not isinstance(p, str) or not p:
                raise TypeError(f"{what} takes path patterns (non-empty str), not {p!r}")
            try:
                self._regexes.append(_glob_regex(p))
            except re.error as e:
                raise ValueError(f"{what} pattern {p!r} is malformed: {e}") from None
            self.patterns.append(p)

    def match(self, path: str) -> bool:
        return any(r.fullmatch(path) for r in self._regexes)

    def __bool__(self) -> bool:
        return bool(self.patterns)


# ---------------------------------------------------------------------------------------------
# Writes and write sets.
# ---------------------------------------------------------------------------------------------


class Write(NamedTuple):
    """One write: the change's kind (`A`, `C`, `D`, `T`) and path (as `Change.path`: `os.fsdecode`
    of its bytes), and in a pod the container's name."""

    kind: str
    path: str
    container: Optional[str] = None

    @property
    def path_bytes(self) -> bytes:
        return os.fsencode(self.path)

    @property
    def key(self) -> tuple[str, bytes]:
        """What snapshots compare: container and path."""
        return (self.container or "", self.path_bytes)

    def line(self) -> str:
        """The write as a line of a snapshot file (and of reports): `A /path`."""
        where = escape_path(self.path)
        return f"{self.kind} {self.container}:{where}" if self.container else f"{self.kind} {where}"

    @classmethod
    def parse(cls, line: str) -> Write:
        """The write of a snapshot line; ValueError when it is not one."""
        if len(line) < 3 or line[0] not in _KINDS or line[1] not in " \t":
            raise ValueError("expected KIND PATH, KIND one of A C D T")
        rest, container = line[2:].lstrip(" \t"), None
        if not rest.startswith("/"):
            sep = rest.find(":/")
            if sep <= 0:
                raise ValueError("the path must be absolute")
            container, rest = rest[:sep], rest[sep + 1 :]
        return cls(line[0], os.fsdecode(unescape_path(rest)), container)


def _sort_key(w: Write) -> tuple[str, bytes]:
    return w.key


def _ancestors(path: bytes) -> Iterator[bytes]:
    while True:
        cut = path.rfind(b"/")
        if cut < 0 or path == b"/":
            return
        path = path[:cut] or b"/"
        yield path


def write_set(
    changes: Iterable[rodiff.Change], *, ignore: Iterable[str] = (), reverted: Iterable[rodiff.Change] = ()
) -> list[Write]:
    """The writes among `changes` (see the module documentation: what the runtime made, implied
    parent directories and `ignore` patterns left out), sorted by path. `reverted` (a tracker's)
    are changes that went away: the block removed them, written as `D`."""
    ignored = _Patterns(ignore, "ignore")
    entries: list[tuple[str, rodiff.Change]] = [(c.kind, c) for c in changes]
    entries += [("D", c) for c in reverted]
    parents: set[tuple[Optional[str], bytes]] = set()
    for _, c in entries:
        for parent in _ancestors(c.path_bytes):
            key = (c.container, parent)
            if key in parents:
                break  # and every ancestor above it
            parents.add(key)
    writes = []
    for kind, c in entries:
        if c.runtime_made:
            continue
        if kind in ("C", "T") and (c.container, c.path_bytes) in parents:
            continue  # an implied parent: the change below it speaks for itself
        if ignored and ignored.match(c.path):
            continue
        writes.append(Write(kind, c.path, c.container))
    return sorted(set(writes), key=_sort_key)


@dataclass
class _Source:
    """Where a write set came from, to plan the mounts that cover its writes."""

    label: str
    ref: Optional[str] = None
    runtime: Runtime = "docker"
    host: Optional[str] = None
    address: Optional[str] = None
    namespace: Optional[str] = None
    pod: Optional[str] = None
    tracker: Optional[rodiff.Tracker] = None

    def diff(self) -> list[rodiff.Change]:
        return rodiff.diff(
            self.ref, runtime=self.runtime, host=self.host, address=self.address, namespace=self.namespace, pod=self.pod
        )

    def track(self) -> rodiff.Tracker:
        return rodiff.track(
            self.ref, runtime=self.runtime, host=self.host, address=self.address, namespace=self.namespace, pod=self.pod
        )

    def plan(self, container: Optional[str]) -> rodiff.Plan:
        """The plan of the container (in a pod: `container`, when the writes name one)."""
        if self.tracker is not None:
            return self.tracker.plan(container)
        ref = container if self.pod and container else self.ref
        return rodiff.plan(
            ref, runtime=self.runtime, host=self.host, address=self.address, namespace=self.namespace, pod=self.pod
        )


class WriteSet(Sequence[Write]):
    """What a container wrote, as `rodiff_writes` returns it: `Write(kind, path)`s sorted by path.

    Compares equal to another WriteSet, or to a list of writes given as `Write`s, `(kind, path)`
    tuples or `"K /path"` lines, with the same writes; and with a `rodiff_snapshot`, which compares
    paths only (see `Snapshot`).
    """

    def __init__(self, writes: Iterable[Write], *, source: Optional[_Source] = None) -> None:
        self._writes: tuple[Write, ...] = tuple(sorted(set(writes), key=_sort_key))
        self._source = source

    @classmethod
    def of(
        cls,
        container: Any,
        *,
        ignore: Iterable[str] = (),
        runtime: Runtime = "docker",
        host: Optional[str] = None,
        address: Optional[str] = None,
        namespace: Optional[str] = None,
        pod: Optional[str] = None,
    ) -> WriteSet:
        """The write set of `container` now, or of a finished `rodiff.Tracker`'s block."""
        if isinstance(container, rodiff.Tracker):
            src = _Source(label=_label(container.container, container.pod), tracker=container)
            return cls(write_set(container.changes, ignore=ignore, reverted=container.reverted), source=src)
        ref = None if container is None else rodiff.container_ref(container)
        src = _Source(_label(container, pod), ref, runtime, host, address, namespace, pod)
        return cls(write_set(src.diff(), ignore=ignore), source=src)

    @property
    def paths(self) -> list[str]:
        return [w.path for w in self._writes]

    @property
    def label(self) -> str:
        """The container, as reports name it."""
        return self._source.label if self._source else "the container"

    def lines(self) -> list[str]:
        """The writes as snapshot lines (`A /path`)."""
        return [w.line() for w in self._writes]

    def plan(self) -> Optional[rodiff.Plan]:
        """The container's plan reduced to the mounts that cover these writes (a pod's: of the
        first container that has writes); None when the write set does not know its container."""
        if self._source is None:
            return None
        containers = sorted({w.container or "" for w in self._writes})
        container = containers[0] if containers else None
        return self._source.plan(container or None).covering(
            w.path_bytes for w in self._writes if (w.container or "") == (container or "")
        )

    @overload
    def __getitem__(self, index: int) -> Write: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Write]: ...
    def __getitem__(self, index: Union[int, slice]) -> Union[Write, Sequence[Write]]:
        return self._writes[index]

    def __len__(self) -> int:
        return len(self._writes)

    def __iter__(self) -> Iterator[Write]:
        return iter(self._writes)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, WriteSet):
            return self._writes == other._writes
        if isinstance(other, (list, tuple)):
            try:
                return self._writes == tuple(sorted(set(_as_write(o) for o in other), key=_sort_key))
            except (TypeError, ValueError):
                return False
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"WriteSet({self.lines()!r})"


def _as_write(item: object) -> Write:
    if isinstance(item, Write):
        return item
    if isinstance(item, str):
        return Write.parse(item)
    if isinstance(item, tuple) and len(item) in (2, 3):
        kind, path = item[0], item[1]
        path = os.fsdecode(path) if isinstance(path, bytes) else path
        return Write(kind, path, item[2] if len(item) == 3 else None)
    raise TypeError(f"not a write: {item!r}")


def _label(container: Any, pod: Optional[str] = None) -> str:
    if container is None:
        return f"pod {pod}" if pod else "the container"
    name = getattr(container, "name", None)
    if isinstance(name, str) and name:
        return name
    try:
        return rodiff.container_ref(container)
    except (TypeError, ValueError):
        return repr(container)


# ---------------------------------------------------------------------------------------------
# Reports: the mounts that cover writes.
# ---------------------------------------------------------------------------------------------


def _indent(text: str, prefix: str = "  ") -> list[str]:
    return [prefix + line if line else "" for line in text.splitlines()]


def _cover_report(source: Optional[_Source], writes: Sequence[Write], *, k8s: bool = True) -> list[str]:
    """The mounts that would cover `writes`: `docker run` arguments, a mount a line with the paths
    it covers, what no mount can cover, and (with `k8s`) the pod-template patch."""
    if source is None or not writes:
        return []
    lines: list[str] = []
    by_container: dict[Optional[str], list[Write]] = {}
    for w in writes:
        by_container.setdefault(w.container, []).append(w)
    for container, group in by_container.items():
        try:
            plan = source.plan(container).covering(w.path_bytes for w in group)
        except (rodiff.RodiffError, ValueError, TypeError) as e:
            lines.append(f"(no plan of the mounts that would cover them: {_printable(str(e))})")
            continue
        what = "it" if len(group) == 1 else "them"
        where = f" of {container}" if container else ""
        covered: set[bytes] = set()
        if plan.mounts:
            lines.append(f"mounts that would cover {what}{where} (docker run arguments):")
            args = []
            for mount in plan.mounts:
                top = mount.path_bytes.rstrip(b"/") + b"/"
                under = [w for w in group if w.path_bytes == mount.path_bytes or w.path_bytes.startswith(top)]
                covered.update(w.path_bytes for w in under)
                arg = _printable(shlex.join(str(a) for a in mount.docker_args()))
                args.append((arg, ", ".join(escape_path(w.path) for w in under[:3]) + (" ..." if len(under) > 3 else "")))
            width = max(len(a) for a, _ in args)
            lines += [f"  {a.ljust(width)}  # {c}" if c else f"  {a}" for a, c in args]
        rest = [w for w in group if w.path_bytes not in covered]
        if rest:
            reasons = {os.fsencode(p): r for p, r in [*plan.uncovered, *plan.ignored]}
            lines.append("no mount covers:")
            for w in rest:
                reason = reasons.get(w.path_bytes)
                lines.append(f"  {escape_path(w.path)}" + (f": {_printable(reason)}" if reason else ""))
        if k8s and plan.mounts:
            try:
                lines.append("as a Kubernetes pod-template patch:")
                lines += _indent(plan.k8s())
            except rodiff.RodiffError as e:
                lines.append(f"  (no Kubernetes patch: {_printable(str(e))})")
    return lines


#: At most this many lines of writes in one report; the rest are counted.
REPORT_LINES = 40


def _listing(writes: Sequence[Write], prefix: str = "  ") -> list[str]:
    """`writes` as report lines a person takes in at a glance: an added tree is one line, its root
    with the number of entries added below it (`A /var/cache/app (+12 below)`), and past
    `REPORT_LINES` lines the remaining writes are counted."""
    trees: list[tuple[Write, int]] = []  # (write, entries added below it)
    root = -1  # the index in `trees` of the added directory the next writes may be below
    for w in writes:
        if root >= 0:
            top = trees[root][0]
            if w.container == top.container and w.path_bytes.startswith(top.path_bytes.rstrip(b"/") + b"/"):
                if w.kind == "A":
                    trees[root] = (top, trees[root][1] + 1)
                    continue
            else:
                root = -1
        trees.append((w, 0))
        if w.kind == "A" and root < 0:
            root = len(trees) - 1
    shown = trees if len(trees) <= REPORT_LINES else trees[: REPORT_LINES - 1]
    lines = [prefix + w.line() + (f" (+{below} below)" if below else "") for w, below in shown]
    if len(shown) < len(trees):
        rest = sum(1 + below for _, below in trees[len(shown) :])
        lines.append(f"{prefix}... and {_count(rest, 'write')} more")
    return lines


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


# ---------------------------------------------------------------------------------------------
# The marker and rodiff_guard: watches checked at teardown.
# ---------------------------------------------------------------------------------------------


@dataclass
class _Watch:
    source: _Source
    allow: _Patterns
    ignore: _Patterns
    only_test: bool
    tracker: Optional[rodiff.Tracker] = None
    tracking: bool = False
    error: Optional[BaseException] = None

    def same_check(self, other: _Watch) -> bool:
        """Whether `other` checks the same container in the same way."""
        a, b = self.source, other.source
        return (
            (a.ref, a.runtime, a.host, a.address, a.namespace, a.pod) == (b.ref, b.runtime, b.host, b.address, b.namespace, b.pod)
            and (self.allow.patterns, self.ignore.patterns, self.only_test)
            == (other.allow.patterns, other.ignore.patterns, other.only_test)
        )

    def start(self) -> None:
        if self.only_test and self.tracker is None and self.error is None:
            tracker = self.source.track()
            try:
                tracker.__enter__()
            except Exception as e:  # reported at teardown, not as the test's own failure
                self.error = e
                return
            self.tracker, self.tracking = tracker, True

    def stop(self) -> None:
        if self.tracker is not None and self.tracking:
            self.tracking = False
            try:
                self.tracker.__exit__(None, None, None)
            except Exception as e:  # reported at teardown, not in place of the test's outcome
                self.error = e

    def check(self) -> Optional[str]:
        """The failure report, or None when every write is allowed."""
        src = self.source
        try:
            if self.only_test:
                self.stop()
                if self.error is not None:
                    raise self.error
                if self.tracker is None:
                    return None  # the call phase never started
                writes = write_set(self.tracker.changes, ignore=self.ignore.patterns, reverted=self.tracker.reverted)
            else:
                writes = write_set(src.diff(), ignore=self.ignore.patterns)
        except Exception as e:
            return f"rodiff: cannot tell what container {src.label} wrote: {type(e).__name__}: {_printable(str(e))}"
        unexpected = [w for w in writes if not self.allow.match(w.path)]
        if not unexpected:
            return None
        scope = "during the test" if self.only_test else ""
        lines = [
            f"rodiff: container {src.label} wrote {_count(len(unexpected), 'path')}{' ' + scope if scope else ''}"
            " outside its allow-list",
            "  allowed: " + (", ".join(self.allow.patterns) if self.allow else "(nothing)"),
        ]
        lines += _listing(unexpected)
        lines += _cover_report(src, unexpected)
        return "\n".join(lines)


@dataclass
class _ItemState:
    watches: list[_Watch] = field(default_factory=list)
    in_call: bool = False
    called: bool = False


_STATE = pytest.StashKey[_ItemState]()
_SUMMARY = pytest.StashKey[list[str]]()


def _state(item: pytest.Item) -> _ItemState:
    state = item.stash.get(_STATE, None)
    if state is None:
        state = item.stash[_STATE] = _ItemState()
    return state


def _watch(
    state: _ItemState,
    target: Any,
    label: Optional[str],
    *,
    allow: Iterable[str] = (),
    ignore: Iterable[str] = (),
    only_test: bool = False,
    runtime: Runtime = "docker",
    host: Optional[str] = None,
    address: Optional[str] = None,
    namespace: Optional[str] = None,
    pod: Optional[str] = None,
) -> None:
    if target is None and pod is None:
        raise TypeError("name a container (or a pod)")
    if not isinstance(only_test, bool):
        raise TypeError(f"only_test takes True or False, not {only_test!r}")
    if runtime not in ("docker", "containerd"):
        raise ValueError(f"runtime takes \"docker\" or \"containerd\", not {runtime!r}")
    ref = None if target is None else rodiff.container_ref(target)
    source = _Source(label or _label(target, pod), ref, runtime, host, address, namespace, pod)
    watch = _Watch(source, _Patterns(allow, "allow"), _Patterns(ignore, "ignore"), only_test)
    if any(w.same_check(watch) for w in state.watches):
        return  # the marker and rodiff_guard asking for one check: it runs, and reports, once
    state.watches.append(watch)
    if state.in_call:
        watch.start()


_MARKER_OPTIONS = frozenset(("container", "allow", "ignore", "only_test", *_CONNECTION_OPTIONS))


def _marker_options(mark: pytest.Mark) -> dict[str, Any]:
    if len(mark.args) > 1 or (mark.args and "container" in mark.kwargs):
        raise TypeError("takes one container (positional or container=)")
    unknown = set(mark.kwargs) - _MARKER_OPTIONS
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(sorted(unknown))}; it takes {', '.join(sorted(_MARKER_OPTIONS))}")
    options = dict(mark.kwargs)
    if mark.args:
        options["container"] = mark.args[0]
    return options


def _container_like(value: Any) -> bool:
    """Whether a fixture's value names a container, as `rodiff.container_ref` takes them."""
    try:
        rodiff.container_ref(value)
    except TypeError:
        return False
    except ValueError:
        return True  # a container not started yet: its own error comes at the check
    return True


def _resolve(request: pytest.FixtureRequest, container: Any) -> tuple[Any, Optional[str]]:
    """A marker's `container`: the value of the fixture of that name if the test has one, else the
    container's name or id. Returns (target, label)."""
    if not isinstance(container, str) or not container:
        return container, None
    try:
        value = request.getfixturevalue(container)
    except pytest.FixtureLookupError as e:
        if e.argname != container:
            raise
        return container, container
    if not _container_like(value):
        return container, container  # a fixture of that name that is no container (pytest's `cache`)
    name = _label(value)
    return value, container if name == container else f"{name} (fixture {container})"


@pytest.fixture(autouse=True)
def _rodiff_writes_marker(request: pytest.FixtureRequest) -> None:
    """Sets up the `rodiff_writes` markers' containers and registers them for the teardown check."""
    item = request.node
    marks = list(item.iter_markers(MARKER))
    if not marks:
        return
    state = _state(item)
    seen = set()
    for mark in marks:  # closest first
        problem = None
        try:
            options = _marker_options(mark)
        except TypeError as e:
            problem = f"@pytest.mark.{MARKER}: {e}"
        if problem:
            pytest.fail(problem, pytrace=False)
        container = options.pop("container", None)
        key = (repr(container), *(repr(options.get(o)) for o in _CONNECTION_OPTIONS))
        if key in seen:
            continue
        seen.add(key)
        target, label = _resolve(request, container)
        try:
            _watch(state, target, label, **options)
        except (TypeError, ValueError) as e:
            problem = f"@pytest.mark.{MARKER}({container!r}): {e}"
        if problem:
            pytest.fail(problem, pytrace=False)


@pytest.fixture
def rodiff_guard(request: pytest.FixtureRequest) -> Callable[..., None]:
    """`rodiff_guard(container, allow=[...], ...)`: check at teardown that `container` (a docker-py
    or testcontainers container, a name or id) writes only paths matching `allow`, as the
    `rodiff_writes` marker does."""
    state = _state(request.node)

    def guard(
        container: Any = None,
        *,
        allow: Iterable[str] = (),
        ignore: Iterable[str] = (),
        only_test: bool = False,
        runtime: Runtime = "docker",
        host: Optional[str] = None,
        address: Optional[str] = None,
        namespace: Optional[str] = None,
        pod: Optional[str] = None,
    ) -> None:
        _watch(
            state, container, None, allow=allow, ignore=ignore, only_test=only_test,
            runtime=runtime, host=host, address=address, namespace=namespace, pod=pod,
        )  # fmt: skip

    return guard


@pytest.fixture
def rodiff_writes() -> Callable[..., WriteSet]:
    """`rodiff_writes(container, ignore=(), runtime=..., host=..., pod=...)`: the container's
    write set now (a `WriteSet`); `container` may also be a finished `rodiff.Tracker`."""
    return WriteSet.of


# ---------------------------------------------------------------------------------------------
# Snapshots.
# ---------------------------------------------------------------------------------------------


class SnapshotError(Exception):
    """A snapshot file that cannot be read."""


@dataclass
class SnapshotComparison:
    """A write set compared with a snapshot."""

    snapshot: Snapshot
    writes: WriteSet
    stored: list[Write]
    new: list[Write]
    gone: list[Write]
    rekinded: list[tuple[Write, Write]]  # (stored, now)
    cover: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.new

    def explanation(self, *, k8s: bool) -> list[str]:
        snap = self.snapshot
        lines = [
            f"rodiff: {self.writes.label} made {_count(len(self.new), 'write')} not in its snapshot {snap.display_path}"
        ]
        lines += _listing(self.new)
        lines += self.cover if k8s else [line for line in self.cover_docker()]
        if self.gone:
            lines.append(f"{_count(len(self.gone), 'write')} of the snapshot no longer happen:")
            lines += _listing(self.gone)
        lines.append(f"accept them: pytest --rodiff-update {shlex.quote(snap.nodeid)}")
        return lines

    def cover_docker(self) -> Iterator[str]:
        for line in self.cover:
            if line.startswith("as a Kubernetes"):
                return
            yield line


_SAFE_CHARS = frozenset(string.ascii_letters + string.digits + "_-.[]=+,@")


def safe_file_name(name: str) -> str:
    """`name` as a file name that says what it was: bytes outside `A-Za-z0-9_-.[]=+,@` as `%XX`
    (a `%` too, so distinct names stay distinct), cut with a hash past 200 bytes."""
    raw = name.encode("utf-8", "surrogateescape")
    safe = "".join(chr(b) if chr(b) in _SAFE_CHARS else f"%{b:02X}" for b in raw)
    if safe.startswith("."):
        safe = "%2E" + safe[1:]
    if len(safe) > 200:
        safe = safe[:180] + "~" + hashlib.sha256(raw).hexdigest()[:16]
    return safe


def _test_name(item: pytest.Item) -> str:
    """The node's name below its module: `TestClass.test_x[param]`."""
    names: list[str] = []
    for node in item.listchain():
        if isinstance(node, pytest.Module):
            names = []
        else:
            names.append(node.name)
    return ".".join(names) or item.name


_HEADER = """\
# rodiff snapshot: what {test}'s container writes ({nodeid}).
# One write a line, sorted by path: KIND PATH, KIND A added, C changed, D deleted, T touched.
# In paths \\\\ is a backslash, \\n \\t \\r control characters, \\xNN a byte that is not printable
# UTF-8 (a trailing space is \\x20). Rewrite it with: pytest --rodiff-update {update}
"""


class Snapshot:
    """The `rodiff_snapshot` fixture: a write set recorded in a file beside the test.

    `writes == snapshot` writes the file when it is missing (or with `--rodiff-update`) and is
    True; otherwise it is True unless `writes` has a path the file does not list. See the module
    documentation for the file's place and format.
    """

    def __init__(self, item: pytest.Item, name: Optional[str] = None) -> None:
        self._item = item
        self._name = name
        config = item.config
        directory = config.getini("rodiff_snapshot_dir") or "__rodiff__"
        file_name = safe_file_name(_test_name(item))
        if name is not None:
            file_name += "." + safe_file_name(name)
        self.path: Path = Path(item.path).parent / directory / item.path.stem / (file_name + ".txt")
        self.nodeid: str = item.nodeid
        self._written: Optional[WriteSet] = None
        self._cache: dict[int, SnapshotComparison] = {}
        self.last: Optional[SnapshotComparison] = None

    def named(self, name: str) -> Snapshot:
        """Another snapshot of the same test, in a file of its own (`<test>.<name>.txt`)."""
        return Snapshot(self._item, name)

    @property
    def display_path(self) -> str:
        try:
            return str(self.path.relative_to(self._item.config.rootpath))
        except ValueError:
            return str(self.path)

    def read(self) -> Optional[list[Write]]:
        """The writes the file lists, or None when there is no file."""
        __tracebackhide__ = True  # a SnapshotError points at the test's comparison, not in here
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise SnapshotError(f"{self.display_path}: cannot read it: {e.strerror or e}") from None
        try:
            text = data.decode("utf-8").removeprefix("\ufeff")  # an editor's byte-order mark
        except UnicodeDecodeError as e:
            raise SnapshotError(f"{self.display_path}: not UTF-8 ({e})") from None
        writes = []
        for number, line in enumerate(text.split("\n"), 1):
            line = line[:-1] if line.endswith("\r") else line
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                writes.append(Write.parse(line))
            except ValueError as e:
                raise SnapshotError(f"{self.display_path}:{number}: {e}: {line!r}") from None
        return writes

    def render(self, writes: WriteSet) -> str:
        test = _test_name(self._item) + (f" ({self._name})" if self._name else "")
        nodeid = _printable(self.nodeid)
        header = _HEADER.format(test=_printable(test), nodeid=nodeid, update=shlex.quote(nodeid))
        return header + "".join(line + "\n" for line in writes.lines())

    def compare(self, writes: WriteSet) -> SnapshotComparison:
        """Compares `writes` with the file, writing the file when it is missing or when
        `--rodiff-update` asks to (see the class documentation)."""
        __tracebackhide__ = True
        cached = self._cache.get(id(writes))
        if cached is not None and cached.writes is writes:
            return cached  # pytest's assertion explanation asks again
        config = self._item.config
        summary = config.stash.setdefault(_SUMMARY, [])
        stored = self.read()
        update = bool(config.getoption("rodiff_update"))
        if stored is None or update:
            if self._written is not None and self._written != writes:
                raise SnapshotError(
                    f"{self.display_path}: this test compared two different write sets with one snapshot; "
                    "give each its own with rodiff_snapshot.named(NAME)"
                )
            text = self.render(writes)
            if stored is None or self.path.read_text(encoding="utf-8") != text:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.write_text(text, encoding="utf-8", newline="\n")
                what = "wrote" if stored is None else "updated"
                summary.append(f"{what} {self.display_path} ({_count(len(writes), 'write')}) for {self.nodeid}")
            self._written = writes
            stored = list(writes)
        now = {w.key: w for w in writes}
        before = {w.key: w for w in stored}
        result = SnapshotComparison(
            self,
            writes,
            stored,
            new=[w for w in writes if w.key not in before],
            gone=[w for w in stored if w.key not in now],
            rekinded=[(before[k], w) for k, w in now.items() if k in before and before[k].kind != w.kind],
        )
        if result.gone:
            summary.append(
                f"{self.nodeid}: {_count(len(result.gone), 'write')} of {self.display_path} no longer "
                f"{'happens' if len(result.gone) == 1 else 'happen'} (--rodiff-update drops "
                f"{'it' if len(result.gone) == 1 else 'them'}): " + ", ".join(w.line() for w in result.gone)
            )
        if result.rekinded:
            summary.append(
                f"{self.nodeid}: kinds changed since {self.display_path}: "
                + ", ".join(f"{escape_path(a.path)} {a.kind}->{b.kind}" for a, b in result.rekinded)
            )
        if result.new:
            result.cover = _cover_report(writes._source, result.new)
            self._item.add_report_section("call", "rodiff", "\n".join(result.explanation(k8s=True)))
        self._cache = {id(writes): result}
        self.last = result
        return result

    def __eq__(self, other: object) -> bool:
        __tracebackhide__ = True
        if isinstance(other, WriteSet):
            return self.compare(other).passed
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<rodiff snapshot {self.display_path}>"


@pytest.fixture
def rodiff_snapshot(request: pytest.FixtureRequest) -> Snapshot:
    """A recorded write set: `assert rodiff_writes(container) == rodiff_snapshot`."""
    return Snapshot(request.node)


# ---------------------------------------------------------------------------------------------
# Hooks.
# ---------------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rodiff", "rodiff: what containers write")
    group.addoption(
        "--rodiff-update",
        action="store_true",
        dest="rodiff_update",
        default=False,
        help="rewrite the rodiff_snapshot files of the tests that run instead of comparing with them",
    )
    parser.addini(
        "rodiff_snapshot_dir",
        "directory of rodiff_snapshot files, relative to each test file's directory (default __rodiff__)",
        default="__rodiff__",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(container, *, allow=(), ignore=(), only_test=False, runtime='docker', host=None, "
        "address=None, namespace=None, pod=None): at teardown, fail unless every path the container "
        "(a fixture's name, or a container's name or id) wrote matches an allow pattern (rodiff)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # A fresh start for every run of the test: plugins that run a test again (pytest-rerunfailures)
    # keep the item, and with it what the last run watched.
    item.stash[_STATE] = _ItemState()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    state = item.stash.get(_STATE, None)
    if state is None:
        return (yield)
    for watch in state.watches:
        watch.start()
    state.in_call = state.called = True
    try:
        return (yield)
    except pytest.skip.Exception:
        state.called = False
        raise
    finally:
        state.in_call = False
        for watch in state.watches:
            watch.stop()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: Optional[pytest.Item]) -> Iterator[None]:
    # Before any fixture is torn down: the containers still run.
    state = item.stash.get(_STATE, None)
    failures: list[str] = []
    if state is not None and state.called:
        failures = [msg for msg in (w.check() for w in state.watches) if msg]
    try:
        result = yield
    except BaseException:
        if failures:
            item.add_report_section("teardown", "rodiff", "\n\n".join(failures))
        raise
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)
    return result


def pytest_assertrepr_compare(config: pytest.Config, op: str, left: object, right: object) -> Optional[list[str]]:
    if op != "==":
        return None
    if isinstance(left, Snapshot) and isinstance(right, WriteSet):
        left, right = right, left
    if isinstance(left, WriteSet) and isinstance(right, Snapshot):
        try:
            comparison = right.compare(left)
        except Exception as e:
            return [f"rodiff: cannot compare with {right.display_path}: {_printable(str(e))}"]
        return comparison.explanation(k8s=False) if comparison.new else None
    if isinstance(left, WriteSet) and isinstance(right, (WriteSet, list, tuple)):
        try:
            other = right if isinstance(right, WriteSet) else WriteSet(_as_write(o) for o in right)
        except (TypeError, ValueError):
            return None
        theirs, ours = set(other), set(left)
        extra = [w for w in left if w not in theirs]
        missing = [w for w in other if w not in ours]
        lines = [f"rodiff: the write sets differ ({len(extra)} more on the left, {len(missing)} more on the right)"]
        lines += [f"  + {w.line()}" for w in extra] + [f"  - {w.line()}" for w in missing]
        return lines
    return None


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    lines = config.stash.get(_SUMMARY, [])
    if lines:
        terminalreporter.write_sep("-", "rodiff snapshots")
        for line in lines:
            terminalreporter.write_line(line)
