"""The GUI against a real collector and real agents (pytest-qt, offscreen).

Each test starts its own collector (node timeout 1.5 s, updates every 0.2 s)
and agents through the ``procs`` fixture and waits with deadlines only.
"""

from __future__ import annotations

import json
import signal
import time

import pytest
from PySide6 import QtCore

from gui.views.nodes import STATUS_COLUMN
from gui.worker import CONNECTED, RECONNECTING
from tests.conftest import ProcessGroup
from tests.gui.conftest import GUI_MODULES, LiveBed, start_testbed

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

WAIT_MS = 15_000


def statuses(window) -> dict[str, str]:
    """Node -> status text as the table shows it."""
    model = window.nodes.model
    return {node: model.row_of(node).status for node in model.nodes()}


def test_table_fills_with_the_nodes(testbed: LiveBed, make_window, qtbot) -> None:
    window = make_window(testbed.collector.clients)
    qtbot.waitUntil(
        lambda: window.figures_shown() and set(window.listed_nodes()) == {"gui-a", "gui-b"}, timeout=WAIT_MS
    )
    model = window.nodes.model
    assert sorted(model.nodes()) == ["gui-a", "gui-b"]
    proxy = window.nodes.proxy  # the view sorts by node id until the user clicks another header
    assert [proxy.index(row, 0).data() for row in range(proxy.rowCount())] == ["gui-a", "gui-b"]
    for node in ("gui-a", "gui-b"):
        row = model.row_of(node)
        assert row.status == "live"
        assert row.hostname not in ("", "-")
        assert 0.0 <= float(row.cpu) <= 100.0
        assert 0.0 < float(row.memory) <= 100.0
        assert row.last_seen.endswith("ago")
    # the status cell is coloured, the title names the collector's alias, the status bar says connected
    index = model.index(0, STATUS_COLUMN)
    assert index.data(QtCore.Qt.ItemDataRole.BackgroundRole).color().name() == "#2e7d32"
    assert "gui-test" in window.windowTitle()
    qtbot.waitUntil(lambda: window.state == CONNECTED, timeout=WAIT_MS)
    assert window.state_label.text().startswith("\u25cf connected to gui-test")
    # filterable: the proxy keeps only the matching row
    window.nodes.filter.setText("GUI-B")
    assert window.nodes.proxy.rowCount() == 1
    assert window.nodes.proxy.index(0, 0).data() == "gui-b"


def test_a_plot_receives_points_for_two_nodes_at_once(testbed: LiveBed, make_window, qtbot) -> None:
    window = make_window(testbed.collector.clients)
    qtbot.waitUntil(lambda: window.figures_shown() and len(window.listed_nodes()) == 2, timeout=WAIT_MS)
    window.nodes.select_nodes(["gui-a", "gui-b"])
    plots = window.plots
    assert plots.selected == ["gui-a", "gui-b"]
    qtbot.waitUntil(lambda: all(plots.series[n].history_loaded for n in ("gui-a", "gui-b")), timeout=WAIT_MS)
    before = {node: plots.points(node, "cpu") for node in ("gui-a", "gui-b")}
    assert all(count >= 1 for count in before.values()), before
    # live updates keep coming for both lines at once, in every plot
    qtbot.waitUntil(lambda: all(plots.points(n, "cpu") >= before[n] + 3 for n in before), timeout=WAIT_MS)
    for node in before:
        for metric in ("memory", "net_in", "net_out", "disk_read", "disk_write"):
            assert plots.points(node, metric) == plots.points(node, "cpu")
        xs, ys = plots.curves[node]["cpu"].getData()
        assert list(xs) == sorted(xs) and len(set(xs)) == len(xs)  # history and live merged cleanly
        assert all(0.0 <= y <= 100.0 for y in ys)
    # deselecting one node removes its lines and keeps the other's
    window.nodes.select_nodes(["gui-b"])
    assert plots.points("gui-a") == 0 and plots.points("gui-b") > 0


def test_a_killed_agent_turns_lost(testbed: LiveBed, make_window, qtbot) -> None:
    window = make_window(testbed.collector.clients)
    qtbot.waitUntil(lambda: statuses(window) == {"gui-a": "live", "gui-b": "live"}, timeout=WAIT_MS)
    testbed.agents["gui-a"].send_signal(signal.SIGKILL)
    testbed.agents["gui-a"].wait(5)
    qtbot.waitUntil(lambda: statuses(window).get("gui-a") == "lost", timeout=WAIT_MS)
    assert statuses(window)["gui-b"] == "live"
    index = window.nodes.model.index(window.nodes.model.nodes().index("gui-a"), STATUS_COLUMN)
    assert index.data(QtCore.Qt.ItemDataRole.BackgroundRole).color().name() == "#c62828"
    # the Events tab shows the loss, newest first
    qtbot.waitUntil(
        lambda: any(e["kind"] == "lost" and e["node"] == "gui-a" for e in window.events.events), timeout=WAIT_MS
    )
    times = [e["time"] for e in window.events.events]
    assert times == sorted(times, reverse=True)
    assert window.events.events[0]["kind"] == "lost"


