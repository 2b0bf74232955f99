"""The GUI's views without a collector: payloads in, what the widgets show out."""

from __future__ import annotations

import time

import pytest
from PySide6 import QtCore

from gui.client import Update
from gui.views.events import EventsView, event_cells
from gui.views.generic import GenericPanel
from gui.views.nodes import LAST_SEEN_COLUMN, STATUS_COLUMN, NodesView
from gui.views.plots import WINDOWS, PlotsView
from gui.views.series import NodeSeries, from_sample, from_summary
from gui.views.tree import MAX_CHILDREN, fill_tree, make_tree
from gui.window import state_text
from gui.worker import CONNECTED, CONNECTING, RECONNECTING, REFUSED, Worker, connection_state
from messages import (
    CollectorInfo,
    Envelope,
    Kind,
    NodeList,
    NodeStatus,
    NodeSummary,
    SystemStatsHistory,
    SystemStatsSummary,
)
from messages.codec import encode_payload, envelope
from tests.fakes import Answer, Handler
from tests.modules import sample

NOW = time.time()


def node_list(*items: tuple[str, str]) -> NodeList:
    return NodeList(nodes=[NodeStatus(node=n, hostname=f"host-{n}", status=s, last_seen=NOW - 1) for n, s in items])


def summary(**cpu: float) -> SystemStatsSummary:
    return SystemStatsSummary(
        nodes=[
            NodeSummary(
                node=n,
                hostname=f"host-{n}",
                time=NOW,
                cpu_percent=c,
                memory_percent=c / 2,
                load1=0.5,
                net_recv_rate=1000.0 * c,
                net_send_rate=10.0,
                disk_read_rate=1.0,
                disk_write_rate=2.0,
            )
            for n, c in cpu.items()
        ]
    )


def update(type_name: str, payload: object, t: float = NOW) -> Update:
    data, encoding, schema = encode_payload(payload)
    return Update(type_name, t, payload, data, encoding, schema)


def column(view: NodesView, col: int) -> list[str]:
    return [view.proxy.index(row, col).data() for row in range(view.proxy.rowCount())]


# ------------------------------------------------------------ nodes view


def test_nodes_sort_by_number_not_text(qtbot) -> None:
    view = NodesView()
    qtbot.addWidget(view)
    view.model.set_node_list(node_list(("a", "live"), ("b", "live"), ("c", "lost")))
    view.model.set_summary(summary(a=9.0, b=10.0, c=100.0))
    view.table.sortByColumn(3, QtCore.Qt.SortOrder.AscendingOrder)
    assert column(view, 3) == ["9.0", "10.0", "100.0"]  # as text "10.0" < "100.0" < "9.0"
    view.table.sortByColumn(6, QtCore.Qt.SortOrder.DescendingOrder)  # net in/s
    assert column(view, 0) == ["c", "b", "a"]


def test_nodes_filter_and_lost_colour(qtbot) -> None:
    view = NodesView()
    qtbot.addWidget(view)
    view.model.set_node_list(node_list(("alpha", "live"), ("beta", "lost")))
    view.filter.setText("lost")
    assert column(view, 0) == ["beta"]
    view.filter.setText("")
    assert sorted(column(view, 0)) == ["alpha", "beta"]
    beta = view.model.index(view.model.nodes().index("beta"), STATUS_COLUMN)
    assert beta.data() == "lost"
    assert beta.data(QtCore.Qt.ItemDataRole.BackgroundRole).color().name() == "#c62828"
    figures = view.model.index(beta.row(), 3)
    assert figures.data() == "-"  # no summary yet
    assert figures.data(QtCore.Qt.ItemDataRole.ForegroundRole).color().name() == "#8a8a8a"


