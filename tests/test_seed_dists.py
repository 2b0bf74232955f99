"""The seed's dist_custom (../shared/seeds/000) runs verbatim as a drop-in distribution.

tests/fixtures/seed_dists/dist_custom.py is the seed's one import line and class, exactly as the seed
shows them; collector/distributions/dist_custom.py ships the same class as the built-in starting point.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from collector import dist_loader
from tests.conftest import FIXTURES, REPO, ProcessGroup, wait_for
from tests.wire import Client

SEED = FIXTURES / "seed_dists" / "dist_custom.py"
BUILTIN = REPO / "collector" / "distributions" / "dist_custom.py"

pytestmark = pytest.mark.timeout(60)


def class_text(path: Path) -> str:
    """The import line and the class, as written (comments and blank lines included)."""
    text = path.read_text()
    return text[text.index("from collector import dist") :]


def test_the_seed_class_is_verbatim_and_the_builtin_is_the_same() -> None:
    source = class_text(SEED)
    for line in (
        "from collector import dist",
        "class CustomDistribution(dist.Distribution):",
        "super(CustomDistribution, self).__init__(core)",
        "self.queueData([str(code),str(value)])",
        "#Retrurn 'true' if connection is successful",
        "#Read In Configuration Details Here",
    ):
        assert line in source, line
    assert re.findall(r"def (\w+)\(", source) == [
        "__init__",
        "configure",
        "isConnected",
        "connect",
        "sendData",
        "sendUpdate",
        "updateBatchComplete",
    ]
    assert class_text(BUILTIN) == source


def start(procs: ProcessGroup, tmp_path: Path, config: str) -> Any:
    path = tmp_path / "collector.toml"
    path.write_text(config)
    collector = procs.collector(
        "--config", str(path), "--distributions-dir", str(SEED.parent), "--distributions-dir", str(FIXTURES / "dists")
    )
    procs.agent(collector.agents, "n1", interval=0.2)
    return collector


@pytest.mark.e2e
def test_the_seed_runs_as_a_drop_in(procs: ProcessGroup, zmq_context: Any, tmp_path: Path) -> None:
    collector = start(procs, tmp_path, '[distributions.seed]\ntype = "custom"\n')
    client = Client(zmq_context, collector.clients)
    try:
        seed = wait_for(
            lambda: (d := client.answer("Distributions")["seed"])["sent"] >= 20 and d,
            30,
            what="the seed distribution sending",
        )
        assert (seed["type"], seed["connected"], seed["errors"], seed["queued"] <= seed["offered"]) == (
            "custom",
            True,
            0,
            True,
        )
    finally:
        client.close()
    assert f"{SEED} replaces the built-in distribution type custom" in collector.log()
    assert dist_loader.find_file("custom", [SEED.parent]) == SEED


@pytest.mark.e2e
def test_what_the_seed_queues_is_what_it_is_sent(procs: ProcessGroup, tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    start(procs, tmp_path, f'[distributions.seed]\ntype = "seedrecord"\nrecord = "{record}"\n')

    def sent() -> dict[str, list[str]]:
        by_code: dict[str, list[str]] = {}
        for line in record.read_text().splitlines() if record.exists() else []:
            code, value = json.loads(line)  # the seed queues [str(code), str(value)]
            by_code.setdefault(code, []).append(value)
        return by_code

    found = wait_for(
        lambda: {"n1/cpu_percent", "n1/up", "collector/nodes_live"} <= (s := sent()).keys() and s,
        30,
        what="the node's, the join's and the collector's points",
    )
    assert found["n1/up"][0] == "1" and found["collector/nodes_live"][-1] in ("0", "1")
    assert all(0.0 <= float(v) <= 100.0 for v in found["n1/cpu_percent"])
    assert {
        "n1/mem_percent",
        "n1/load1",
        "n1/net_recv_rate",
        "n1/net_send_rate",
        "n1/disk_read_rate",
        "n1/disk_write_rate",
    } <= found.keys()
