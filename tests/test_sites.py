"""Sites and the top collector without sockets: names, subjects, messages, the ticket keys, the site view
and the top's apply path (real module host, real SQLite journal). The NATS side is tests/test_sites_e2e.py."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from collector import sites
from collector.addons import NodeRecord
from collector.config import CollectorConfig, DistSection, parse_args
from collector.counters import Counters
from collector.dist import ReportItem
from collector.distributions.dist_nats import headers, stream_subjects
from collector.host import ModuleHost
from collector.ingest import Item, Taken, item_of
from collector.journal import Journal
from collector.registry import NodeRegistry
from collector.site_publisher import check_tiers
from collector.site_view import SiteView
from collector.store import SQLiteStore
from messages import Batch, Encoding, NodeInfo
from messages.errors import ConfigError
from modules.nodes import node_status
from tests.conftest import FIXTURES


@pytest.mark.parametrize("name", ["a", "lab-1", "LAB_2", "x" * 64])
def test_good_site_names(name: str) -> None:
    assert sites.check_site(name) == name


@pytest.mark.parametrize("name", ["", "a.b", "a:b", "a b", "a*", "a>", "x" * 65, "é"])
def test_bad_site_names_are_one_line_naming_the_rule(name: str) -> None:
    with pytest.raises(ConfigError, match="a site name is 1 to 64 letters"):
        sites.check_site(name, "--site")


def test_qualified_ids_split_at_the_first_colon() -> None:
    assert sites.qualify("lab1", "n1") == "lab1:n1"
    assert sites.split_qualified("lab1:n1") == ("lab1", "n1")
    assert sites.split_qualified("lab1:a:b") == ("lab1", "a:b")  # a top of tops: the rest is the lower id
    assert sites.split_qualified("n1") is None
    assert sites.split_qualified("a.b:n1") is None
    assert sites.split_qualified("lab1:") is None


def test_a_cluster_url_is_a_list_of_servers() -> None:
    assert sites.servers("nats://a:1, nats://b:2,") == ["nats://a:1", "nats://b:2"]


def test_status_messages_round_trip_and_garbage_is_refused() -> None:
    record = NodeRecord("n1", NodeInfo(node="n1", hostname="h1", cpu_count=4), status="lost", backlog=7, last_seq=9)
    data = sites.parse_status(sites.nodes_message("lab1", 5.0, [record]))
    assert data is not None and data["site"] == "lab1"
    assert data["nodes"] == [
        {
            "node": "n1",
            "status": "lost",
            "backlog": 7,
            "last_seq": 9,
            "last_seen": 0.0,
            "hostname": "h1",
            "os": "",
            "cpu_count": 4,
            "memory_total": 0,
        }
    ]
    beat = sites.parse_status(sites.heartbeat_message("lab1", 5.0, 2.0, 1))
    assert beat == {"site": "lab1", "time": 5.0, "interval": 2.0, "nodes": 1}
    for body in (b"", b"[]", b"\xff", b'{"site": "a.b"}', b'{"site": "a", "nodes": [{"node": "n", "status": "x"}]}'):
        assert sites.parse_status(body) is None, body


def test_a_site_report_carries_its_site_in_id_and_headers() -> None:
    report = ReportItem("n1", 7, "Samples", 5.5, Encoding.MSGPACK, "", b"x", journal_id=3)
    assert headers(report)["Nats-Msg-Id"] == "n1:7" and "Labscope-Site" not in headers(report)
    head = headers(report, "lab1")
    assert head["Nats-Msg-Id"] == "lab1:n1:7" and head["Labscope-Site"] == "lab1"
    assert item_of("labscope.lab1.n1.Samples", head, b"x") == Item("lab1", "n1", 7, "Samples", 5.5, 2, "", b"x")
    assert stream_subjects("labscope", True) == ["labscope.*.*.>"]
    assert stream_subjects("labscope", False) == ["labscope.>"]


def test_a_message_without_the_site_header_takes_the_site_from_its_subject() -> None:
    head = {"Labscope-Node": "n.1", "Labscope-Seq": "3", "Labscope-Type": "T", "Labscope-Encoding": "RAW"}
    assert item_of("labscope.lab2.n_1.T", head, b"") == Item("lab2", "n.1", 3, "T", 0.0, 3, "", b"")


@pytest.mark.parametrize(
    "head",
    [None, {}, {"Labscope-Node": "n"}, {"Labscope-Node": "n", "Labscope-Seq": "x"}, {"Labscope-Seq": "1"}],
)
def test_a_message_that_holds_no_report_is_none(head: dict[str, str] | None) -> None:
    assert item_of("labscope.a.heartbeat", head, b"{}") is None
    bad_encoding = {"Labscope-Node": "n", "Labscope-Seq": "1", "Labscope-Encoding": "ZIP"}
    assert item_of("labscope.a.n.T", bad_encoding, b"") is None
    for site in ("../x", "a.b", "a:b"):
        hostile = {"Labscope-Site": site, "Labscope-Node": "n", "Labscope-Seq": "1"}
        assert item_of("labscope.x.n.T", hostile, b"") is None, site
    assert item_of("labscope.a:b.n.T", {"Labscope-Node": "n", "Labscope-Seq": "1"}, b"") is None


def test_site_and_ingest_flags_fill_the_ticket(tmp_path: Path) -> None:
    config = parse_args(
        ["--data-dir", str(tmp_path), "--ingest-nats", "nats://h1:4222,nats://h2:4222", "--ingest-sites", "a, b"]
    )
    assert config.ingest_nats == "nats://h1:4222,nats://h2:4222"
    assert config.ingest_sites == ["a", "b"] and config.ingest_stream == "LABSCOPE"
    toml = tmp_path / "site.toml"
    toml.write_text('[collector]\nsite = "lab1"\nsite_heartbeat = 0.5\n')
    config = parse_args(["--config", str(toml)])
    assert (config.site, config.site_heartbeat) == ("lab1", 0.5)


def test_a_site_needs_its_nats_distribution_in_reports_mode() -> None:
    with pytest.raises(ConfigError, match='type = "nats" and mode = "reports"'):
        check_tiers(CollectorConfig(site="lab1"))
    points = DistSection("js", "nats", mode="points")
    with pytest.raises(ConfigError):
        check_tiers(CollectorConfig(site="lab1", distributions=[points]))
    check_tiers(CollectorConfig(site="lab1", distributions=[DistSection("js", "nats", mode="reports")]))


# ------------------------------------------------------------ the top's view of its sites


def hooked_host(tmp_path: Path) -> ModuleHost:
    config = CollectorConfig(modules_dirs=[FIXTURES / "hooks"], data_dir=tmp_path / "data")
    host = ModuleHost(config, NodeRegistry(), Counters())
    host.load()
    return host


def hooks(host: ModuleHost) -> Any:
    return host.answer("HookCounts", {})


def nodes_msg(site: str, **statuses: str) -> dict[str, Any]:
    return {"site": site, "time": 1.0, "nodes": [{"node": n, "status": s, "backlog": 3} for n, s in statuses.items()]}


def test_a_site_node_takes_its_site_status_and_is_lost_once_when_the_site_falls_silent(tmp_path: Path) -> None:
    host = hooked_host(tmp_path)
    view = SiteView(host.registry, host, host.counters, {}, timeout=5.0)
    view.on_status("nodes", nodes_msg("a", n1="live", n2="lost"), monotonic=100.0, now=1000.0)
    records = host.registry.records
    assert {n: (r.site, r.status, r.backlog) for n, r in records.items()} == {
        "a:n1": ("a", "live", 3),
        "a:n2": ("a", "lost", 3),
    }
    assert node_status(records["a:n1"]).site == "a"
    view.expire(104.0)
    assert records["a:n1"].status == "live"
    view.expire(106.0)
    view.expire(107.0)
    assert records["a:n1"].status == "lost" and host.counters["sites-lost"] == 1
    assert hooks(host)["a:n1"] == {"joined": 1, "left": 1}
    view.on_status("heartbeat", {"site": "a", "time": 2.0}, monotonic=108.0, now=1008.0)
    assert records["a:n1"].status == "live" and records["a:n2"].status == "lost"
    assert hooks(host)["a:n1"] == {"joined": 2, "left": 1}


def test_the_top_never_expires_a_site_node_by_its_own_node_timeout(tmp_path: Path) -> None:
    host = hooked_host(tmp_path)
    view = SiteView(host.registry, host, host.counters, {}, timeout=5.0)
    view.on_status("nodes", nodes_msg("a", n1="live"), monotonic=100.0, now=1000.0)
    local = NodeRecord("local", last_seen=0.0)
    host.registry.records["local"] = local
    assert host.registry.expire(now=10**9, timeout=5.0) == [local]
    assert host.registry.records["a:n1"].status == "live"


def test_a_restarted_top_takes_its_recorded_qualified_nodes_as_site_nodes(tmp_path: Path) -> None:
    host = hooked_host(tmp_path)
    host.registry.restore([NodeRecord("a:n1", status="lost", last_seq=40), NodeRecord("plain", status="lost")])
    view = SiteView(host.registry, host, host.counters, {}, timeout=5.0)
    assert host.registry.records["a:n1"].site == "a" and host.registry.records["plain"].site == ""
    view.on_status("heartbeat", {"site": "a", "time": 2.0}, monotonic=1.0, now=2.0)
    assert host.registry.records["a:n1"].status == "live"


def test_the_top_applies_each_site_node_seq_once_and_journals_it_qualified(tmp_path: Path) -> None:
    from collector.ingest_link import IngestLink

    host = hooked_host(tmp_path)
    config = host.config
    store = SQLiteStore(tmp_path / "journal.sqlite3")
    journal = Journal(store, host, host.registry, host.counters, config)
    link = IngestLink(config, host.registry, host, host.counters, journal)

    def item(site: str, node: str, seq: int) -> Item:
        return Item(site, node, seq, "Samples", 1.0, int(Encoding.MSGPACK), "", b"\x80")

    first = Taken([item("a", "n1", 1), item("a", "n1", 2), item("b", "n1", 1)], "m3", 3)
    again = Taken([item("a", "n1", 2), item("a", "n1", 3), item("a", "n1", 0)], "m6", 6)
    link.feed.handoff.extend([first, again])
    link.pass_once(monotonic=1.0, now=2.0)
    assert list(link.feed.committed) == [first, again]  # handed back for acknowledging only after the commit
    counters = host.counters
    assert (counters["ingest-reports"], counters["ingest-duplicates"], counters["ingest-out-of-range"]) == (4, 1, 1)
    store.close()
    db = sqlite3.connect(tmp_path / "journal.sqlite3")
    rows = db.execute("SELECT batch FROM journal ORDER BY id").fetchall()
    nodes = dict(db.execute("SELECT node, last_seq FROM nodes").fetchall())
    db.close()
    journaled = [(e.node, e.seq) for (batch,) in rows for e in Batch.FromString(batch).envelopes]
    assert sorted(journaled) == [("a:n1", 1), ("a:n1", 2), ("a:n1", 3), ("b:n1", 1)]
    assert nodes == {"a:n1": 3, "b:n1": 1}


# ------------------------------------------------------------ the NATS thread's order guard (no NATS)


class Delivered:
    """What the feed reads of a delivered JetStream message: subject, headers, data, stream seq, ack()."""

    def __init__(self, stream_seq: int, site: str = "a", seq: int = 0) -> None:
        self.subject = f"labscope.{site}.n1.T"
        self.headers = {"Labscope-Site": site, "Labscope-Node": "n1", "Labscope-Seq": str(seq or stream_seq)}
        self.data = b""
        self.metadata = type("Meta", (), {"sequence": type("Seq", (), {"stream": stream_seq})()})()
        self.acked = False

    async def ack(self) -> None:
        self.acked = True


def take(feed: Any, messages: list[Delivered]) -> Any:
    import asyncio

    return asyncio.run(feed._take(messages))


def test_the_feed_hands_over_in_stream_order_and_reanchors_on_a_hole() -> None:
    from collector.ingest import IngestFeed

    feed = IngestFeed(CollectorConfig(ingest_nats="nats://127.0.0.1:1", ingest_sites=["a"]), wake=lambda: None)
    feed._reanchor = False
    first = take(feed, [Delivered(1), Delivered(2), Delivered(3, site="b")])
    assert [i.seq for i in first.items] == [1, 2] and first.last_stream_seq == 3
    assert feed.counts.other_site == 1  # left out; acknowledged with the batch
    again = take(feed, [Delivered(2), Delivered(4)])  # a redelivery is handed over (the loop drops it by seq)
    assert [i.seq for i in again.items] == [2, 4] and not feed._reanchor
    holed = take(feed, [Delivered(5), Delivered(7), Delivered(8)])  # 6 was delivered and lost in transit
    assert [i.seq for i in holed.items] == [5] and feed._reanchor and holed.last_stream_seq == 5
    assert feed.counts.stream_gap == 0


def test_a_hole_that_shows_again_after_the_reanchor_is_a_gap_in_the_stream() -> None:
    from collector.ingest import IngestFeed

    feed = IngestFeed(CollectorConfig(ingest_nats="nats://127.0.0.1:1"), wake=lambda: None)
    feed._reanchor, feed._expected = False, 10  # anchored at 10; 10 to 12 aged out of the stream
    assert take(feed, [Delivered(13), Delivered(14)]) is None and feed._reanchor
    feed._reanchor, feed._expected = False, 10  # anchored at 10 again: the same hole
    taken = take(feed, [Delivered(13), Delivered(14)])
    assert [i.seq for i in taken.items] == [13, 14] and feed.counts.stream_gap == 3 and not feed._reanchor
