"""The agent's lean /proc readers: side by side with psutil on this machine, and on crafted files."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import psutil
import pytest

from node_agent.procfs import CPU_FIELDS, DISK_SECTOR, Counters, NetCounters, ProcFile, Procfs, open_procfs
from node_agent.sysprobe import CpuMeter, memory_usage

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc counters are Linux's")

STAT = b"""cpu  10 0 10 80 0 0 0 0 0 0
cpu0 4 0 6 40 0 0 0 0 0 0
cpu1 6 0 4 40 0 0 0 0 0 0
intr 12345 1 2 3
ctxt 999
"""
DISKSTATS = b"""   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 254       0 vda 83790 14992 5033530 28936 385168 40884 21102584 819046 0 66224 848000 0 0 0 0 0 0 0
 254       1 vda1 120 0 4000 12 30 0 800 5 0 10 17
   8       1 sdb1 11 22 33 44
"""
NETDEV = b"""Inter-|   Receive                                                |  Transmit
 face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed
    lo:  1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0: 397798685 11765 1 2    0     0          0         0   459269    5643    3    4    0     0       0          0
"""
MEMINFO = b"""MemTotal:       24683656 kB
MemFree:        23981800 kB
MemAvailable:   24069608 kB
Buffers:            1812 kB
SwapCached:            0 kB
SwapTotal:       2097148 kB
SwapFree:        1048574 kB
"""


def crafted(tmp_path: Path, **files: bytes) -> Path:
    """A /proc look-alike: stat, meminfo, diskstats and net/dev with the given (or the sample) text."""
    texts = {"stat": STAT, "meminfo": MEMINFO, "diskstats": DISKSTATS, "net/dev": NETDEV}
    texts.update({name.replace("_", "/"): text for name, text in files.items()})
    for name, text in texts.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(text)
    return tmp_path


# ----------------------------------------------------------------- crafted files


def test_every_diskstats_layout_gives_bytes_and_counts(tmp_path):
    procfs = Procfs(crafted(tmp_path))
    try:
        disks = procfs.disk_counters()
    finally:
        procfs.close()
    assert disks["loop0"] == (0, 0, 0, 0)
    assert disks["vda"] == (5033530 * DISK_SECTOR, 21102584 * DISK_SECTOR, 83790, 385168)  # 20 fields (5.5+)
    assert disks["vda1"] == (4000 * DISK_SECTOR, 800 * DISK_SECTOR, 120, 30)  # 14 fields
    assert disks["sdb1"] == (22 * DISK_SECTOR, 44 * DISK_SECTOR, 11, 33)  # a 2.6 partition: 7 fields


def test_net_dev_columns_land_in_psutils_names(tmp_path):
    procfs = Procfs(crafted(tmp_path))
    try:
        nics = procfs.net_counters()
    finally:
        procfs.close()
    assert nics["eth0"] == NetCounters(
        bytes_sent=459269, bytes_recv=397798685, packets_sent=5643, packets_recv=11765, errin=1, errout=3, dropin=2,
        dropout=4,
    )  # fmt: skip
    assert set(nics) == {"lo", "eth0"}


def test_cpu_times_are_the_per_cpu_lines_and_percentages_are_psutils_arithmetic(tmp_path):
    root = crafted(tmp_path)
    counters = Counters(Procfs(root))
    try:
        meter = CpuMeter(counters)
        # cpu0: 10 more busy (user) and 10 more idle; cpu1: 5 more user, all of it guest time, 20 more idle.
        (root / "stat").write_bytes(
            b"cpu  30 0 10 110 0 0 0 0 5 0\ncpu0 14 0 6 50 0 0 0 0 0 0\ncpu1 11 0 4 60 0 0 0 0 5 0\nintr 1\n"
        )
        total, per_cpu = meter.percentages()
    finally:
        counters.close()
    # Guest time is already in user: psutil leaves it out of the total only (cpu1: 5 busy of 30 - 5).
    assert per_cpu == [50.0, 20.0]
    assert total == 33.3  # 15 busy of 45


def test_memory_and_swap_from_one_meminfo_text():
    memory, swap = memory_usage(MEMINFO)
    assert (memory.total, memory.available, memory.free) == (24683656 * 1024, 24069608 * 1024, 23981800 * 1024)
    assert memory.used == memory.total - memory.available and memory.percent == 2.5
    assert (swap.total, swap.free, swap.used, swap.percent) == (2097148 * 1024, 1048574 * 1024, 1048574 * 1024, 50.0)


def test_meminfo_without_memavailable_is_psutils_to_work_out():
    old_kernel = b"".join(line + b"\n" for line in MEMINFO.splitlines() if not line.startswith(b"MemAvailable"))
    memory, swap = memory_usage(old_kernel)
    assert memory.total == psutil.virtual_memory().total  # psutil's figures for this machine
    assert swap.total == 2097148 * 1024  # swap still from the text


def test_a_file_larger_than_the_buffer_is_read_whole(tmp_path):
    big = tmp_path / "big"
    big.write_bytes(b"".join(b"line %06d\n" % n for n in range(20_000)))  # 240 KB
    file = ProcFile(big)
    try:
        prefix = file.read(enough=b"line 000001")  # the first buffer holds it: no need for the rest
        assert b"line 000001" in prefix and big.read_bytes().startswith(prefix) and len(prefix) < big.stat().st_size
        assert file.read() == big.read_bytes()
    finally:
        file.close()


def test_a_layout_it_does_not_know_hands_over_to_psutil_with_one_warning(tmp_path, caplog):
    counters = Counters(Procfs(crafted(tmp_path, diskstats=b"   8 0 sda 1 2 3 4 5 6 7 8 9\n")))  # 12 fields
    with caplog.at_level(logging.WARNING, logger="node_agent.procfs"):
        disks = counters.disks()
        again = counters.disks()
    assert not counters.lean
    assert set(disks) == set(again) == set(psutil.disk_io_counters(perdisk=True, nowrap=False) or {})
    assert len([r for r in caplog.records if "psutil takes the samples" in r.getMessage()]) == 1


def test_a_missing_proc_means_psutil(tmp_path):
    assert open_procfs(tmp_path / "nothing-here") is None
    counters = Counters(None)
    rows, fields = counters.cpu_times()
    assert len(rows) == psutil.cpu_count() and "idle" in fields
    assert counters.meminfo() is None and set(counters.nics()) == set(psutil.net_io_counters(pernic=True))


# ----------------------------------------------------------------- this machine, beside psutil


@linux_only
def test_this_machines_counters_are_psutils():
    counters = Counters(open_procfs())
    try:
        assert counters.lean
        before_disks, before_nics = counters.disks(), counters.nics()
        theirs_disks = psutil.disk_io_counters(perdisk=True, nowrap=False)
        theirs_nics = psutil.net_io_counters(pernic=True, nowrap=False)
        after_disks, after_nics = counters.disks(), counters.nics()
    finally:
        counters.close()
    assert set(before_disks) == set(theirs_disks) and set(before_nics) == set(theirs_nics)
    for name, theirs in theirs_disks.items():
        values = (theirs.read_bytes, theirs.write_bytes, theirs.read_count, theirs.write_count)
        assert _between(before_disks[name], values, after_disks[name]), name
    for name, snetio in theirs_nics.items():
        assert _between(before_nics[name], tuple(snetio), after_nics[name]), name


@linux_only
def test_this_machines_cpu_times_are_psutils_in_clock_ticks():
    counters = Counters(open_procfs())
    try:
        before, fields = counters.cpu_times()
        theirs = psutil.cpu_times(percpu=True)
        after, _ = counters.cpu_times()
    finally:
        counters.close()
    assert fields == CPU_FIELDS[: len(fields)] and len(before) == len(theirs)
    ticks = os.sysconf("SC_CLK_TCK")
    for low, cpu, high in zip(before, theirs, after, strict=True):
        mine = [round(getattr(cpu, name) * ticks) for name in fields]
        assert _between(low, tuple(mine), high)


@linux_only
def test_this_machines_memory_is_psutils():
    counters = Counters(open_procfs())
    try:
        memory, swap = memory_usage(counters.meminfo())
    finally:
        counters.close()
    assert memory.total == psutil.virtual_memory().total and swap.total == psutil.swap_memory().total
    assert 0 < memory.available <= memory.total and memory.used == memory.total - memory.available


def _between(low: tuple[int, ...], value: tuple[int, ...], high: tuple[int, ...]) -> bool:
    """Each of ``value``'s counters lies between ``low``'s and ``high``'s (they only grow)."""
    return all(a <= v <= b for a, v, b in zip(low, value, high, strict=True))