def test_nodes_rows_are_kept_across_updates_and_selection_survives(qtbot) -> None:
    view = NodesView()
    qtbot.addWidget(view)
    view.model.set_node_list(node_list(("a", "live"), ("b", "live")))
    view.select_nodes(["b"])
    with qtbot.waitSignal(view.model.rowsInserted, timeout=1000):
        view.model.set_node_list(node_list(("a", "live"), ("b", "live"), ("c", "live")))
    assert view.model.nodes() == ["a", "b", "c"]
    assert view.selected_nodes() == ["b"]
    view.model.set_node_list(node_list(("b", "lost"), ("c", "live")))
    assert view.model.nodes() == ["b", "c"]
    assert view.selected_nodes() == ["b"]
    assert view.model.index(0, LAST_SEEN_COLUMN).data().endswith("ago")


def test_selection_is_announced(qtbot) -> None:
    view = NodesView()
    qtbot.addWidget(view)
    view.model.set_node_list(node_list(("a", "live"), ("b", "live"), ("c", "live")))
    with qtbot.waitSignal(view.selection_changed, timeout=1000) as signal:
        view.select_nodes(["a", "c"])
    assert signal.args == [["a", "c"]]


# ------------------------------------------------------------ plots


def test_series_merges_history_and_live_points() -> None:
    series = NodeSeries(max_points=5)
    assert series.add(*from_summary(summary(a=50.0).nodes[0]))
    assert not series.add(*from_summary(summary(a=50.0).nodes[0]))  # the same update again
    added = series.extend(from_sample(sample(NOW - k, cpu=float(k))) for k in (3, 2, 1))
    assert added == 3
    assert series.times == sorted(series.times) and len(series) == 4
    assert series.column("cpu") == [3.0, 2.0, 1.0, 50.0]
    series.extend(from_sample(sample(NOW - k)) for k in (10, 9, 8))
    assert len(series) == 5 and series.times[-1] == NOW  # the oldest went first
    assert not series.add(0.0, (0.0,) * 6)


def test_plots_lines_per_node_and_history_request(qtbot) -> None:
    view = PlotsView()
    qtbot.addWidget(view)
    wanted: list[str] = []
    view.history_wanted.connect(wanted.append)
    view.add_summary(summary(a=10.0, b=20.0))
    view.set_nodes(["a", "b"])
    assert wanted == ["a", "b"]
    assert view.points("a") == view.points("b") == 1
    view.add_history(SystemStatsHistory(node="a", samples=[sample(NOW - 2), sample(NOW - 1)]))
    assert view.points("a", "net_out") == 3
    view.set_nodes(["b"])
    view.set_nodes(["a", "b"])
    assert wanted == ["a", "b"]  # asked once per node
    names = [item.name() for item in view.plots["network"].listDataItems()]
    assert sorted(names) == ["a in", "a out", "b in", "b out"]
    view.window_box.setCurrentIndex(1)
    view.window_box.setCurrentIndex(0)
    assert view.window_seconds() == 300.0
    low, high = view.plots["cpu"].viewRange()[0]
    assert high - low == pytest.approx(300.0, abs=1.0)


def test_plots_stop_scrolling_when_the_user_pans(qtbot) -> None:
    view = PlotsView()
    qtbot.addWidget(view)
    view.add_summary(summary(a=10.0))
    view.set_nodes(["a"])
    cpu = view.plots["cpu"]
    cpu.setXRange(NOW - 3600, NOW - 3000, padding=0)
    cpu.getViewBox().sigRangeChangedManually.emit([True, False])  # what a drag or wheel zoom emits
    assert not view.following and "paused" in view.hint.text()
    view.add_summary(summary(a=11.0))
    assert cpu.viewRange()[0][1] == pytest.approx(NOW - 3000, abs=1.0)  # the user's range stays
    assert view.plots["disk"].viewRange()[0][1] == pytest.approx(NOW - 3000, abs=1.0)  # shared time axis
    view.window_box.setCurrentIndex(1)
    assert view.following
    assert cpu.viewRange()[0][1] == pytest.approx(time.time(), abs=2.0)


# ------------------------------------------------------------ events, generic, files, tree


