"""Linux's /proc counters for the once-a-second SystemStats sample, read the lean way.

psutil reads the same files, but opens each afresh and wraps every line in its
general machinery; at one sample a second that was most of an idle agent's CPU
(measured on a 2-core VM, each read cold after a second's sleep: /proc/stat
350 -> 160 µs, /proc/diskstats 520 -> 170 µs, /proc/net/dev 480 -> 150 µs).
Here each file stays open and is read again from its start with ``pread``
(the kernel makes a /proc file's text afresh on every read from offset 0), and
only the fields the sample carries are parsed, as psutil parses them (the tests
hold the two side by side). :func:`open_procfs` returns None where there is no
such /proc (other systems), and the probe then asks psutil, as it does for good
when a read here fails.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from operator import attrgetter
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import psutil

__all__ = ["CPU_FIELDS", "DISK_FIELDS", "DISK_SECTOR", "Counters", "NetCounters", "ProcFile", "Procfs", "open_procfs"]

log = logging.getLogger(__name__)
T = TypeVar("T")
Rows = dict[str, tuple[int, ...]]  # per device or interface, its counters

DISK_FIELDS = ("read_bytes", "write_bytes", "read_count", "write_count")

# /proc/stat's per-CPU columns, in order (older kernels stop earlier)
CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")

DISK_SECTOR = 512  # /proc/diskstats counts 512-byte sectors whatever the device's own sector size
_READ_SIZE = 1 << 16


class ProcFile:
    """One /proc file, kept open; :meth:`read` returns its whole text as of now."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "rb", buffering=0)  # kept open: closed by close(), or when dropped
        self._size = _READ_SIZE

    def read(self, enough: bytes | None = None) -> bytes:
        """The file's text; with ``enough``, a prefix is fine once it holds that marker."""
        while True:
            data = os.pread(self._file.fileno(), self._size, 0)
            if len(data) < self._size or (enough is not None and enough in data):
                return data
            self._size *= 2  # a bigger file than the last buffer: read it again whole

    def close(self) -> None:
        """Close the file."""
        self._file.close()


class Procfs:
    """The counter files of a sample: CPU times, memory, disk and network counters."""

    def __init__(self, root: Path) -> None:
        self._files: list[ProcFile] = []
        self._stat = self._open(root / "stat")
        self._meminfo = self._open(root / "meminfo")
        self._diskstats = self._open(root / "diskstats")
        self._netdev = self._open(root / "net" / "dev")

    def _open(self, path: Path) -> ProcFile:
        try:
            file = ProcFile(path)
        except OSError:
            self.close()
            raise
        self._files.append(file)
        return file

    def cpu_times(self) -> list[tuple[int, ...]]:
        """Per CPU, /proc/stat's times in clock ticks, in :data:`CPU_FIELDS` order."""
        per_cpu = []
        for line in self._stat.read(enough=b"\nintr").split(b"\n")[1:]:
            if not line.startswith(b"cpu"):
                break
            per_cpu.append(tuple(int(field) for field in line.split()[1:]))
        if not per_cpu:
            raise ValueError(f"no per-CPU lines in {self._stat.path}")
        return per_cpu

    def meminfo(self) -> bytes:
        """/proc/meminfo's text."""
        return self._meminfo.read()

    def disk_counters(self) -> Rows:
        """Per device: the :data:`DISK_FIELDS`, as psutil has them."""
        counters: Rows = {}
        for line in self._diskstats.read().splitlines():
            fields = line.split()
            counters[fields[2].decode()] = _disk_fields(fields)
        return counters

    def net_counters(self) -> Rows:
        """Per interface, /proc/net/dev's counters, as psutil's ``net_io_counters(pernic=True)`` has them."""
        counters: Rows = {}
        for line in self._netdev.read().splitlines()[2:]:  # two heading lines
            name, _, rest = line.rpartition(b":")
            fields = rest.split()
            counters[name.strip().decode()] = NetCounters(
                *(int(fields[i]) for i in (8, 0, 9, 1, 2, 10, 3, 11))  # in NetCounters' order
            )
        return counters

    def close(self) -> None:
        """Close every file."""
        for file in self._files:
            file.close()
        self._files = []


