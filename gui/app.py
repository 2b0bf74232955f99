"""Run the Qt application of ``labscope gui``, and take its ``--screenshot``.

Imported only by the ``gui`` subcommand (Qt is heavy and optional), after the
command has chosen the Qt platform.
"""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from gui.qtcheck import check_binding
from gui.window import MainWindow
from messages.errors import ScreenshotFailed
from messages.keys import ClientKeys

__all__ = ["Screenshot", "ScreenshotFailed", "run"]

log = logging.getLogger(__name__)

CHECK_EVERY_MS = 100
FIGURES_GRACE = 5.0  # seconds to wait, once the nodes are shown, for their figures and plot lines
SETTLE_MS = 400  # let the last updates paint before grabbing
SIGNAL_CHECK_MS = 200  # Python runs its signal handlers only between Qt events


class Screenshot(QtCore.QObject):
    """Waits until ``window`` shows the collector's nodes, plots them all, saves a PNG and quits the app.

    ``error`` holds the one-line reason when it failed, None on success.
    """

    def __init__(self, window: MainWindow, path: Path, timeout: float) -> None:
        super().__init__(window)
        self.window = window
        self.path = path
        self.timeout = timeout
        self.error: str | None = None
        self._deadline = time.monotonic() + timeout
        self._shown_at: float | None = None
        self._timer = QtCore.QTimer(self)
        self._timer.timeout.connect(self._check)

    def start(self) -> None:
        """Start watching the window; a refused CURVE handshake fails the screenshot at once."""
        self.window.worker.auth_refused.connect(self._refused)
        self._timer.start(CHECK_EVERY_MS)

    def _refused(self, reason: str) -> None:
        self._fail(f"{self.window.endpoint}: {reason}")

    def _check(self) -> None:
        now = time.monotonic()
        if self._shown_at is None:
            if self.window.nodes_shown():
                self._shown_at = now
                self.window.nodes.table.selectAll()  # every node in the plots: the picture shows them
            elif now > self._deadline:
                self._fail(
                    f"the nodes view showed no nodes within {self.timeout:g} s "
                    f"(connection {self.window.state} to {self.window.endpoint})"
                )
            return
        if self._complete() or now - self._shown_at > FIGURES_GRACE:
            self._timer.stop()
            QtCore.QTimer.singleShot(SETTLE_MS, self._grab)

    def _complete(self) -> bool:
        plots = self.window.plots
        return self.window.figures_shown() and all(
            plots.series[node].history_loaded and plots.points(node) > 1
            for node in self.window.listed_nodes()
            if node in plots.series
        )

    def _grab(self) -> None:
        image = self.window.grab()
        if not image.save(str(self.path), "PNG"):
            self._fail(f"cannot write the screenshot to {self.path}")
            return
        log.info("screenshot of %d nodes saved to %s", len(self.window.listed_nodes()), self.path)
        QtWidgets.QApplication.exit(0)

    def _fail(self, reason: str) -> None:
        self._timer.stop()
        self.error = reason
        QtWidgets.QApplication.exit(1)


def _qt_message(kind: QtCore.QtMsgType, context: QtCore.QMessageLogContext, message: str) -> None:
    # Qt's own warnings (e.g. the offscreen platform's "does not support propagateSizeHints()")
    # are noise to a user: they go to the log at debug level, real failures at error level.
    serious = kind in (QtCore.QtMsgType.QtCriticalMsg, QtCore.QtMsgType.QtFatalMsg)
    logging.getLogger("gui.qt").log(logging.ERROR if serious else logging.DEBUG, "%s", message)


def application() -> QtWidgets.QApplication:
    """The process's QApplication, created on first use; Qt's messages go to the log.

    Raises BrokenQtBinding when the installed PySide6 would crash the interpreter.
    """
    app = QtWidgets.QApplication.instance()
    if isinstance(app, QtWidgets.QApplication):
        return app
    check_binding()
    QtCore.qInstallMessageHandler(_qt_message)
    app = QtWidgets.QApplication(["labscope gui"])
    app.setApplicationName("labscope")
    return app


def quit_on_signals(app: QtWidgets.QApplication) -> QtCore.QTimer:
    """Ctrl-C and SIGTERM close the window cleanly; returns the timer that lets Python notice them."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: app.quit())
    timer = QtCore.QTimer(app)
    timer.timeout.connect(_noop)
    timer.start(SIGNAL_CHECK_MS)
    return timer


def _noop() -> None:
    return None


def run(endpoint: str, screenshot: Path | None = None, timeout: float = 30.0, keys: ClientKeys | None = None) -> int:
    """Show the window until it is closed (or the screenshot is taken); returns the exit status.

    Raises ScreenshotFailed when ``screenshot`` was asked for and could not be taken.
    """
    app = application()
    quit_on_signals(app)
    window = MainWindow(endpoint, keys=keys)
    shooter = Screenshot(window, screenshot, timeout) if screenshot is not None else None
    window.show()
    window.start()
    if shooter is not None:
        shooter.start()
    try:
        status = app.exec()
    finally:
        window.shutdown()
    if shooter is not None and shooter.error is not None:
        raise ScreenshotFailed(shooter.error)
    return int(status)
