"""The GUI against a real CURVE server (tests/curve.py): a refused key is said in the status bar, and an
allowed one later gets in without a restart."""

from __future__ import annotations

from pathlib import Path

import pytest
import zmq

from gui.window import MainWindow, state_text
from gui.worker import AUTH_REFUSED, CONNECTED
from messages.keys import REFUSED_KEY, REQUIRES_CURVE, client_keys, generate
from tests.curve import curve_server


def test_state_text_of_a_refused_handshake() -> None:
    text = state_text(AUTH_REFUSED, "tcp://h:1", "", 0.0, 0.0, REFUSED_KEY)
    assert text == f"\u25cf refused by tcp://h:1: {REFUSED_KEY}; still trying ..."


@pytest.mark.timeout(60)
def test_status_bar_shows_a_refused_key_then_connects_once_allowed(
    qtbot, zmq_context: zmq.Context, tmp_path: Path
) -> None:
    with curve_server(zmq_context, tmp_path / "srv") as server:
        mine = generate(tmp_path / "me", "viewer")
        window = MainWindow(server.endpoint, keys=client_keys(str(server.public_file), str(mine.path)))
        window.worker.auth_retry = 0.3
        reasons: list[str] = []
        window.worker.auth_refused.connect(reasons.append)
        qtbot.addWidget(window)
        window.show()
        window.start()
        try:
            qtbot.waitUntil(lambda: REFUSED_KEY in window.state_label.text(), timeout=10_000)
            assert window.state == AUTH_REFUSED and reasons == [REFUSED_KEY]
            assert server.endpoint in window.state_label.text()
            server.allow(mine)
            qtbot.waitUntil(lambda: window.state == CONNECTED, timeout=15_000)
            assert "connected to curve" in window.state_label.text()
            assert reasons == [REFUSED_KEY]  # said once, not once per retry
        finally:
            window.shutdown()
        assert not window.worker.running


@pytest.mark.timeout(60)
def test_a_plain_gui_is_told_the_collector_requires_curve(qtbot, zmq_context: zmq.Context, tmp_path: Path) -> None:
    with curve_server(zmq_context, tmp_path / "srv") as server:
        window = MainWindow(server.endpoint)
        qtbot.addWidget(window)
        window.show()
        window.start()
        try:
            qtbot.waitUntil(lambda: REQUIRES_CURVE in window.state_label.text(), timeout=10_000)
        finally:
            window.shutdown()
