"""Linux network namespaces for tests across real network boundaries (iproute2, run as root).

A :class:`Netns` makes namespaces named ``lsn<PID>x<TAG>-<ROLE>`` (unique per test run, so parallel
runs never collide), joins them with veth pairs to a bridge in one of them, gives each end an
address on a private subnet that lives only inside these namespaces, and brings ``lo`` up in each.
A process runs inside a namespace with ``ip netns exec NS CMD`` (:meth:`Namespace.command`); the
test itself reaches into one with :meth:`Namespace.call`, which runs a function in a thread that
first joins the namespace (``setns``), so a ZeroMQ context or an asyncio loop made there opens its
sockets inside it. :meth:`Netns.cut` drops every packet both ways on a link (a ``blackhole``
qdisc on both veth ends: no reset, no ICMP, no carrier change; TCP sees silence, as across a
broken WAN) and :meth:`Netns.heal` lifts it.

:meth:`Netns.close` kills every process still inside the namespaces (``ip netns pids``) before it
deletes them (with a namespace, its veths go). Namespaces left by a run that died before its
finalizers (kill -9 of pytest) are swept at the next start: their PID is gone.

Without root, or where ``ip netns add`` fails, :func:`require_netns` skips in one line, and fails
under ``CI=true``.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

__all__ = ["Link", "Namespace", "Netns", "netns", "require_netns"]

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
PREFIX = "lsn"
_OWNED = re.compile(rf"^{PREFIX}(\d+)x[0-9a-f]+-")
_libc = ctypes.CDLL(None, use_errno=True)


def _run(command: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: exit {done.returncode}: {done.stderr.strip()}")
    return done


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run(["ip", *args], check)


def _skip(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a skip is a failure)")
    pytest.skip(reason)


def require_netns() -> None:
    """Skip (fail under CI=true) unless this process is root and ``ip netns add`` works."""
    if os.geteuid() != 0:
        _skip("network namespace tests need root (ip netns add)")
    probe = f"{PREFIX}{os.getpid()}x{uuid.uuid4().hex[:6]}-probe"
    try:
        made = _ip("netns", "add", probe, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        _skip(f"ip netns does not work here: {exc}")
    if made.returncode != 0:
        _skip(f"ip netns add failed: {made.stderr.strip()}")
    _ip("netns", "delete", probe, check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pids_inside(name: str) -> list[int]:
    return [int(pid) for pid in _ip("netns", "pids", name, check=False).stdout.split()]


def _kill_inside(name: str) -> None:
    """kill -9 every process inside namespace ``name`` and wait (5 s at most) until none is left."""
    deadline = time.monotonic() + 5
    while (pids := _pids_inside(name)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def sweep_orphans() -> None:
    """Delete the namespaces of earlier runs whose pytest process is gone (killed before its finalizers)."""
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        owner = _OWNED.match(name)
        if owner and not _alive(int(owner.group(1))):
            _kill_inside(name)
            _ip("netns", "delete", name, check=False)


def _enter(name: str) -> None:
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Namespace:
    """One network namespace of a :class:`Netns`."""

    name: str

    def command(self, args: list[str]) -> list[str]:
        """``args`` run inside this namespace (``ip netns exec``, which execs: the PID is the command's)."""
        return ["ip", "netns", "exec", self.name, *args]

    def ip(self, *args: str) -> str:
        """``ip -n NS ARGS``; its output."""
        return _ip("-n", self.name, *args).stdout

    def pids(self) -> list[str]:
        """The processes inside this namespace (``ip netns pids``)."""
        return [str(pid) for pid in _pids_inside(self.name)]

    def tc(self, *args: str) -> None:
        """``tc ARGS`` inside this namespace."""
        _run(self.command(["tc", *args]))

    def call(self, work: Callable[[], T], timeout: float = 30.0) -> T:
        """``work()`` in a new thread that has joined this namespace; its result (or its exception)."""
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                _enter(self.name)
                outcome["value"] = work()
            except BaseException as exc:  # handed to the caller
                outcome["error"] = exc

        thread = threading.Thread(target=run, name=f"in-{self.name}", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"{work!r} inside {self.name} did not finish in {timeout} s")
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Link:
    """A veth pair: ``inner`` in namespace ``ns`` (address ``address``), ``outer`` on the bridge's side."""

    ns: Namespace
    inner: str
    hub: Namespace
    outer: str
    address: str


class Netns:
    """Namespaces of one test, joined to a bridge in a hub namespace; :meth:`close` removes them all."""

    def __init__(self, subnet: str = "10.199.0") -> None:
        self.tag = f"{PREFIX}{os.getpid()}x{uuid.uuid4().hex[:6]}"
        self.subnet = subnet  # a /24 that exists only inside these namespaces
        self.namespaces: list[Namespace] = []
        self.hosts = 0
        self.cuts: set[Link] = set()

    def add(self, role: str) -> Namespace:
        """A new namespace with ``lo`` up."""
        ns = Namespace(f"{self.tag}-{role}")
        _ip("netns", "add", ns.name)
        self.namespaces.append(ns)
        ns.ip("link", "set", "lo", "up")
        return ns

    def hub(self, role: str, bridge: str = "br0") -> tuple[Namespace, str]:
        """A namespace holding a bridge with the subnet's first address (``.1``); returns it and that address."""
        ns = self.add(role)
        ns.ip("link", "add", bridge, "type", "bridge")
        self.hosts = 1
        address = f"{self.subnet}.1"
        ns.ip("addr", "add", f"{address}/24", "dev", bridge)
        ns.ip("link", "set", bridge, "up")
        return ns, address

    def attach(self, ns: Namespace, hub: Namespace, bridge: str = "br0") -> Link:
        """Join ``ns`` to ``hub``'s bridge with a veth pair (``eth0`` in ``ns``); ``ns`` gets the next address."""
        self.hosts += 1
        outer = f"p-{ns.name.rsplit('-', 1)[1]}"[:15]
        _ip("link", "add", "eth0", "netns", ns.name, "type", "veth", "peer", "name", outer, "netns", hub.name)
        hub.ip("link", "set", outer, "master", bridge)
        hub.ip("link", "set", outer, "up")
        address = f"{self.subnet}.{self.hosts}"
        ns.ip("addr", "add", f"{address}/24", "dev", "eth0")
        ns.ip("link", "set", "eth0", "up")
        return Link(ns, "eth0", hub, outer, address)

    def cut(self, link: Link) -> None:
        """Drop every packet both ways on ``link`` (a blackhole qdisc on both ends); silent, like a dead WAN."""
        link.ns.tc("qdisc", "replace", "dev", link.inner, "root", "blackhole")
        link.hub.tc("qdisc", "replace", "dev", link.outer, "root", "blackhole")
        self.cuts.add(link)

    def heal(self, link: Link) -> None:
        """Let packets through ``link`` again."""
        link.ns.tc("qdisc", "del", "dev", link.inner, "root")
        link.hub.tc("qdisc", "del", "dev", link.outer, "root")
        self.cuts.discard(link)

    def close(self) -> None:
        """Kill every process left inside the namespaces, then delete them (their veths go with them)."""
        for ns in self.namespaces:
            _kill_inside(ns.name)
        for ns in reversed(self.namespaces):
            _ip("netns", "delete", ns.name, check=False)
        self.namespaces.clear()


@pytest.fixture
def netns() -> Iterator[Netns]:
    """A :class:`Netns` for one test (skips without root or ``ip netns``); everything removed at teardown."""
    require_netns()
    sweep_orphans()
    made = Netns()
    try:
        yield made
    finally:
        made.close()