class NetCounters(NamedTuple):
    """One interface's totals since boot, named as psutil names them."""

    bytes_sent: int
    bytes_recv: int
    packets_sent: int
    packets_recv: int
    errin: int
    errout: int
    dropin: int
    dropout: int


_DISK_VALUES = attrgetter(*DISK_FIELDS)
_NET_VALUES = attrgetter(*NetCounters._fields)


def _disk_fields(fields: list[bytes]) -> tuple[int, int, int, int]:
    """(read bytes, written bytes, reads, writes) of one /proc/diskstats line, in any of its layouts."""
    if len(fields) == 7:  # a partition on Linux 2.6: reads, read sectors, writes, written sectors
        reads, read_sectors, writes, written_sectors = (int(f) for f in fields[3:7])
    elif len(fields) == 14 or len(fields) >= 18:  # the usual layout (more fields from Linux 4.18 and 5.5 on)
        reads, read_sectors, writes, written_sectors = (int(fields[i]) for i in (3, 5, 7, 9))
    else:
        raise ValueError(f"a /proc/diskstats line of {len(fields)} fields")
    return read_sectors * DISK_SECTOR, written_sectors * DISK_SECTOR, reads, writes


def open_procfs(root: Path | None = None) -> Procfs | None:
    """The /proc counter files under ``root`` (psutil's PROCFS_PATH), or None where they cannot be opened."""
    if root is None:
        root = Path(getattr(psutil, "PROCFS_PATH", "/proc"))
    try:
        return Procfs(root)
    except OSError:
        return None


class Counters:
    """A sample's counters: from the kept-open /proc files where there are some, else from psutil.

    A /proc read that fails (a file gone, a layout this module does not know) is logged once and
    psutil answers from then on.
    """

    def __init__(self, procfs: Procfs | None) -> None:
        self._procfs = procfs

    @property
    def lean(self) -> bool:
        """True while the /proc files answer (not psutil)."""
        return self._procfs is not None

    def cpu_times(self) -> tuple[list[tuple[float, ...]], tuple[str, ...]]:
        """Per CPU, its times since boot, and the names of those times."""
        rows = self._read(Procfs.cpu_times)
        if rows is not None:
            return list(rows), CPU_FIELDS[: len(rows[0])]
        per_cpu = psutil.cpu_times(percpu=True)
        return [tuple(times) for times in per_cpu], tuple(per_cpu[0]._fields) if per_cpu else ()

    def meminfo(self) -> bytes | None:
        """/proc/meminfo's text, or None where psutil has to answer."""
        return self._read(Procfs.meminfo)

    def disks(self) -> dict[str, tuple[int, ...]]:
        """Per device: (read_bytes, write_bytes, read_count, write_count)."""
        found = self._read(Procfs.disk_counters)
        if found is not None:
            return found
        return _from_psutil("disk I/O", lambda: psutil.disk_io_counters(perdisk=True, nowrap=False), _DISK_VALUES)

    def nics(self) -> dict[str, tuple[int, ...]]:
        """Per interface: the :class:`NetCounters` fields, in that order."""
        found = self._read(Procfs.net_counters)
        if found is not None:
            return found
        return _from_psutil("network I/O", lambda: psutil.net_io_counters(pernic=True, nowrap=False), _NET_VALUES)

    def _read(self, read: Callable[[Procfs], T]) -> T | None:
        procfs = self._procfs
        if procfs is None:
            return None
        try:
            return read(procfs)
        except (OSError, ValueError, IndexError) as exc:
            log.warning("reading /proc failed (%s: %s); psutil takes the samples from now on", type(exc).__name__, exc)
            procfs.close()
            self._procfs = None
            return None

    def close(self) -> None:
        """Close the /proc files."""
        if self._procfs is not None:
            self._procfs.close()
            self._procfs = None


def _from_psutil(what: str, read: Callable[[], Any], values: Callable[[Any], tuple[int, ...]]) -> Rows:
    """psutil's per-device counters as value tuples; empty where it has none."""
    try:
        found = read() or {}
    except (OSError, NotImplementedError, RuntimeError) as exc:
        log.debug("no %s counters: %s", what, exc)
        return {}
    return {name: values(counters) for name, counters in found.items()}
