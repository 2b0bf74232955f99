"""The built-in SystemStats probe and NodeInfo against psutil on this machine."""

from __future__ import annotations

import os
import platform
import time

import psutil
import pytest

import messages
from messages import SystemStats
from node_agent.sysprobe import SystemStatsProbe, disk_total, node_info, rate, whole_disks


@pytest.fixture(scope="module")
def samples() -> tuple[SystemStats, SystemStats]:
    """Two samples 0.2 s apart from one probe."""
    probe = SystemStatsProbe()
    first = probe.getReport(time.time())
    time.sleep(0.2)  # the second sample's rates need some elapsed time; nothing to poll for
    second = probe.getReport(time.time())
    return first, second


def test_memory_and_swap_are_exactly_psutil(samples):
    _, stats = samples
    assert stats.memory.total == psutil.virtual_memory().total
    assert stats.swap.total == psutil.swap_memory().total
    assert 0 < stats.memory.available <= stats.memory.total
    assert 0.0 <= stats.memory.percent <= 100.0


def test_cpu_fields(samples):
    _, stats = samples
    assert len(stats.cpu_percent_per_cpu) == psutil.cpu_count()
    assert 0.0 <= stats.cpu_percent <= 100.0
    assert all(0.0 <= p <= 100.0 for p in stats.cpu_percent_per_cpu)


def test_load_average_matches_os(samples):
    _, stats = samples
    load1, _, _ = os.getloadavg()
    assert stats.load1 >= 0.0
    assert abs(stats.load1 - load1) < max(2.0, load1)  # same order of magnitude, a moment apart


def test_interval_first_zero_then_positive(samples):
    first, second = samples
    assert first.interval == 0.0
    assert 0.15 < second.interval < 5.0
    assert second.time > first.time


def test_first_sample_rates_are_zero(samples):
    first, _ = samples
    rates = [d.read_rate for d in first.disk_io] + [n.recv_rate for n in first.net_io]
    rates += [first.net_io_total.send_rate, first.disk_io_total.write_rate]
    assert rates and all(r == 0.0 for r in rates)


def test_rates_non_negative_and_totals_named(samples):
    _, stats = samples
    for entry in stats.disk_io:
        assert entry.read_rate >= 0.0 and entry.write_rate >= 0.0
    for entry in stats.net_io:
        assert entry.send_rate >= 0.0 and entry.recv_rate >= 0.0
    assert stats.net_io_total.name == "total"
    assert stats.net_io_total.bytes_recv == sum(n.bytes_recv for n in stats.net_io)
    assert {n.name for n in stats.net_io} == set(psutil.net_io_counters(pernic=True))


def test_disk_io_total_is_psutil_total(samples):
    _, stats = samples
    total = psutil.disk_io_counters()
    if total is None:
        pytest.skip("no disk I/O counters on this machine")
    assert stats.disk_io_total.name == "total"
    # Counters only grow: the probe's figure is at most the later psutil reading.
    assert 0 < stats.disk_io_total.read_bytes <= total.read_bytes


def test_disk_io_total_sums_whole_devices_as_psutil_does():
    probe = SystemStatsProbe()
    before = psutil.disk_io_counters(nowrap=False)
    if before is None:
        pytest.skip("no disk I/O counters on this machine")
    total = probe.getReport(time.time()).disk_io_total
    after = psutil.disk_io_counters(nowrap=False)
    # Counted once each (partitions left out), read between psutil's two readings of its own total.
    for field in ("read_bytes", "write_bytes", "read_count", "write_count"):
        assert getattr(before, field) <= getattr(total, field) <= getattr(after, field), field


def test_whole_disks_are_those_listed_in_sys_block(tmp_path):
    for name in ("sda", "nvme0n1", "cciss!c0d0"):
        (tmp_path / name).mkdir()
    names = ["sda", "sda1", "nvme0n1", "nvme0n1p2", "cciss/c0d0", "cciss/c0d0p1"]
    assert whole_disks(names, tmp_path) == {"sda", "nvme0n1", "cciss/c0d0"}
    assert whole_disks(names, tmp_path / "missing") is None


def test_disk_total_adds_the_whole_devices_only():
    per_disk = {"sda": (1, 2, 3, 4), "sda1": (1, 2, 3, 4), "sdb": (10, 20, 30, 40)}
    assert disk_total(per_disk, frozenset({"sda", "sdb"})) == [11, 22, 33, 44]
    assert disk_total(per_disk, None) == [12, 24, 36, 48]
    assert disk_total({}, None) == [0, 0, 0, 0]


def test_disk_usage_per_mount(samples):
    _, stats = samples
    mounts = {p.mountpoint for p in psutil.disk_partitions(all=False)}
    assert stats.disks, "at least one mounted filesystem"
    for disk in stats.disks:
        assert disk.mountpoint in mounts
        assert disk.total == psutil.disk_usage(disk.mountpoint).total


def test_loopback_traffic_shows_in_rates():
    probe = SystemStatsProbe()
    probe.getReport(time.time())
    names = psutil.net_io_counters(pernic=True)
    loopback = next((n for n in names if n == "lo" or n.startswith("lo")), None)
    if loopback is None:
        pytest.skip("no loopback interface")
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    conn, _ = server.accept()
    client.sendall(b"x" * 200_000)
    received = 0
    while received < 200_000:
        received += len(conn.recv(65536))
    for s in (client, conn, server):
        s.close()
    stats = probe.getReport(time.time())
    lo = next(n for n in stats.net_io if n.name == loopback)
    assert lo.recv_rate * stats.interval >= 200_000


def test_rate_helper():
    assert rate(300, None, 1.0) == 0.0
    assert rate(300, 100, 2.0) == 100.0
    assert rate(100, 300, 1.0) == 0.0  # a reset counter is no negative rate
    assert rate(300, 100, 0.0) == 0.0


def test_node_info():
    info = node_info("n7", "abc")
    assert info.node == "n7" and info.instance == "abc"
    assert info.memory_total == psutil.virtual_memory().total
    assert info.cpu_count == psutil.cpu_count()
    assert info.os == platform.system()
    assert info.pid == os.getpid()
    assert info.agent_version == messages.__version__
    assert info.boot_time == psutil.boot_time()
