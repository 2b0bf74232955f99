"""The built-in SystemStats probe and the agent's NodeInfo.

The probe runs every second on every node, so it does only the work a sample
needs (measured: the probe was more than half of an idle agent's CPU):

- on Linux, the counters come from /proc files kept open and parsed as psutil
  parses them (node_agent/procfs.py), psutil answering elsewhere and after a
  failed read; psutil's disk and network reads there use ``nowrap=False`` (its wrap
  correction keeps a table of every earlier reading; a counter that goes down
  gives a rate of 0 for that sample: :func:`rate`);
- the total and per-CPU percentages come from one read of the per-CPU times,
  worked out as ``psutil.cpu_percent`` does (:class:`CpuMeter`), not from two
  ``cpu_percent`` calls that read /proc/stat twice;
- memory and swap come from one read of /proc/meminfo (:func:`memory_usage`), the
  figures ``psutil.virtual_memory`` and ``psutil.swap_memory`` take from it, where
  those two read it twice and scan /proc/vmstat for swap-in and -out counts the
  sample does not carry (psutil answers wherever the file says something unusual);
- the list of mounted filesystems is cached for a minute, and the network and disk
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
from pathlib import Path
from typing import Any, NamedTuple

import psutil

import messages
from messages import DiskIO, DiskUsage, NetIO, NodeInfo, SystemStats
from node_agent.addons import Probe
from node_agent.procfs import DISK_FIELDS, Counters, NetCounters, open_procfs

__all__ = ["CpuMeter", "SystemStatsProbe", "Usage", "disk_total", "memory_usage", "node_info", "rate", "whole_disks"]

log = logging.getLogger(__name__)

# Mounts change rarely; listing them is the dearest part of a sample.
PARTITIONS_TTL = 60.0

_NET_FIELDS = NetCounters._fields
SYS_BLOCK = Path("/sys/block")  # Linux lists whole devices here, partitions only beneath them


MEMINFO_FIELDS = (b"MemTotal:", b"MemFree:", b"MemAvailable:", b"SwapTotal:", b"SwapFree:")


class Usage(NamedTuple):
    """Memory or swap in bytes and the used share in percent (one decimal), as psutil gives them."""

    total: int
    used: int
    free: int
    percent: float
    available: int = 0  # memory only


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

    def __init__(self, partitions_ttl: float = PARTITIONS_TTL, counters: Counters | None = None) -> None:
        self._counters = Counters(open_procfs()) if counters is None else counters
        self._cpu = CpuMeter(self._counters)  # its first reading only sets the baseline
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
        total, per_cpu = self._cpu.percentages()
        stats = SystemStats(time=now, interval=elapsed, cpu_percent=total)
        stats.cpu_percent_per_cpu.extend(per_cpu)
        stats.load1, stats.load5, stats.load15 = _loadavg()
        _fill_memory(stats, self._counters.meminfo())
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
        per_disk = self._counters.disks()
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
        read_bytes, write_bytes, read_count, write_count = values
        prev = previous.get(name)
        self._prev_disk[name] = (read_bytes, write_bytes)
        return DiskIO(
            name=name,
            read_bytes=read_bytes,
            write_bytes=write_bytes,
            read_count=read_count,
            write_count=write_count,
            read_rate=rate(read_bytes, None if prev is None else prev[0], elapsed),
            write_rate=rate(write_bytes, None if prev is None else prev[1], elapsed),
        )

    def _fill_net_io(self, stats: SystemStats, elapsed: float) -> None:
        per_nic = self._counters.nics()
        previous, self._prev_net = self._prev_net, {}
        names = sorted(per_nic)
        rows = [per_nic[name] for name in names]
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


class CpuMeter:
    """CPU busy percentages since the previous reading, total and per CPU, from one read of the times.

    The arithmetic is ``psutil.cpu_percent``'s: per field, the time since the previous
    reading (never negative); the total leaves out guest time (already in user and nice),
    busy is the total less idle and iowait; one decimal, 0.0 when no time passed. The
    all-CPU figure is the busy share of the summed per-CPU times.
    """

    def __init__(self, counters: Counters) -> None:
        self._counters = counters
        self._previous: list[tuple[float, ...]] = self._read()

    def _read(self) -> list[tuple[float, ...]]:
        per_cpu, fields = self._counters.cpu_times()
        self._guest = [fields.index(name) for name in ("guest", "guest_nice") if name in fields]
        self._idle = [fields.index(name) for name in ("idle", "iowait") if name in fields]
        return per_cpu

    def percentages(self) -> tuple[float, list[float]]:
        """(all CPUs, each CPU) busy percentages since the previous call (or construction)."""
        current, previous = self._read(), self._previous
        self._previous = current
        if len(current) != len(previous):  # a CPU came or went: start again from this reading
            return 0.0, [0.0] * len(current)
        spans = [self._total_and_busy(now, then) for now, then in zip(current, previous, strict=True)]
        return _percent(sum(s[1] for s in spans), sum(s[0] for s in spans)), [_percent(b, t) for t, b in spans]

    def _total_and_busy(self, now: tuple[float, ...], then: tuple[float, ...]) -> tuple[float, float]:
        deltas = [max(0.0, a - b) for a, b in zip(now, then, strict=True)]
        total = sum(deltas) - sum(deltas[i] for i in self._guest)
        return total, total - sum(deltas[i] for i in self._idle)


def _percent(busy: float, total: float) -> float:
    """``busy`` as a percentage of ``total``, rounded as psutil rounds (0.0 for no time at all)."""
    return round((busy / total) * 100, 1) if total > 0 else 0.0


def memory_usage(meminfo: bytes | None) -> tuple[Usage, Usage]:
    """(memory, swap) as ``psutil.virtual_memory`` and ``psutil.swap_memory`` give them, from /proc/meminfo's text.

    Memory: used is total less MemAvailable, as psutil has it since 4.4.0; swap: used is
    SwapTotal less SwapFree. Without the text, or where a figure is absent or out of
    range (no MemAvailable, as on kernels before 3.14), psutil works it out instead.
    """
    try:
        found = {} if meminfo is None else _meminfo_fields(meminfo, MEMINFO_FIELDS)
    except (ValueError, IndexError):
        found = {}
    return _memory(found) or _psutil_memory(), _swap(found) or _psutil_swap()


def _memory(found: Mapping[bytes, int]) -> Usage | None:
    total, free, available = (found.get(name, -1) for name in MEMINFO_FIELDS[:3])
    if min(total, free) < 0 or not 0 < available <= total:
        return None
    return Usage(total, total - available, free, _percent(total - available, total), available)


def _swap(found: Mapping[bytes, int]) -> Usage | None:
    total, free = found.get(b"SwapTotal:", -1), found.get(b"SwapFree:", -1)
    if min(total, free) < 0:
        return None
    return Usage(total, total - free, free, _percent(total - free, total))


def _psutil_memory() -> Usage:
    mem = psutil.virtual_memory()
    return Usage(mem.total, mem.used, mem.free, mem.percent, mem.available)


def _psutil_swap() -> Usage:
    swap = psutil.swap_memory()
    return Usage(swap.total, swap.used, swap.free, swap.percent)


def _meminfo_fields(text: bytes, names: Sequence[bytes]) -> dict[bytes, int]:
    """The named /proc/meminfo lines' values, in bytes (the file counts kB)."""
    found = {}
    for line in text.splitlines():
        name, _, rest = line.partition(b" ")
        if name in names:
            found[name] = int(rest.split()[0]) * 1024
            if len(found) == len(names):
                break
    return found


