"""docs/protocol.md is the contract: its generated tables match the code, and the code sends nothing it omits."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from collector import loader
from collector.counters import COUNTERS
from collector.host import RESERVED_REQUESTS
from collector.server import COLLECTOR_REQUESTS
from labscope import protodoc
from messages.codec import unpack
from messages.errors import Code, ProtocolError
from messages.specs import Param, Payload, RequestSpec, UpdateSpec, spec_mismatch
from node_agent.handlers import BUILTIN_HANDLERS, builtin_handlers, handler_types, load_handler_file
from node_agent.serve import ServeDirs
from tests.conftest import FIXTURES, REPO

DOC = REPO / "docs" / "protocol.md"
SOURCES = {name: sorted((REPO / name).glob("*.py")) for name in ("collector", "modules", "node_agent")}


def builtin_modules() -> list[loader.Candidate]:
    return [c for c in loader.discover([]) if not c.source.startswith("entry point")]


def read(paths: list[Path]) -> str:
    return "\n".join(path.read_text() for path in paths)


# ---------------------------------------------------------------- generated tables


def test_the_generated_tables_in_the_doc_match_the_code() -> None:
    stale = protodoc.stale_blocks(DOC.read_text())
    assert stale == [], f"docs/protocol.md: generated block(s) {stale} differ from the code: run make docs"


def test_the_check_fails_on_a_stale_doc_and_the_rewrite_fixes_it(tmp_path: Path) -> None:
    doc = tmp_path / "protocol.md"
    doc.write_text(DOC.read_text().replace("| `NodeList` | module `nodes` |", "| `NodeList` | module `gone` |"))
    assert protodoc.main(["--check", str(doc)]) == 1
    assert protodoc.main([str(doc)]) == 0
    assert doc.read_text() == DOC.read_text()
    assert protodoc.main(["--check", str(doc)]) == 0


def test_a_doc_without_markers_is_refused(tmp_path: Path) -> None:
    doc = tmp_path / "protocol.md"
    doc.write_text("# nothing generated here\n")
    assert protodoc.main([str(doc)]) == 2
    assert doc.read_text() == "# nothing generated here\n"


def test_every_builtin_type_has_a_row() -> None:
    text = DOC.read_text()
    answered = {t for c in builtin_modules() for t in c.requesttypes} | set(RESERVED_REQUESTS)
    answered |= {t for handler in BUILTIN_HANDLERS for t in handler_types(handler)}
    pushed = {c.updatetype for c in builtin_modules() if c.updatetype}
    for name in answered | pushed:
        assert f"| `{name}` |" in text, f"{name} has no row in docs/protocol.md"
    assert {
        "Events",
        "File",
        "FileList",
        "FileStats",
        "Samples",
        "ProcessList",
        "RunProbe",
        "NodeFile",
        "CollectorStats",
        "SystemStatsHistory",
        "SystemStats",
        "NodeList",
    } <= answered


# ---------------------------------------------------------------- every type described


@pytest.mark.parametrize("candidate", builtin_modules(), ids=lambda c: c.name)
def test_a_builtin_module_describes_every_type_it_answers(candidate: loader.Candidate) -> None:
    cls = candidate.cls
    assert cls is not None, candidate.error
    assert set(cls.request_specs) == set(candidate.requesttypes), f"module {candidate.name}: describe every type"
    assert (cls.update_spec is None) == (candidate.updatetype is None), f"module {candidate.name}: update_spec"


@pytest.mark.parametrize("handler", BUILTIN_HANDLERS, ids=lambda h: h.name)
def test_a_builtin_agent_handler_describes_every_type_it_answers(handler: type) -> None:
    assert set(handler.request_specs) == set(handler_types(handler))


def test_the_builtin_handlers_list_is_what_the_agent_runs() -> None:
    assert [type(h) for h in builtin_handlers(ServeDirs([]), [])] == list(BUILTIN_HANDLERS)


def test_the_collector_describes_its_own_requests() -> None:
    assert set(COLLECTOR_REQUESTS) == set(RESERVED_REQUESTS)


def test_spec_mismatch_names_what_is_wrong() -> None:
    spec = RequestSpec("a thing", Payload.msgpack("map"), params=(Param("node", "the node", required=True),))
    update = UpdateSpec("things", Payload.msgpack("list"))
    assert spec_mismatch(("A",), "U", {}, None) is None  # classic: describes nothing
    assert spec_mismatch(("A",), "U", {"A": spec}, update) is None
    assert "answers request type(s) B" in str(spec_mismatch(("A", "B"), None, {"A": spec}, None))
    assert "describes C" in str(spec_mismatch(("A",), None, {"A": spec, "C": spec}, None))
    assert "update_spec" in str(spec_mismatch(("A",), "U", {"A": spec}, None))
    assert "RequestSpec" in str(spec_mismatch(("A",), None, {"A": "text"}, None))
    with pytest.raises(ValueError, match="encoding"):
        Payload("JSON")
    with pytest.raises(ValueError, match="sent"):
        UpdateSpec("x", Payload.msgpack("list"), sent="sometimes")


def test_the_loader_refuses_a_module_that_describes_only_part_of_what_it_answers(tmp_path: Path) -> None:
    (tmp_path / "half.py").write_text(
        "from collector.addons import Aggregator, Payload, RequestSpec\n\n"
        "class Half(Aggregator):\n"
        "    requesttypes = ('A', 'B')\n"
        "    request_specs = {'A': RequestSpec('a', Payload.msgpack('map'))}\n"
        "    def processREQUEST(self, msg):\n        return {}\n"
    )
    (found,) = [c for c in loader.discover([tmp_path]) if c.name == "half"]
    assert found.error is not None and "B" in found.error and "request_specs" in found.error


def test_classic_modules_still_load_and_are_simply_not_described() -> None:
    candidates = [c for c in loader.discover([FIXTURES / "modules"]) if c.usable]
    classic = {c.name: c for c in candidates}["classic_fileprocessor"]
    assert classic.cls is not None and not classic.cls.request_specs and classic.cls.update_spec is None
    described = {a.who for a in protodoc.module_answerers(candidates)}
    assert "module `nodes`" in described and "module `classic_fileprocessor`" not in described


def test_the_agent_refuses_a_handler_that_describes_only_part_of_what_it_answers(tmp_path: Path) -> None:
    path = tmp_path / "half.py"
    path.write_text(
        "from messages.specs import Payload, RequestSpec\n"
        "from node_agent.addons import Handler\n\n"
        "class Half(Handler):\n"
        "    requesttypes = ('A', 'B')\n"
        "    request_specs = {'A': RequestSpec('a', Payload.msgpack('map'))}\n"
        "    def handle(self, request, responder):\n        return {}\n"
    )
    from messages.errors import ModuleError

    with pytest.raises(ModuleError, match="B"):
        load_handler_file(path)


# ---------------------------------------------------------------- counters and error codes

UNPACK_CODES = ("oversized", "bad-frame", "empty")
COUNTED = re.compile(r"""(?:counters\[\s*|_bad\(\s*)(f?)"([^"]+)\"""")
REFUSED = re.compile(r"""_refuse\(\s*ident,\s*env,\s*Code\.([A-Z_]+)""")  # counts the code it answers
DYNAMIC = {
    "{exc.code}": UNPACK_CODES,
    "{candidate.name}": ("NAME",),
    "{running.name}": ("NAME",),
    "{runner.name}": ("NAME",),
    "{report.type}": ("TYPE",),
    "{reason}": ("REASON",),
}


def counted_names() -> set[str]:
    """Every counter name the collector's code counts, f-strings expanded to what they can be."""
    source = read(SOURCES["collector"])
    names: set[str] = set()
    for is_f, name in COUNTED.findall(source):
        placeholder = re.search(r"\{[^}]+\}", name) if is_f else None
        if placeholder is None:
            names.add(name)
        else:
            names.update(name.replace(placeholder.group(0), value) for value in DYNAMIC[placeholder.group(0)])
    names.update(UNPACK_CODES * ("_bad(exc.code" in source))
    names.update(getattr(Code, constant) for constant in REFUSED.findall(source))
    return names


def test_unpack_raises_exactly_the_codes_the_counter_scan_expands() -> None:
    codes = set()
    for frame in (b"\x00" * 100, b"", b"\xff\xfe garbage"):
        with pytest.raises(ProtocolError) as caught:
            unpack(frame, max_bytes=50)
        codes.add(caught.value.code)
    with pytest.raises(ProtocolError) as caught:
        unpack(b"\xff\xfe garbage")
    codes.add(caught.value.code)
    assert codes == set(UNPACK_CODES)


def test_every_counter_the_collector_counts_is_in_the_doc_and_nothing_else() -> None:
    counted = counted_names()
    assert {"frames", "envelopes", "client-frames", "client-envelopes", "client-bad-frame"} <= counted
    assert counted - set(COUNTERS) == set(), "counted but not in collector/counters.py COUNTERS (the doc's table)"
    assert set(COUNTERS) - counted == set(), "in COUNTERS but counted nowhere"


def test_counter_names_follow_one_scheme() -> None:
    for name, (where, _) in COUNTERS.items():
        assert name.startswith("client-") == (where == "clients endpoint"), name


ERROR_SENT = re.compile(
    r"""(?:error_code=|RequestError\(|respond_error\(|_error\(|_refusal\(\s*env,|"""
    r"""_refuse\(\s*client,\s*env,|_refuse\(\s*ident,\s*env,|_fail\(\s*rid,|_subscribe_error\(\s*env,)"""
    r"""\s*(?:"([a-z][a-z-]*)"|Code\.([A-Z_]+))"""
)


def sent_codes(source: str) -> set[str]:
    """Every error code the source sends, as a literal or as a ``Code`` constant."""
    return {literal or getattr(Code, constant) for literal, constant in ERROR_SENT.findall(source)}


def documented_error_codes() -> set[str]:
    section = DOC.read_text().split("### Error codes", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z-]+)` \|", section, re.MULTILINE))


def test_every_error_code_the_code_sends_is_in_the_doc_error_table() -> None:
    sent = sent_codes(read([p for paths in SOURCES.values() for p in paths]))
    assert {"bad-frame", "unknown-type", "denied", "busy", "node-lost", "hello-required"} <= sent
    documented = documented_error_codes()
    assert sent - documented == set(), "error codes sent but missing from docs/protocol.md's error table"
    assert documented - sent == set(), "error codes in docs/protocol.md that no code sends"
    assert Code.all() == documented, "messages.errors.Code and docs/protocol.md's error table differ"
