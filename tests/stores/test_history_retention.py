"""History retentions are parsed once for every backend (collector/stores/history.py): checked through sqlite."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.stores import open_store
from collector.stores.history import retention_of
from messages import ConfigError


def test_bad_retention_is_one_config_line(tmp_path: Path) -> None:
    assert retention_of("90m", 3600, "2y") == {"raw": 5400.0, "1m": 3600.0, "1h": 2 * 365 * 86400.0}
    for bad in ("soon", 0, -5, "nan", True):
        with pytest.raises(ConfigError, match="history_raw") as info:
            open_store("sqlite", {"history_raw": bad}, tmp_path)
        assert "\n" not in str(info.value)
