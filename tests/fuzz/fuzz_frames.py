"""Atheris harness over the collector's frame handling: ``make fuzz`` (not part of ``make test``).

One real collector (``Collector(config).start()``, its real ROUTER sockets
bound on 127.0.0.1, the built-in modules loaded) runs in this process; its
loops are stopped so that the harness drives the same code they run, one
frame at a time, from one greenlet:

- first input byte even: the rest is an agent's frame, handled by
  ``AgentLink._on_frame`` (unpack, HELLO / REPORT / HEARTBEAT / BYE / answers,
  ``ModuleHost.deliver`` into the modules), then the pass's ``_flush`` (journal
  commit, ACKs and replies sent on the real socket) and ``_housekeeping``;
  before it the harness says HELLO for node ``n1`` with a fresh instance, so
  REPORTs of ``n1`` from seq 1 reach the modules;
- odd: the rest is a client's frame, handled by ``ClientLink._on_frame``
  (requests answered in the request pool's greenlets, which the harness lets
  run to the end);
- first byte 2 or 3 modulo 4 (structured inputs): the rest is not sent as it
  is but read with atheris' FuzzedDataProvider into one to four envelopes,
  each of a real kind, a report or request type the collector knows, a known
  schema and encoding, fuzzed payload bytes and parameters, so random payloads
  get past the frame parser into every module far more often than raw bytes do.

A crash is any exception out of those calls (it would end the collector's
loop, and the collector with it), any exception a request greenlet dies of,
or a built-in module raising anything but its documented errors (the
collector's ``module-error`` counter moving). Run it::

    make fuzz                                    # FUZZ_RUNS=1000000 by default
    .venv/bin/python tests/fuzz/fuzz_frames.py -runs=1000 tests/fuzz/corpus

``-atheris_runs``/``-runs``, ``-max_len`` and the other libFuzzer flags pass through;
the seed corpus (``tests/fuzz/corpus``) is written on start when it is missing.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import atheris

with atheris.instrument_imports(include=["collector", "messages", "modules"]):
    import gevent

    from collector.config import CollectorConfig
    from collector.peers import plain_peer
    from collector.server import Collector
    from messages import Envelope, Event, File, Files, Kind, NodeInfo, SystemStats
    from messages.codec import envelope, pack, pack_one

AGENT = b"fuzz-agent"
CLIENT = b"fuzz-client"
OPERATOR_PEER = plain_peer("127.0.0.1")  # a collector without CURVE: every client may do everything
CORPUS = Path(__file__).parent / "corpus"
INSTANCES = itertools.count()
REPORT_EVERY = 100_000  # inputs between two lines of counters on stderr (what the inputs reached)
SHOWN = ("envelopes", "bad-report", "unrouted", "unknown-kind", "bad-frame", "hello-required", "client-envelopes")


class Harness:
    """The collector under fuzzing and the checks after every input."""

    def __init__(self) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="labscope-fuzz-"))
        config = CollectorConfig(
            listen_agents="tcp://127.0.0.1:*",
            listen_clients="tcp://127.0.0.1:*",
            data_dir=self.data_dir,
            alias="fuzz",
            node_timeout=3600.0,
            journal=False,  # the journal's disk writes would dominate; its input is the same frame
        )
        self.collector = Collector(config)
        self.collector.start()
        gevent.killall(self.collector.greenlets)  # the harness runs their code itself, one frame at a time
        assert self.collector.agents is not None and self.collector.clients is not None
        self.agents, self.clients = self.collector.agents, self.collector.clients
        self.errors: list[Any] = []
        self.inputs = 0
        gevent.get_hub().handle_error = self._greenlet_error  # type: ignore[method-assign]

    def _greenlet_error(self, context: Any, kind: Any, value: Any, tb: Any) -> None:
        self.errors.append(value)

    def hello(self) -> None:
        """HELLO as n1 with a fresh instance: the node's numbering restarts, seq 1 is new again."""
        info = NodeInfo(node="n1", hostname="fuzz", instance=str(next(INSTANCES)), request_types=["Echo"])
        self.agents._on_frame(AGENT, pack_one(envelope(Kind.HELLO, "NodeInfo", info, node="n1", seq=1)), time.time())

    def one(self, data: bytes) -> None:
        """Feed one input; raises on a crash as defined in the module docstring."""
        self.inputs += 1
        if self.inputs % REPORT_EVERY == 0:
            self.show()
        before = self.collector.counters["module-error"]
        frame = structured(data[1:]) if data and data[0] % 4 >= 2 else data[1:]
        if not data or data[0] % 2 == 0:
            self.hello()
            self.agents._on_frame(AGENT, frame, time.time())
            self.agents._flush()
            self.agents._housekeeping()
        else:
            self.clients._on_frame(CLIENT, frame, OPERATOR_PEER)
            self.clients.pool.join(timeout=5)
        if self.errors:
            raise RuntimeError(f"a request greenlet died: {self.errors[0]!r}") from self.errors[0]
        if self.collector.counters["module-error"] != before:
            raise AssertionError(f"a built-in module raised: counters {dict(self.collector.counters)}")

    def show(self) -> None:
        """One line of the collector's counters: how far into the collector the inputs got."""
        counters = self.collector.counters
        shown = " ".join(f"{name}={counters[name]}" for name in SHOWN if counters[name])
        # AgentLink.reports counts the reports applied (new seq, delivered); the stopped loop never resets it here.
        sys.stderr.write(
            f"labscope-fuzz: {self.inputs} inputs: applied-reports={self.agents.reports} {shown} "
            f"nodes={len(self.collector.registry.records)}\n"
        )

    def close(self) -> None:
        self.collector.stop()
        self.collector.shutdown()
        shutil.rmtree(self.data_dir, ignore_errors=True)