def whole_disks(names: Iterable[str], sys_block: Path = SYS_BLOCK) -> frozenset[str] | None:
    """The whole devices among ``names`` (sda, nvme0n1, loop0: not sda1), as psutil sums its disk total.

    Linux lists them in /sys/block (a slash in a name is ``!`` there); None where there is no such
    folder (other systems list only whole disks).
    """
    if not sys_block.is_dir():
        return None
    return frozenset(name for name in names if (sys_block / name.replace("/", "!")).exists())


def disk_total(per_disk: Mapping[str, Sequence[int]], whole: frozenset[str] | None) -> list[int]:
    """The sums of the DISK_FIELDS over the whole devices of ``per_disk`` (every one when ``whole`` is None)."""
    rows = [values for name, values in per_disk.items() if whole is None or name in whole]
    return _sums(rows, len(DISK_FIELDS))


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


def _fill_memory(stats: SystemStats, meminfo: bytes | None) -> None:
    mem, swap = memory_usage(meminfo)
    stats.memory.total, stats.memory.available, stats.memory.used = mem.total, mem.available, mem.used
    stats.memory.free, stats.memory.percent = mem.free, mem.percent
    stats.swap.total, stats.swap.used = swap.total, swap.used
    stats.swap.free, stats.swap.percent = swap.free, swap.percent


def _list_mounts() -> list[_Mount]:
    try:
        parts = psutil.disk_partitions(all=False)
    except OSError as exc:
        log.debug("cannot list mounted filesystems: %s", exc)
        return []
    return [_Mount(p.mountpoint, p.device, p.fstype) for p in parts]
