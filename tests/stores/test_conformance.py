"""One conformance suite for every store backend: each part's contract, persistence, and many threads at once.

PostgreSQL runs against 127.0.0.1:5432, database ``test`` (trust auth), in a schema of its own dropped
afterwards; without that server its cases skip with one line (and fail under ``CI=true``).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from collector.addons import NodeRecord
from collector.audit_table import AuditRow
from collector.stores import Store
from collector.stores.null import NullEvents, NullSnapshots
from messages import NodeInfo
from tests.stores.conftest import BACKENDS

MakeStore = Callable[[str], Store]
PERSISTENT = ("sqlite", "postgresql")

pytestmark = pytest.mark.parametrize("backend", BACKENDS)


def event(i: int, node: str = "n1", time: float | None = None) -> dict[str, object]:
    return {
        "time": float(1000 + i) if time is None else time,
        "node": node,
        "kind": "k",
        "severity": "info",
        "message": f"event {i}",
        "attrs": {"i": str(i)},
    }


def test_events(make_store: MakeStore, backend: str) -> None:
    store = make_store(backend)
    for i in range(5):
        store.events.append(event(i, node="n1" if i % 2 else "n2"))
    if isinstance(store.events, NullEvents):
        assert store.events.recent() == [] and not store.events.durable
        return
    got = store.events.recent()
    assert [e["message"] for e in got] == [f"event {i}" for i in (4, 3, 2, 1, 0)]
    assert got[0] == event(4, node="n2")
    assert [e["message"] for e in store.events.recent(since=1002)] == ["event 4", "event 3"]
    assert [e["message"] for e in store.events.recent(node="n1")] == ["event 3", "event 1"]
    assert [e["message"] for e in store.events.recent(limit=2)] == ["event 4", "event 3"]


def test_metadata(make_store: MakeStore, backend: str) -> None:
    meta = make_store(backend).metadata
    assert meta.get("a") is None
    meta.put("a/1", "one")
    meta.put("a/2", "two")
    meta.put("b", "bee")
    meta.put("a/1", "uno")
    assert meta.get("a/1") == "uno"
    assert meta.keys("a/") == ["a/1", "a/2"] and meta.keys() == ["a/1", "a/2", "b"]
    meta.delete("a/2")
    meta.delete("never")
    assert meta.get("a/2") is None and meta.keys() == ["a/1", "b"]


def test_blobs(make_store: MakeStore, backend: str) -> None:
    blobs = make_store(backend).blobs
    assert blobs.get("cfg") is None and blobs.versions("cfg") == []
    first = blobs.put("cfg", b"one")
    second = blobs.put("cfg", b"\x00two")
    other = blobs.put("other", b"")
    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert second.digest == hashlib.sha256(b"\x00two").hexdigest() and second.size == 4
    latest = blobs.get("cfg")
    assert latest is not None and latest.data == b"\x00two" and latest.meta == second
    old = blobs.get("cfg", 1)
    assert old is not None and old.data == b"one" and old.meta.digest == hashlib.sha256(b"one").hexdigest()
    assert blobs.get("cfg", 3) is None and blobs.get("cfg", 0) is None
    assert [v.version for v in blobs.versions("cfg")] == [1, 2]
    assert blobs.names() == ["cfg", "other"]


def test_probes(make_store: MakeStore, backend: str) -> None:
    probes = make_store(backend).probes
    probes.put("cpu", b"interval = 1")
    probes.put("disk", b"\xffbytes")
    probes.put("cpu", b"interval = 2")
    assert probes.get("cpu") == b"interval = 2" and probes.get("nope") is None
    assert probes.list() == {"cpu": b"interval = 2", "disk": b"\xffbytes"}
    probes.delete("disk")
    probes.delete("nope")
    assert probes.list() == {"cpu": b"interval = 2"}


def audit_row(i: int, node: str = "n1") -> AuditRow:
    return AuditRow(0, 100.0 + i, "tcp://127.0.0.1:1", "", "Ping", {"node": node, "i": str(i)}, node)


def test_audit(make_store: MakeStore, backend: str) -> None:
    audit = make_store(backend).audit
    ids = [audit.insert(audit_row(i, "n1" if i % 2 else "n2")) for i in range(4)]
    assert ids == sorted(ids) and len(set(ids)) == 4
    audit.finish(ids[1], "ok", 12, 200.0)
    rows = audit.select(0.0, "", 10)
    assert [r.id for r in rows] == ids
    assert (rows[1].outcome, rows[1].bytes, rows[1].finished) == ("ok", 12, 200.0)
    assert rows[0].params == {"node": "n2", "i": "0"} and rows[0].outcome is None
    assert [r.id for r in audit.select(0.0, "n1", 10)] == [ids[1], ids[3]]
    assert [r.id for r in audit.select(102.0, "", 1)] == [ids[3]]
    assert audit.prune(101.5, 1000) == 2
    assert audit.prune(0.0, 1) == 1 and [r.id for r in audit.select(0.0, "", 10)] == [ids[3]]


def node(name: str, seq: int) -> NodeRecord:
    return NodeRecord(
        node=name,
        info=NodeInfo(node=name, hostname=f"h-{name}"),
        first_seen=1.0,
        last_seen=2.0,
        last_seq=seq,
        reconnects=3,
        gaps=4,
    )


def test_nodes(make_store: MakeStore, backend: str) -> None:
    store = make_store(backend)
    store.nodes.save([node("a", 1), node("b", 2)])
    store.nodes.save([node("a", 7)])
    store.flush()
    loaded = {r.node: r for r in store.nodes.load()}
    assert sorted(loaded) == ["a", "b"]
    assert loaded["a"].last_seq == 7 and loaded["a"].status == "lost"
    assert (loaded["b"].info.hostname, loaded["b"].reconnects, loaded["b"].gaps) == ("h-b", 3, 4)


def test_snapshots(make_store: MakeStore, backend: str) -> None:
    snaps = make_store(backend).snapshots
    snaps.save("m", 5, b"\x81\xa1a\x01", "journal-1")
    snaps.save("m", 9, b"\x80", "journal-1")
    got = snaps.load("m")
    if isinstance(snaps, NullSnapshots):
        assert got is None
        return
    assert got is not None and (got.journal_id, got.state, got.journal) == (9, b"\x80", "journal-1")
    assert snaps.load("other") is None


def test_data_survives_a_reopen(make_store: MakeStore, backend: str, tmp_path: Path) -> None:
    if backend not in PERSISTENT:
        pytest.skip(f"{backend} keeps nothing across a restart (by design)")
    store = make_store(backend)
    store.events.append(event(1))
    store.metadata.put("k", "v")
    store.blobs.put("b", b"x")
    store.nodes.save([node("a", 3)])
    store.close()
    again = make_store(backend)
    assert [e["message"] for e in again.events.recent()] == ["event 1"]
    assert again.metadata.get("k") == "v"
    assert again.blobs.put("b", b"y").version == 2
    assert [r.last_seq for r in again.nodes.load()] == [3]


THREADS = 6
PER_THREAD = 40


def hammer(store: Store, t: int, errors: list[BaseException]) -> None:
    try:
        for i in range(PER_THREAD):
            store.events.append(event(i, node=f"t{t}", time=float(t * 1000 + i)))
            store.metadata.put(f"t{t}/{i}", f"value {t} {i}")
            store.blobs.put("shared", f"{t}:{i}".encode())
            store.probes.put(f"p{t}-{i}", f"def {t} {i}".encode())
            row_id = store.audit.insert(audit_row(i, node=f"t{t}"))
            store.audit.finish(row_id, "ok", i, 1.0)
            store.nodes.save([node(f"t{t}", i)])
            store.snapshots.save(f"m{t}", i, f"{t}:{i}".encode())
            assert store.metadata.get(f"t{t}/{i}") == f"value {t} {i}"
            store.events.recent(limit=5)
    except BaseException as exc:  # reported by the test, with the thread's failure
        errors.append(exc)


def test_threads_hammer_every_part(make_store: MakeStore, backend: str) -> None:
    store = make_store(backend)
    errors: list[BaseException] = []
    threads = [threading.Thread(target=hammer, args=(store, t, errors)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    store.flush()
    total = THREADS * PER_THREAD
    if not isinstance(store.events, NullEvents):
        got = store.events.recent(limit=total + 10)
        assert len(got) == total
        assert {(e["node"], e["message"]) for e in got} == {
            (f"t{t}", f"event {i}") for t in range(THREADS) for i in range(PER_THREAD)
        }
    assert len(store.metadata.keys("t")) == total
    versions = store.blobs.versions("shared")
    assert [v.version for v in versions] == list(range(1, total + 1))
    contents = set()
    for v in versions:
        blob = store.blobs.get("shared", v.version)
        assert blob is not None and hashlib.sha256(blob.data).hexdigest() == v.digest
        contents.add(blob.data)
    assert contents == {f"{t}:{i}".encode() for t in range(THREADS) for i in range(PER_THREAD)}
    assert len(store.probes.list()) == total
    rows = store.audit.select(0.0, "", total + 10)
    assert len(rows) == total and all(r.outcome == "ok" for r in rows) and len({r.id for r in rows}) == total
    assert {r.node: r.last_seq for r in store.nodes.load()} == {f"t{t}": PER_THREAD - 1 for t in range(THREADS)}
    if not isinstance(store.snapshots, NullSnapshots):
        for t in range(THREADS):
            snap = store.snapshots.load(f"m{t}")
            assert snap is not None and snap.state == f"{t}:{PER_THREAD - 1}".encode()