def test_generic_panel_shows_a_custom_modules_update(procs: ProcessGroup, make_window, qtbot) -> None:
    bed = start_testbed(procs, ("gui-c",), "--modules-dir", str(GUI_MODULES))
    window = make_window(bed.collector.clients)
    panel = window.generic
    qtbot.waitUntil(
        lambda: "Ticks" in [panel.chooser.itemText(i) for i in range(panel.chooser.count())], timeout=WAIT_MS
    )
    panel.chooser.setCurrentText("Ticks")
    qtbot.waitUntil(lambda: (panel.shown_value() or {}).get("reports", {}).get("gui-c", 0) > 0, timeout=WAIT_MS)
    assert panel.shown_value()["module"] == "ticker"
    items = [panel.tree.topLevelItem(i) for i in range(panel.tree.topLevelItemCount())]
    top = {item.text(0): item for item in items}
    assert set(top) == {"module", "reports"}
    assert top["module"].text(1) == "ticker"
    assert top["reports"].child(0).text(0) == "gui-c"
    assert int(top["reports"].child(0).text(1)) > 0
    assert "Ticks" in panel.status.text() and "msgpack" in panel.status.text()


def test_a_refused_update_type_is_said_and_the_rest_still_arrives(procs: ProcessGroup, make_window, qtbot) -> None:
    bed = start_testbed(procs, ("gui-f",), "--disable-module", "files")  # FileList is one of the window's types
    window = make_window(bed.collector.clients)
    qtbot.waitUntil(lambda: "FileList" in window.statusBar().currentMessage(), timeout=WAIT_MS)
    message = window.statusBar().currentMessage()
    assert message.startswith("subscription refused: unknown-type: no module pushes update type 'FileList'")
    assert "NodeList" in message  # the known types are named
    qtbot.waitUntil(lambda: window.figures_shown() and window.listed_nodes() == ["gui-f"], timeout=WAIT_MS)
    assert window.worker.running


@pytest.mark.timeout(90)
def test_survives_the_collector_being_killed_and_reconnects(procs: ProcessGroup, make_window, qtbot) -> None:
    first = start_testbed(procs, ("gui-r",), "--alias", "first")
    window = make_window(first.collector.clients)
    qtbot.waitUntil(lambda: statuses(window) == {"gui-r": "live"} and "first" in window.windowTitle(), timeout=WAIT_MS)
    ports = json.loads((first.collector.data_dir / "collector.json").read_text())
    killed_at = time.time()
    first.collector.stop(signal.SIGKILL)
    qtbot.waitUntil(lambda: window.state == RECONNECTING, timeout=WAIT_MS)
    assert "reconnecting" in window.state_label.text()
    assert_responsive(qtbot)
    procs.collector(
        "--listen-agents",
        ports["agents"],
        "--listen-clients",
        ports["clients"],
        "--alias",
        "second",
        "--update-interval",
        "0.2",
        "--node-timeout",
        "1.5",
    )
    qtbot.waitUntil(lambda: window.state == CONNECTED and "second" in window.windowTitle(), timeout=30_000)
    # the agent came back too, and the table shows it from the new collector's NodeList
    qtbot.waitUntil(
        lambda: (
            statuses(window) == {"gui-r": "live"}
            and window.nodes.model.node_list is not None
            and window.nodes.model.node_list.nodes[0].first_seen > killed_at
        ),
        timeout=30_000,
    )
    assert window.state_label.text().startswith("\u25cf connected to second")


def assert_responsive(qtbot, seconds: float = 1.0) -> None:
    """The GUI thread keeps running timers while the collector is gone: it never blocks on the network."""
    ticks: list[float] = []
    timer = QtCore.QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(20)
    qtbot.wait(int(seconds * 1000))
    timer.stop()
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    assert len(ticks) >= seconds / 0.02 / 2, f"only {len(ticks)} timer ticks in {seconds} s"
    assert max(gaps) < 0.25, f"the GUI thread stalled for {max(gaps):.2f} s"


def test_longer_windows_ask_the_tiers_and_draw_min_max_bands(testbed: LiveBed, make_window, qtbot) -> None:
    window = make_window(testbed.collector.clients)
    qtbot.waitUntil(lambda: window.figures_shown() and len(window.listed_nodes()) == 2, timeout=WAIT_MS)
    window.nodes.select_nodes(["gui-a"])
    plots = window.plots
    qtbot.waitUntil(lambda: plots.series["gui-a"].history_loaded, timeout=WAIT_MS)
    assert plots.band_points("gui-a") == 0  # raw samples: no band
    for index, resolution in ((1, "1m"), (4, "1h")):
        plots.window_box.setCurrentIndex(index)
        assert plots.history_params("gui-a")["resolution"] == resolution
        qtbot.waitUntil(lambda r=resolution: getattr(plots.tiers.get("gui-a"), "resolution", "") == r, timeout=WAIT_MS)
        qtbot.waitUntil(lambda: plots.band_points("gui-a", "cpu") >= 1, timeout=WAIT_MS)  # the open bucket at least
        tier = plots.tiers["gui-a"]
        mins, avgs, maxs = tier.columns["cpu"]
        assert all(lo <= av <= hi for lo, av, hi in zip(mins, avgs, maxs, strict=True))
        low, high = plots.plots["cpu"].viewRange()[0]
        assert high - low == pytest.approx(plots.window_seconds(), rel=0.01)