def test_events_newest_first_with_attrs(qtbot) -> None:
    view = EventsView()
    qtbot.addWidget(view)
    events = [
        {
            "time": NOW,
            "node": "n1",
            "kind": "lost",
            "severity": "warning",
            "message": "node n1 lost",
            "attrs": {"after": "5s"},
        },
        {"time": NOW - 9, "node": "", "kind": "module-error", "severity": "error", "message": "boom", "attrs": {}},
    ]
    view.set_events(events)
    assert view.table.rowCount() == 2
    assert view.table.item(0, 2).text() == "lost"
    assert view.table.item(0, 4).text() == "node n1 lost  (after=5s)"
    assert view.table.item(1, 1).text() == "-"
    assert view.table.item(1, 0).foreground().color().name() == "#c62828"
    assert event_cells({})[0] == "-"
    view.set_events(b"not a list")
    assert view.table.rowCount() == 0


def test_generic_panel_shows_protobuf_and_msgpack(qtbot) -> None:
    panel = GenericPanel()
    qtbot.addWidget(panel)
    chosen: list[str] = []
    panel.type_chosen.connect(chosen.append)
    panel.set_types(["NodeList", "Uptimes"])
    assert chosen == ["NodeList"]
    panel.take_update(update("NodeList", node_list(("n1", "live"))))
    assert panel.shown_value()["nodes"][0]["hostname"] == "host-n1"
    assert "labscope.NodeList" in panel.status.text()
    panel.take_update(update("Uptimes", {"n1": {"uptime": 12.5, "blob": b"\x00\x01"}}))
    panel.chooser.setCurrentText("Uptimes")
    assert chosen == ["NodeList", "Uptimes"]
    top = panel.tree.topLevelItem(0)
    assert (top.text(0), top.child(0).text(0), top.child(0).text(1)) == ("n1", "uptime", "12.5")
    assert top.child(1).text(1) == "AAE="  # bytes shown as base64
    assert "msgpack" in panel.status.text()
    panel.freeze.setChecked(True)
    panel.take_update(update("Uptimes", {"n2": {}}))
    assert panel.tree.topLevelItem(0).text(0) == "n1"


def test_tree_caps_huge_lists(qtbot) -> None:
    tree = make_tree()
    qtbot.addWidget(tree)
    fill_tree(tree, {"items": list(range(MAX_CHILDREN + 10)), "flag": True, "none": None})
    items = tree.topLevelItem(0)
    assert items.childCount() == MAX_CHILDREN + 1
    assert items.child(MAX_CHILDREN).text(1) == "10 more not shown"
    assert tree.topLevelItem(1).text(1) == "true"
    assert tree.topLevelItem(2).text(1) == "null"
    fill_tree(tree, 42)
    assert tree.topLevelItem(0).text(1) == "42"


# ------------------------------------------------------------ connection state


@pytest.mark.parametrize(
    ("heard", "connected", "waited", "expected"),
    [
        (True, True, 0.0, CONNECTED),
        (True, False, 99.0, RECONNECTING),
        (False, False, 1.0, CONNECTING),
        (False, False, 6.0, REFUSED),
    ],
)
def test_connection_state(heard: bool, connected: bool, waited: float, expected: str) -> None:
    assert connection_state(heard, connected, waited, refused_after=5.0) == expected


def test_state_text() -> None:
    ep = "tcp://127.0.0.1:5556"
    assert "connected to lab" in state_text(CONNECTED, ep, "lab", NOW, NOW)
    assert "last heard 12 s ago" in state_text(RECONNECTING, ep, "lab", NOW - 12, NOW)
    assert "refused" in state_text(REFUSED, ep, "", 0.0, NOW)
    assert ep in state_text(CONNECTING, ep, "", 0.0, NOW)


# ------------------------------------------------------------ the worker, against a fake collector


def collector_answer(info: CollectorInfo) -> Handler:
    """Answer HELLO, HEARTBEAT and REQUEST like a collector would."""

    def answer(env: Envelope) -> list[Answer]:
        if env.kind == Kind.HELLO:
            return [envelope(Kind.HELLO, "CollectorInfo", info)]
        if env.kind == Kind.HEARTBEAT:
            return [envelope(Kind.HEARTBEAT)]
        if env.kind == Kind.REQUEST:
            return [envelope(Kind.RESPONSE, env.type, {"echo": dict(env.params)}, request_id=env.request_id)]
        return []

    return answer


