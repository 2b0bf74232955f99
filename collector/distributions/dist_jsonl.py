"""``jsonl``: one JSON object a line into a file, rotated by size.

Points mode writes ``{"time", "node", "code", "value"}`` per data point;
reports mode writes the whole report: ``{"time", "node", "seq", "type",
"encoding", "schema", "payload"}`` with the payload bytes in base64 and the
encoding by name (``PROTOBUF``, ``MSGPACK``, ``RAW``, ``NONE``). A value JSON
cannot hold is written as its ``str()``.

Lines are written in ``sendUpdate`` and flushed once per batch in
``updateBatchComplete``. Before a line would take the file past
``max_bytes``, the file is rotated: ``FILE`` becomes ``FILE.1``, ``FILE.1``
becomes ``FILE.2`` ..., keeping ``backups`` old files (0: the file is simply
started over). A write that fails (disk full, file gone) closes the file and
returns False: the runner keeps the line, reopens the file after its backoff
and writes the line again. A flush that fails loses what the batch had not yet
written to disk; it is counted as an error of ``updateBatchComplete``.

Sample config block::

    [distributions.archive]
    type = "jsonl"
    # path = "archive.jsonl"     # relative: inside <data-dir>/distributions/archive/
    # max_bytes = 67108864       # rotate before the file would grow past this (64 MiB)
    # backups = 5                # rotated files kept: archive.jsonl.1 ... archive.jsonl.5
    # mode = "points"            # or "reports": whole reports, payload in base64
    # codes = ["*"]
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import IO, Any

from collector import dist

__all__ = ["JsonlDistribution", "record"]

DEFAULT_MAX_BYTES = 64 * 2**20


def record(payload: Any) -> dict[str, Any]:
    """The JSON object of one queued item (a DataPoint or a ReportItem)."""
    if isinstance(payload, dist.ReportItem):
        return {
            "time": payload.time,
            "node": payload.node,
            "seq": payload.seq,
            "type": payload.type,
            "encoding": payload.encoding_name,
            "schema": payload.schema,
            "payload": base64.b64encode(payload.payload).decode("ascii"),
        }
    return {"time": payload.time, "node": payload.node, "code": payload.code, "value": payload.value}


class JsonlDistribution(dist.Distribution):
    """Data points or whole reports as JSON lines in a size-rotated file."""

    options = {
        "path": dist.Option(
            "", help="the file; relative: inside the distribution's data folder (default NAME.jsonl there)"
        ),
        "max_bytes": dist.Option(DEFAULT_MAX_BYTES, minimum=1, help="rotate before the file grows past this"),
        "backups": dist.Option(5, minimum=0, help="rotated files kept"),
    }

    def __init__(self, core: dist.DistCore) -> None:
        super().__init__(core)
        self.path = Path(f"{core.name}.jsonl")
        self.max_bytes = DEFAULT_MAX_BYTES
        self.backups = 5
        self.file: IO[bytes] | None = None
        self.size = 0

    def configure(self, config: dict[str, Any]) -> None:
        """Take ``path``, ``max_bytes`` and ``backups`` (checked by the collector at start-up)."""
        self.config = config
        path = Path(config["path"] or f"{self.name}.jsonl")
        self.path = path if path.is_absolute() else self.core.data_dir() / path
        self.max_bytes = int(config["max_bytes"])
        self.backups = int(config["backups"])

    def isConnected(self) -> bool:
        """True while the file is open."""
        return self.file is not None

    def connect(self) -> bool:
        """Open the file for appending (its folder created on demand)."""
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "ab")  # held open across batches, closed in close()
        self.size = self.file.tell()
        return True

    def sendUpdate(self, payload: Any) -> bool:
        """Write one line (rotating first when it would not fit); False when the write failed."""
        line = json.dumps(record(payload), default=str, separators=(",", ":")).encode() + b"\n"
        if self.size and self.size + len(line) > self.max_bytes:
            self._rotate()
        if self.file is None:
            return False
        try:
            self.file.write(line)
        except OSError as exc:
            self.log.warning("jsonl %s: write failed: %s", self.path, exc)
            self.close()
            return False
        self.size += len(line)
        return True

    def updateBatchComplete(self) -> None:
        """Flush the batch's lines to the file; a failed flush closes it (and raises, so it is counted)."""
        if self.file is None:
            return
        try:
            self.file.flush()
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        """Close the file (flushing it)."""
        file, self.file = self.file, None
        if file is not None:
            try:
                file.close()
            except OSError as exc:
                self.log.warning("jsonl %s: close failed: %s", self.path, exc)

    def _rotate(self) -> None:
        """FILE -> FILE.1 -> ... -> FILE.<backups>, then a fresh FILE."""
        self.close()
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
        if self.backups > 0 and self.path.exists():
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self.connect()