KINDS = [int(k) for k in Kind.values()]
TYPES = [
    *("SystemStats", "Samples", "Event", "FileOutput", "NodeInfo", "NodeList", "SystemStatsHistory"),
    *("Events", "File", "FileList", "FileStats", "CollectorStats", "Distributions", "NodeFile", "RunProbe"),
]
SCHEMAS = ["", "labscope.SystemStats", "labscope.Samples", "labscope.Event", "labscope.Files", "labscope.NodeInfo"]
PARAMS = ["node", "since", "filename", "credit", "types", "backlog", "size", "path", "name"]
NODES = ["n1", "n2", "", ".."]


def structured(data: bytes) -> bytes:
    """One frame of 1-4 envelopes whose fields the fuzzer's bytes choose among the values that matter."""
    fdp = atheris.FuzzedDataProvider(data)
    envelopes = [_envelope(fdp) for _ in range(fdp.ConsumeIntInRange(1, 4))]
    return pack(envelopes)


def _envelope(fdp: Any) -> Any:
    params = {}
    for _ in range(fdp.ConsumeIntInRange(0, 3)):
        params[fdp.PickValueInList(PARAMS)] = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 24))
    return Envelope(
        kind=fdp.PickValueInList(KINDS),
        node=fdp.PickValueInList(NODES),
        seq=fdp.ConsumeIntInRange(0, 2**64 - 1) if fdp.ConsumeBool() else fdp.ConsumeIntInRange(1, 8),
        time=fdp.ConsumeRegularFloat() if fdp.ConsumeBool() else 1.7e9,
        type=fdp.PickValueInList(TYPES),
        encoding=fdp.ConsumeIntInRange(0, 4),
        schema=fdp.PickValueInList(SCHEMAS),
        request_id=fdp.ConsumeIntInRange(0, 16),
        params=params,
        last=fdp.ConsumeBool(),
        payload=fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 512)),
    )


def seeds() -> dict[str, bytes]:
    """Valid frames to start from: HELLO, REPORTs (SystemStats, Event, FileOutput), REQUESTs, SUBSCRIBE."""
    stats = SystemStats(time=1.7e9, cpu_percent=12.5, load1=0.25)
    event = Event(time=1.7e9, node="n1", kind="gap", message="m")
    files = Files(files=[File(name="logs/a.txt", modtime=1.7e9, data=b"hello", size=5, last=True)])
    info = NodeInfo(node="n1", hostname="h", instance="seed")
    agent = {
        "hello": pack_one(envelope(Kind.HELLO, "NodeInfo", info, node="n1", seq=1)),
        "report-systemstats": pack_one(envelope(Kind.REPORT, "SystemStats", stats, node="n1", seq=1)),
        "report-batch": pack(
            [
                envelope(Kind.REPORT, "Event", event, node="n1", seq=1),
                envelope(Kind.REPORT, "Event", {"kind": "x", "attrs": {"a": 1}}, node="n1", seq=2),
                envelope(Kind.REPORT, "FileOutput", files, node="n1", seq=3),
                envelope(Kind.HEARTBEAT, node="n1", params={"backlog": "3"}),
            ]
        ),
        "answer": pack_one(envelope(Kind.CHUNK, "NodeFile", b"abc", node="n1", request_id=7, last=True)),
    }
    client = {
        "hello": pack_one(envelope(Kind.HELLO)),
        "request-nodelist": pack_one(envelope(Kind.REQUEST, "NodeList", request_id=1)),
        "request-history": pack_one(
            envelope(Kind.REQUEST, "SystemStatsHistory", request_id=2, params={"node": "n1", "since": "0"})
        ),
        "request-file": pack_one(
            envelope(Kind.REQUEST, "File", request_id=3, params={"node": "n1", "filename": "logs/a.txt"})
        ),
        "request-node": pack_one(envelope(Kind.REQUEST, "NodeFile", request_id=4, params={"node": "n1", "path": "x"})),
        "subscribe": pack_one(envelope(Kind.SUBSCRIBE, "Events", params={"types": "Events,NodeList"})),
        "credit": pack_one(envelope(Kind.CREDIT, request_id=3, seq=4)),
    }
    frames = {f"agent-{name}": b"\x00" + frame for name, frame in agent.items()}
    frames.update({f"client-{name}": b"\x01" + frame for name, frame in client.items()})
    return frames


def write_corpus(folder: Path = CORPUS) -> None:
    """Write the seed frames into ``folder`` (once: libFuzzer adds its finds beside them)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in seeds().items():
        path = folder / f"seed-{name}"
        if not path.exists():
            path.write_bytes(frame)


def main() -> None:
    """Set the collector up and hand the inputs to libFuzzer."""
    logging.disable(logging.CRITICAL)  # a million throttled warnings are noise here; crashes raise
    write_corpus()
    harness = Harness()
    for frame in seeds().values():  # the seeds must pass, or the harness itself is wrong
        harness.one(frame)
    atheris.Setup(sys.argv, harness.one)
    try:
        atheris.Fuzz()
    finally:
        harness.close()


if __name__ == "__main__":
    main()
