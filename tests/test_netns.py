"""The network-namespace harness (tests/netns.py): addresses, a cut that stops TCP both ways, teardown."""

from __future__ import annotations

import socket
import subprocess

import pytest

from tests.conftest import wait_for
from tests.netns import Netns, netns

__all__ = ["netns"]  # the fixture, imported for pytest

pytestmark = pytest.mark.e2e


def _received(sock: socket.socket, wait: float) -> bytes:
    sock.settimeout(wait)
    try:
        return sock.recv(64)
    except TimeoutError:
        return b""


@pytest.mark.timeout(60)
def test_a_cut_link_carries_nothing_either_way_and_the_same_connection_resumes_when_healed(netns: Netns) -> None:
    hub, hub_address = netns.hub("hub")
    site = netns.add("site")
    link = netns.attach(site, hub)
    assert f"inet {link.address}/24" in site.ip("addr", "show", "dev", "eth0")
    listener = hub.call(lambda: socket.create_server((hub_address, 0)))
    port = listener.getsockname()[1]
    with listener, site.call(lambda: socket.create_connection((hub_address, port), timeout=5)) as near:
        far, peer = listener.accept()
        with far:
            assert peer[0] == link.address
            netns.cut(link)
            near.sendall(b"up")
            far.sendall(b"down")
            assert _received(far, 1.5) == b"" and _received(near, 0.1) == b"", "a cut link let data through"
            netns.heal(link)
            assert _received(far, 20) == b"up" and _received(near, 20) == b"down"  # TCP retransmits


@pytest.mark.timeout(60)
def test_close_kills_the_processes_inside_and_deletes_the_namespaces() -> None:
    from tests.netns import require_netns

    require_netns()
    made = Netns()
    hub, _ = made.hub("hub")
    ns = made.add("site")
    made.attach(ns, hub)
    names = [n.name for n in made.namespaces]
    sleeper = subprocess.Popen(ns.command(["sleep", "60"]))
    try:
        wait_for(lambda: str(sleeper.pid) in ns.pids(), timeout=10, what="the sleeper inside the namespace")
    finally:
        made.close()
    assert sleeper.wait(10) == -9, "a process inside a namespace outlived its deletion"
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert not any(name in listed for name in names)