@pytest.mark.timeout(30)
def test_worker_refused_then_connected_then_answers(qtbot, fake_collector) -> None:
    fake = fake_collector()  # serviced by hand below: it hears everything and answers nothing yet
    worker = Worker(fake.endpoint, refused_after=0.5)
    states: list[str] = []
    infos: list[CollectorInfo] = []
    answers: list[tuple[str, object]] = []
    worker.state_changed.connect(lambda state, heard: states.append(state))
    worker.info_changed.connect(infos.append)
    worker.response_received.connect(lambda tag, response: answers.append((tag, response.payload)))
    worker.start()
    try:
        qtbot.waitUntil(fake.serving(lambda: REFUSED in states), timeout=5000)
        worker.request("echo-1", "Echo", {"x": "1"})  # waits in the worker while nothing answers
        qtbot.waitUntil(fake.serving(lambda: fake.kinds(Kind.HEARTBEAT)), timeout=5000)
        assert answers == [] and not fake.kinds(Kind.REQUEST)
        fake.handler = collector_answer(
            CollectorInfo(
                alias="fake-lab",
                update_types=["NodeList"],
                request_types=["Echo"],
                heartbeat_interval=0.2,
                subscription_lease=3.0,
            )
        )
        qtbot.waitUntil(fake.serving(lambda: states[-1] == CONNECTED and infos and answers), timeout=10_000)
    finally:
        worker.stop()
    assert not worker.running
    assert states[:2] == [REFUSED, CONNECTED]
    assert infos[0].alias == "fake-lab"
    assert answers == [("echo-1", {"echo": {"x": "1"}})]


def tier_history(node: str, resolution: str, step: float, starts: list[float]) -> SystemStatsHistory:
    answer = SystemStatsHistory(node=node, resolution=resolution, step=step)
    names = ("cpu_percent", "mem_percent", "net_recv_rate", "net_send_rate", "disk_read_rate", "disk_write_rate")
    for name in names:
        answer.series.add(
            name=name,
            time=starts,
            min=[1.0] * len(starts),
            avg=[5.0] * len(starts),
            max=[9.0] * len(starts),
            count=[60.0] * len(starts),
        )
    return answer


def test_tier_windows_ask_with_since_and_resolution_and_draw_bands(qtbot) -> None:
    view = PlotsView()
    qtbot.addWidget(view)
    wanted: list[str] = []
    view.history_wanted.connect(wanted.append)
    view.add_summary(summary(a=50.0))
    view.set_nodes(["a"])
    assert wanted == ["a"] and view.history_params("a")["resolution"] == "raw"
    assert [label for label, _, _ in WINDOWS] == [
        "last 5 minutes",
        "last hour",
        "last 6 hours",
        "last 24 hours",
        "last 7 days",
        "last 30 days",
    ]
    view.window_box.setCurrentIndex(4)  # 7 days: the 1-hour tier
    assert wanted == ["a", "a"]
    params = view.history_params("a")
    assert params["resolution"] == "1h" and float(params["since"]) == pytest.approx(time.time() - 7 * 86400, abs=5)
    starts = [NOW - 3600 * k - 3600 for k in range(5, 0, -1)]  # five buckets ending an hour before NOW
    view.add_history(tier_history("a", "1h", 3600.0, starts))
    assert view.band_points("a", "cpu") == 5 and view.band_points("a", "net_out") == 5
    xs, ys = view.curves["a"]["cpu"].getData()
    assert list(xs) == [*starts, NOW] and list(ys) == [5.0] * 5 + [50.0]  # bucket averages, then the live point
    low, high = view.bands["a"]["cpu"][0].getData()[1], view.bands["a"]["cpu"][1].getData()[1]
    assert list(low) == [1.0] * 5 and list(high) == [9.0] * 5
    view.window_box.setCurrentIndex(0)  # back to raw samples: no band, asked once already
    assert view.band_points("a") == 0 and wanted == ["a", "a"]
    view.window_box.setCurrentIndex(4)
    assert wanted == ["a", "a"]  # the 7-day answer was asked for once
