"""Tests of the built-in aggregator modules, without sockets: feed reports in, compare what comes out.

The module test kit itself (``StubCollector``, ``attach``) ships in
``collector.testing``; this file adds builders for real ``SystemStats`` reports.
"""

from __future__ import annotations

from typing import Any

from collector.addons import Report
from messages import DiskIO, Encoding, Memory, NetIO, SystemStats

__all__ = ["report", "sample"]


def sample(time: float, cpu: float = 12.5, mem_percent: float = 40.0, **fields: Any) -> SystemStats:
    """A realistic SystemStats sample; uint64 byte counts above 2**53 on purpose."""
    return SystemStats(
        time=time,
        cpu_percent=cpu,
        cpu_percent_per_cpu=[cpu, cpu / 2],
        load1=0.5,
        load5=0.4,
        load15=0.3,
        memory=Memory(
            total=2**63 + 12345, available=5_000_000_123, used=3_000_000_001, free=1_000_000_007, percent=mem_percent
        ),
        disk_io_total=DiskIO(
            name="total", read_bytes=10**12 + 1, write_bytes=10**12 + 3, read_rate=1024.5, write_rate=2048.25
        ),
        net_io_total=NetIO(
            name="total",
            bytes_sent=18_446_744_073_709_551_615,
            bytes_recv=987_654_321,
            recv_rate=300.0,
            send_rate=150.0,
        ),
        interval=1.0,
        **fields,
    )


def report(node: str, seq: int, stats: SystemStats, time: float | None = None) -> Report:
    """A REPORT carrying ``stats`` as the collector hands it to modules."""
    return Report(
        node,
        "SystemStats",
        seq,
        stats.time if time is None else time,
        stats.SerializeToString(),
        Encoding.PROTOBUF,
        SystemStats.DESCRIPTOR.full_name,
    )
