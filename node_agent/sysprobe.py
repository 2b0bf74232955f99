"""The built-in SystemStats probe and the agent's NodeInfo, both from psutil.

The probe runs every second on every node, so it does only the psutil work a
sample needs: CPU percentages are non-blocking (primed at construction), the
list of mounted filesystems is cached for a minute, and the network and disk
totals are summed from the per-NIC and per-device counters instead of being
read twice (the whole devices among those, as psutil counts its own disk total,
are looked up in /sys/block once a minute, not on every sample).
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from operator import attrgetter
from pathlib import Path
from typing import Any, NamedTuple

import psutil

import messages
from messages import DiskIO, DiskUsage, NetIO, NodeInfo, SystemStats
from node_agent.addons import Probe

__all__ = ["SystemStatsProbe", "disk_total", "node_info", "rate", "whole_disks"]

log = logging.getLogger(__name__)

# Mounts change rarely; listing them is the dearest part of a sample.
PARTITIONS_TTL = 60.0

_NET_FIELDS = ("bytes_sent", "bytes_recv", "packets_sent", "packets_recv", "errin", "errout", "dropin", "dropout")
_DISK_FIELDS = ("read_bytes", "write_bytes", "read_count", "write_count")
_disk_values = attrgetter(*_DISK_FIELDS)
_net_values = attrgetter(*_NET_FIELDS)
SYS_BLOCK = Path("/sys/block")  # Linux lists whole devices here, partitions only beneath them


class _Mount(NamedTuple):
    mountpoint: str
    device: str
    fstype: str


def rate(current: int, previous: int | None, elapsed: float) -> float:
    """Bytes per second between two counter readings; 0 without a previous one or on a reset."""
    if previous is None or elapsed <= 0 or current < previous:
        return 0.0
    return (current - previous) / elapsed


def node_info(node: str, instance: str, request_types: Iterable[str] = ()) -> NodeInfo:
    """The NodeInfo an agent sends in its HELLO; ``request_types`` are the node requests it answers."""
    return NodeInfo(
        node=node,
        hostname=socket.gethostname(),
        os=platform.system(),
        os_release=platform.release(),
        cpu_count=psutil.cpu_count() or os.cpu_count() or 0,
        memory_total=psutil.virtual_memory().total,
        boot_time=psutil.boot_time(),
        agent_version=messages.__version__,
        instance=instance,
        python_version=platform.python_version(),
        pid=os.getpid(),
        request_types=list(request_types),
    )


class SystemStatsProbe(Probe):
    """One psutil sample of the node per call (report type ``SystemStats``).

    Rates are bytes per second against the previous sample (0 on the first);
    ``interval`` is the seconds since the previous sample (0 on the first).
    """

    name = "SystemStats"
    reporttype = "SystemStats"
    interval = None

    def __init__(self, partitions_ttl: float = PARTITIONS_TTL) -> None:
        # The first non-blocking cpu_percent() call only sets the baseline.
        psutil.cpu_percent(interval=None)
        psutil.cpu_percent(interval=None, percpu=True)
        self._partitions_ttl = partitions_ttl
        self._mounts: list[_Mount] = []
        self._mounts_at = float("-inf")
        self._prev_clock: float | None = None
        self._prev_disk: dict[str, tuple[int, int]] = {}
        self._prev_net: dict[str, tuple[int, int]] = {}
        self._whole: frozenset[str] | None = None  # the whole devices among the disks last seen
        self._whole_of: frozenset[str] = frozenset()  # the disk names _whole was worked out for
        self._whole_at = float("-inf")

    def getReport(self, now: float) -> SystemStats:
        """A SystemStats sample taken now (``now`` is its epoch time)."""
        clock = time.monotonic()
        elapsed = 0.0 if self._prev_clock is None else clock - self._prev_clock
        self._prev_clock = clock
        stats = SystemStats(time=now, interval=elapsed, cpu_percent=psutil.cpu_percent(interval=None))
        stats.cpu_percent_per_cpu.extend(psutil.cpu_percent(interval=None, percpu=True))
        stats.load1, stats.load5, stats.load15 = _loadavg()
        _fill_memory(stats)
        stats.disks.extend(self._disk_usage(clock))
        self._fill_disk_io(stats, elapsed, clock)
        self._fill_net_io(stats, elapsed)
        return stats

    def _disk_usage(self, clock: float) -> list[DiskUsage]:
        if clock - self._mounts_at >= self._partitions_ttl:
            self._mounts = _list_mounts()
            self._mounts_at = clock
        result = []
        for mount in self._mounts:
            try:
                usage = psutil.disk_usage(mount.mountpoint)
            except OSError as exc:  # PermissionError included: an unreadable or vanished mount
                log.debug("skipping disk usage of %s: %s", mount.mountpoint, exc)
                continue
            result.append(
                DiskUsage(
                    mountpoint=mount.mountpoint,
                    device=mount.device,
                    fstype=mount.fstype,
                    total=usage.total,
                    used=usage.used,
                    free=usage.free,
                    percent=usage.percent,
                )
            )
        return result

    def _fill_disk_io(self, stats: SystemStats, elapsed: float, clock: float) -> None:
        per_disk = {name: _disk_values(counters) for name, counters in _disk_counters().items()}
        if not per_disk:
            self._prev_disk = {}
            return
        previous, self._prev_disk = self._prev_disk, {}
        for name in sorted(per_disk):
            stats.disk_io.append(self._disk_entry(name, per_disk[name], previous, elapsed))
        total = disk_total(per_disk, self._whole_disks(per_disk, clock))
        stats.disk_io_total.CopyFrom(self._disk_entry("total", total, previous, elapsed))

    def _whole_disks(self, per_disk: Mapping[str, Any], clock: float) -> frozenset[str] | None:
        """The whole devices among ``per_disk`` (looked up again when the names change, or after the TTL)."""
        if clock - self._whole_at >= self._partitions_ttl or self._whole_of != per_disk.keys():
            self._whole_of = frozenset(per_disk)
            self._whole = whole_disks(self._whole_of)
            self._whole_at = clock
        return self._whole

    def _disk_entry(
        self, name: str, values: Sequence[int], previous: Mapping[str, tuple[int, int]], elapsed: float
    ) -> DiskIO:
        entry = DiskIO(name=name, **dict(zip(_DISK_FIELDS, values, strict=True)))
        prev = previous.get(name)
        entry.read_rate = rate(entry.read_bytes, None if prev is None else prev[0], elapsed)
        entry.write_rate = rate(entry.write_bytes, None if prev is None else prev[1], elapsed)
        self._prev_disk[name] = (entry.read_bytes, entry.write_bytes)
        return entry

    def _fill_net_io(self, stats: SystemStats, elapsed: float) -> None:
        per_nic = _net_counters()
        previous, self._prev_net = self._prev_net, {}
        names = sorted(per_nic)
        rows = [_net_values(per_nic[name]) for name in names]
        for name, values in zip(names, rows, strict=True):
            stats.net_io.append(self._net_entry(_net_io(name, values), previous, elapsed))
        total = _net_io("total", _sums(rows, len(_NET_FIELDS)))
        stats.net_io_total.CopyFrom(self._net_entry(total, previous, elapsed))

    def _net_entry(self, entry: NetIO, previous: Mapping[str, tuple[int, int]], elapsed: float) -> NetIO:
        prev = previous.get(entry.name)
        entry.send_rate = rate(entry.bytes_sent, None if prev is None else prev[0], elapsed)
        entry.recv_rate = rate(entry.bytes_recv, None if prev is None else prev[1], elapsed)
        self._prev_net[entry.name] = (entry.bytes_sent, entry.bytes_recv)
        return entry


def whole_disks(names: Iterable[str], sys_block: Path = SYS_BLOCK) -> frozenset[str] | None:
    """The whole devices among ``names`` (sda, nvme0n1, loop0: not sda1), as psutil sums its disk total.

    Linux lists them in /sys/block (a slash in a name is ``!`` there); None where there is no such
    folder (other systems list only whole disks).
    """
    if not sys_block.is_dir():
        return None
    return frozenset(name for name in names if (sys_block / name.replace("/", "!")).exists())


def disk_total(per_disk: Mapping[str, Sequence[int]], whole: frozenset[str] | None) -> list[int]:
    """The sums of :data:`_DISK_FIELDS` over the whole devices of ``per_disk`` (every one when ``whole`` is None)."""
    rows = [values for name, values in per_disk.items() if whole is None or name in whole]
    return _sums(rows, len(_DISK_FIELDS))


def _sums(rows: Sequence[Sequence[int]], width: int) -> list[int]:
    """Column sums of ``rows`` (``width`` zeros when there are none)."""
    return [sum(column) for column in zip(*rows, strict=True)] if rows else [0] * width


def _net_io(name: str, values: Sequence[int]) -> NetIO:
    return NetIO(name=name, **dict(zip(_NET_FIELDS, values, strict=True)))


def _loadavg() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except (OSError, AttributeError):  # not available on this platform
        return 0.0, 0.0, 0.0


def _fill_memory(stats: SystemStats) -> None:
    mem = psutil.virtual_memory()
    stats.memory.total, stats.memory.available, stats.memory.used = mem.total, mem.available, mem.used
    stats.memory.free, stats.memory.percent = mem.free, mem.percent
    swap = psutil.swap_memory()
    stats.swap.total, stats.swap.used, stats.swap.free, stats.swap.percent = (
        swap.total,
        swap.used,
        swap.free,
        swap.percent,
    )


def _list_mounts() -> list[_Mount]:
    try:
        parts = psutil.disk_partitions(all=False)
    except OSError as exc:
        log.debug("cannot list mounted filesystems: %s", exc)
        return []
    return [_Mount(p.mountpoint, p.device, p.fstype) for p in parts]


def _disk_counters() -> dict[str, Any]:
    """Per-device counters (psutil corrects wrapped ones); empty where there are none."""
    try:
        return psutil.disk_io_counters(perdisk=True) or {}
    except (OSError, NotImplementedError, RuntimeError) as exc:
        log.debug("no disk I/O counters: %s", exc)
        return {}


def _net_counters() -> dict[str, Any]:
    try:
        return psutil.net_io_counters(pernic=True) or {}
    except (OSError, NotImplementedError, RuntimeError) as exc:
        log.debug("no network I/O counters: %s", exc)
        return {}
