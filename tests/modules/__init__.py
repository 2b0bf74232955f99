"""Tests of the built-in aggregator modules, without sockets: feed reports in, compare what comes out.

Helpers shared by these tests: a small in-process stand-in for the collector
API and builders for real ``SystemStats`` reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from collector.addons import Aggregator, NodeRecord, Report, Request
from messages import DiskIO, Encoding, Memory, NetIO, NodeInfo, SystemStats

A = TypeVar("A", bound=Aggregator)


class StubCollector:
    """The CollectorAPI methods a module may call, backed by a plain dict of NodeRecords."""

    def __init__(self, tmp_path: Path | None = None) -> None:
        self.records: dict[str, NodeRecord] = {}
        self.modules: dict[str, Aggregator] = {}
        self.tmp_path = tmp_path or Path(".")

    def add_node(self, node: str, hostname: str = "", **fields: Any) -> NodeRecord:
        """Register (or replace) a node record, as a HELLO would."""
        info = NodeInfo(node=node, hostname=hostname or f"host-{node}", agent_version="0.1.0", os="Linux",
                        cpu_count=4, memory_total=8_254_304_256)
        record = NodeRecord(node=node, info=info, **fields)
        self.records[node] = record
        return record

    def nodes(self) -> list[NodeRecord]:
        """Every registered node, in registration order (modules must sort themselves)."""
        return list(self.records.values())

    def node(self, node_id: str) -> NodeRecord | None:
        """One node's record, or None."""
        return self.records.get(node_id)

    def request(self, type: str, node: str | None = None, **params: str) -> Any:
        """Route a request to the attached module answering ``type``."""
        if node is not None:
            params["node"] = node
        for module in self.modules.values():
            if type in module.requesttypes:
                return module.processREQUEST(Request(type, params))
        raise LookupError(type)

    def data_dir(self, module: str) -> Path:
        """A folder per module under the test's tmp_path."""
        path = self.tmp_path / module
        path.mkdir(parents=True, exist_ok=True)
        return path


def attach(module: A, collector: StubCollector, **config: Any) -> A:
    """Do what the collector does after construction: attach itself and the merged config, then start."""
    module.collector = collector
    module.config = {**type(module).options, **config}
    collector.modules[module.name] = module
    module.on_startup()
    return module


def sample(time: float, cpu: float = 12.5, mem_percent: float = 40.0, **fields: Any) -> SystemStats:
    """A realistic SystemStats sample; uint64 byte counts above 2**53 on purpose."""
    return SystemStats(
        time=time,
        cpu_percent=cpu,
        cpu_percent_per_cpu=[cpu, cpu / 2],
        load1=0.5,
        load5=0.4,
        load15=0.3,
        memory=Memory(total=2**63 + 12345, available=5_000_000_123, used=3_000_000_001, free=1_000_000_007,
                      percent=mem_percent),
        disk_io_total=DiskIO(name="total", read_bytes=10**12 + 1, write_bytes=10**12 + 3, read_rate=1024.5,
                             write_rate=2048.25),
        net_io_total=NetIO(name="total", bytes_sent=18_446_744_073_709_551_615, bytes_recv=987_654_321,
                           recv_rate=300.0, send_rate=150.0),
        interval=1.0,
        **fields,
    )


def report(node: str, seq: int, stats: SystemStats, time: float | None = None) -> Report:
    """A REPORT carrying ``stats`` as the collector hands it to modules."""
    return Report(node, "SystemStats", seq, stats.time if time is None else time, stats.SerializeToString(),
                  Encoding.PROTOBUF, SystemStats.DESCRIPTOR.full_name)
