"""Commands down the tree with real processes: node requests at a top collector reach a site's agent over NATS.

One nats-server of our own (tests/nats_cluster.py, one member) with NKey users and permissions (only the
top's user may publish on ``PREFIX.*.cmd``) and ``max_payload: 2MB``; site ``a`` (CURVE: its agent's key,
the top's key and an admin key as operators) with a real agent ``n1`` serving a folder; a top collector
(CURVE: an operator and a viewer) ingesting the site. docs/sites.md, "Commands down the tree".
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gui.client import Client
from messages.errors import LabscopeError, RequestFailed
from messages.keys import client_keys, generate
from tests.conftest import CollectorProcess, ProcessGroup, labscope_cmd, wait_for
from tests.nats_cluster import NatsCluster, needed_module
from tests.test_files_e2e import sample_rss

needed_module("nats")
nkeys = needed_module("nkeys")

pytestmark = pytest.mark.e2e

MIB = 1 << 20
RSS_LIMIT = 150 * MIB


def nkey_user(folder: Path, name: str) -> tuple[Path, str]:
    """A new NATS user NKey: its seed file (mode 0600) and its public key."""
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    path = folder / f"{name}.nk"
    path.write_bytes(seed)
    path.chmod(0o600)
    return path, nkeys.from_seed(bytearray(seed)).public_key.decode()


@dataclass
class Tree:
    """The NATS server, the site, its agent, the top, and the keys of everyone."""

    nats: NatsCluster
    prefix: str
    keys: Path
    seeds: dict[str, Path]
    site: CollectorProcess
    top: CollectorProcess
    agent: subprocess.Popen
    serve: Path

    def client(self, collector: CollectorProcess, key: str) -> Client:
        """A client of ``collector`` with the secret of key ``key``."""
        server = "site" if collector is self.site else "top"
        return Client(collector.clients, keys=client_keys(self.keys / f"{server}.key", self.keys / f"{key}.key_secret"))

    def ask(self, collector: CollectorProcess, key: str, type: str, timeout: float = 10, **params: str) -> Any:
        with self.client(collector, key) as client:
            return client.request(type, params, timeout=timeout).payload


def _folder(root: Path, name: str, *keys: str) -> Path:
    """A folder holding copies of the public ``keys``."""
    folder = root / name
    folder.mkdir()
    for key in keys:
        (folder / f"{key}.key").write_bytes((root / "keys" / f"{key}.key").read_bytes())
    return folder


def _server_config(prefix: str, top: str, site: str) -> str:
    """The nats-server authorization block: the top alone may publish commands; 2 MB messages for 1 MiB chunks."""
    return (
        "max_payload: 2MB\n"
        "authorization { users = [\n"
        f'  {{ nkey: "{top}" }}\n'
        f'  {{ nkey: "{site}", permissions: {{ publish: {{ deny: ["{prefix}.*.cmd"] }} }} }}\n'
        "] }\n"
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tree]:
    root = tmp_path_factory.mktemp("tree")
    keys = root / "keys"
    for name in ("site", "top", "n1", "admin", "op", "viewer"):
        generate(keys, name)
    seeds = {}
    (seeds["top"], top_user), (seeds["site"], site_user) = nkey_user(root, "top"), nkey_user(root, "site")
    seeds["stranger"], _ = nkey_user(root, "stranger")
    prefix, stream = f"t{uuid.uuid4().hex[:8]}", f"S{uuid.uuid4().hex[:8].upper()}"
    cluster = NatsCluster(root, size=1, extra=_server_config(prefix, top_user, site_user))
    cluster.auth = {"nkeys_seed": str(seeds["top"])}
    cluster.start()
    procs = ProcessGroup(root)
    try:
        yield _grow(root, procs, cluster, keys, seeds, prefix, stream)
    finally:
        procs.stop_all()
        cluster.stop()


def _grow(
    root: Path, procs: ProcessGroup, cluster: NatsCluster, keys: Path, seeds: dict[str, Path], prefix: str, stream: str
) -> Tree:
    serve = root / "serve"
    serve.mkdir()
    site_toml = root / "site.toml"
    site_toml.write_text(
        f'[collector]\nsite = "a"\nsite_heartbeat = 0.5\nnats_nkey_seed = "{seeds["site"]}"\n'
        f'curve_secret = "{keys / "site.key_secret"}"\n'
        f'allow_agents = "{_folder(root, "site-agents", "n1")}"\n'
        f'allow_operators = "{_folder(root, "site-operators", "top", "admin")}"\n\n'
        f'[distributions.js]\ntype = "nats"\nmode = "reports"\nurl = "{cluster.url}"\n'
        f'stream = "{stream}"\nprefix = "{prefix}"\nnkeys_seed = "{seeds["site"]}"\n'
    )
    site = procs.collector("--config", str(site_toml), data_dir=root / "site-data", timeout=40)
    curve = ("--curve-server-key", str(keys / "site.key"), "--curve-secret", str(keys / "n1.key_secret"))
    agent = procs.agent(site.agents, "n1", "--serve-dir", str(serve), *curve, interval=0.5)
    top_toml = root / "top.toml"
    top_toml.write_text(
        f'[collector]\ningest_prefix = "{prefix}"\ningest_durable = "top"\nnats_nkey_seed = "{seeds["top"]}"\n'
        f'curve_secret = "{keys / "top.key_secret"}"\n'
        f'allow_operators = "{_folder(root, "top-operators", "op")}"\n'
        f'allow_viewers = "{_folder(root, "top-viewers", "viewer")}"\n'
    )
    ingest = ("--ingest-nats", cluster.url, "--ingest-stream", stream)
    top = procs.collector("--config", str(top_toml), *ingest, data_dir=root / "top-data", timeout=40)
    tree = Tree(cluster, prefix, keys, seeds, site, top, agent, serve)
    wait_for(lambda: _live_at_top(tree), timeout=60, interval=0.3, what="a:n1 live at the top")
    return tree


def _live_at_top(tree: Tree) -> bool:
    try:
        nodes = tree.ask(tree.top, "op", "NodeList", timeout=3).nodes
    except LabscopeError:
        return False
    return any(n.node == "a:n1" and n.site == "a" and n.status == "live" for n in nodes)


def _write_random(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        for _ in range(size // MIB):
            block = os.urandom(MIB)
            digest.update(block)
            handle.write(block)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(MIB):
            digest.update(block)
    return digest.hexdigest()


@pytest.mark.timeout(180)
def test_a_200_mib_fetch_through_the_top_is_exact_and_every_process_stays_under_150_mib(tree: Tree) -> None:
    source = tree.serve / "big.bin"
    expected = _write_random(source, 200 * MIB)
    output = tree.serve.parent / "out" / "big.bin"
    curve = ("--curve-server-key", str(tree.keys / "top.key"), "--curve-secret", str(tree.keys / "op.key_secret"))
    args = labscope_cmd("fetch", "--collector", tree.top.clients, *curve, "a:n1", "big.bin", "-o", str(output))
    started = time.monotonic()
    popen = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids = {"site": tree.site.popen.pid, "top": tree.top.popen.pid, "agent": tree.agent.pid, "fetch": popen.pid}
    peaks = sample_rss(popen, pids, timeout=150)
    _, stderr = popen.communicate(timeout=10)
    print(
        f"200 MiB through the top in {time.monotonic() - started:.1f} s; peak RSS MiB:",
        {name: round(peak / MIB) for name, peak in peaks.items()},
    )
    try:
        assert popen.returncode == 0, stderr
        assert _sha256(output) == expected and "verified" in stderr
        assert all(peak > 0 for peak in peaks.values()), "RSS was really sampled"
        assert all(peak < RSS_LIMIT for peak in peaks.values()), {k: v / MIB for k, v in peaks.items()}
    finally:
        source.unlink()
        output.unlink(missing_ok=True)
    rows = tree.ask(tree.site, "admin", "Audit", node="n1")
    fetched = [row for row in rows if row["type"] == "NodeFile" and row["bytes"] == 200 * MIB]
    assert fetched and fetched[-1]["outcome"] == "ok"
    top_fp, op_fp = (_fingerprint(tree.keys / f"{name}.key") for name in ("top", "op"))
    assert fetched[-1]["who"] == f"top top ({top_fp}) for op ({op_fp})", "the site audits the original requester"
    assert fetched[-1]["fingerprint"] == top_fp


def _fingerprint(path: Path) -> str:
    from messages.keys import load

    return load(path).fingerprint


def test_process_list_through_the_top(tree: Tree) -> None:
    processes = tree.ask(tree.top, "op", "ProcessList", node="a:n1")
    assert tree.agent.pid in {entry["pid"] for entry in processes}, "the site's agent lists itself"


def test_a_viewer_at_the_top_is_forbidden_and_nothing_reaches_the_site(tree: Tree) -> None:
    before = len(tree.ask(tree.site, "admin", "Audit", node="n1"))
    with pytest.raises(RequestFailed) as failed:
        tree.ask(tree.top, "viewer", "ProcessList", node="a:n1")
    assert failed.value.code == "forbidden"
    assert len(tree.ask(tree.site, "admin", "Audit", node="n1")) == before


def test_a_node_of_an_unknown_site_is_not_found(tree: Tree) -> None:
    with pytest.raises(RequestFailed) as failed:
        tree.ask(tree.top, "op", "ProcessList", node="zz:n1")
    assert failed.value.code == "not-found"


def test_an_unknown_nkey_is_refused_and_the_site_user_may_not_send_commands(tree: Tree) -> None:
    import nats

    async def connect(seed: Path) -> Any:
        return await nats.connect(
            tree.nats.url.split(","),
            connect_timeout=3,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            nkeys_seed=str(seed),
        )

    async def stranger() -> str:
        try:
            nc = await connect(tree.seeds["stranger"])
        except Exception as exc:  # the server refuses the handshake
            return str(exc)
        await nc.close()
        return "connected"

    async def as_site() -> list[str]:
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        nc = await nats.connect(
            tree.nats.url.split(","),
            connect_timeout=3,
            nkeys_seed=str(tree.seeds["site"]),
            error_cb=on_error,
            allow_reconnect=False,
        )
        try:
            await nc.publish(f"{tree.prefix}.a.cmd", b"\x00", reply=nc.new_inbox())
            await nc.flush()
            await asyncio.wait_for(_until(lambda: errors), 5)
        finally:
            await nc.close()
        return errors

    loop = asyncio.new_event_loop()
    try:
        refused = loop.run_until_complete(stranger())
        assert refused != "connected" and "authorization" in refused.lower()
        errors = loop.run_until_complete(as_site())
    finally:
        loop.close()
    assert any("permissions violation" in error.lower() for error in errors), errors


async def _until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0.05)


def test_a_top_key_that_is_not_an_operator_at_the_site_is_refused_and_counted(tree: Tree) -> None:
    """A command signed by the top's NATS user but declaring another CURVE key: ERROR forbidden, counted."""
    import nats

    from collector import cmd_wire
    from messages import Kind
    from messages.codec import envelope, pack_one, unpack
    from messages.keys import load

    async def ask() -> Any:
        nc = await nats.connect(tree.nats.url.split(","), connect_timeout=3, nkeys_seed=str(tree.seeds["top"]))
        try:
            request = envelope(Kind.REQUEST, type="ProcessList", request_id=7, params={"node": "n1"})
            key = load(tree.keys / "viewer.key").public.decode()
            headers = {cmd_wire.TOP_KEY: key, cmd_wire.REQUESTER: "mallory"}
            return await nc.request(cmd_wire.cmd_subject(tree.prefix, "a"), pack_one(request), 5, headers=headers)
        finally:
            await nc.close()

    loop = asyncio.new_event_loop()
    try:
        answer = loop.run_until_complete(ask())
    finally:
        loop.close()
    (env,) = unpack(answer.data)
    assert env.kind == Kind.ERROR and env.error_code == "forbidden" and "allow_operators" in env.error
    counters = tree.ask(tree.site, "admin", "CollectorStats")["counters"]
    assert counters.get("auth-refused:top-not-operator", 0) >= 1
