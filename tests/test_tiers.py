"""The test tiers stay honest: every test that starts a process is marked ``e2e``.

``make unit`` runs ``pytest -m "not e2e"`` and must start no process. This reads the source of every
test module (and the conftest.py files above it): a test that names the ``procs`` fixture,
``labscope_cmd``, ``subprocess``, ``Popen``, ``multiprocessing`` or ``sys.executable`` — itself,
through a fixture or through a helper of its module or of a conftest — must carry the ``e2e`` mark,
on itself or in its module's ``pytestmark``. What the source does not show (a product function that
starts processes) the conftest's guard catches at run time: a test not marked e2e cannot start one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# ``executable``: sys.executable, the command line of a Python child process
STARTS_PROCESSES = frozenset({"procs", "labscope_cmd", "subprocess", "Popen", "multiprocessing", "executable"})
Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def names_in(node: ast.AST) -> set[str]:
    """Every name a definition mentions: variables, attributes, parameters (fixtures), imported names."""
    found: set[str] = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            found.add(child.id)
        elif isinstance(child, ast.Attribute):
            found.add(child.attr)
        elif isinstance(child, ast.arg):
            found.add(child.arg)
    return found


def definitions(tree: ast.Module) -> dict[str, Definition]:
    """The module's top-level functions (fixtures, helpers, tests) and classes, by name."""
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return {node.name: node for node in tree.body if isinstance(node, kinds)}


def conftests(path: Path, root: Path) -> Iterator[Path]:
    """The conftest.py files pytest loads for the test module at ``path``, up to ``root``."""
    folder = path.parent
    while folder == root or root in folder.parents:
        if (folder / "conftest.py").exists():
            yield folder / "conftest.py"
        folder = folder.parent


def process_starters(path: Path, root: Path) -> set[str]:
    """Names that start processes when used from ``path``: the markers, and what mentions them, transitively."""
    defs: dict[str, Definition] = {}
    for source in [*conftests(path, root), path]:
        defs.update(definitions(ast.parse(source.read_text())))
    mentions = {name: names_in(node) for name, node in defs.items()}
    starters = set(STARTS_PROCESSES)
    grew = True
    while grew:
        grew = False
        for name, used in mentions.items():
            if name not in starters and used & starters:
                starters.add(name)
                grew = True
    return starters


def marked_e2e(node: ast.AST) -> bool:
    return "mark.e2e" in ast.unparse(node)


def module_marked_e2e(tree: ast.Module) -> bool:
    """True when the module's ``pytestmark`` holds the e2e mark."""
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in targets) and node.value is not None:
                return marked_e2e(node.value)
    return False


def collected_tests(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef, list[ast.expr]]]:
    """Every test function (top level or in a Test class), with the decorators that apply to it."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
            if not any("fixture" in ast.unparse(d) for d in node.decorator_list):  # e.g. a fixture ``testbed``
                yield node.name, node, node.decorator_list
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name.startswith("test"):
                    yield f"{node.name}.{item.name}", item, [*node.decorator_list, *item.decorator_list]


def unmarked_process_tests(path: Path, root: Path = TESTS) -> list[str]:
    """The tests of ``path`` (under the tests folder ``root``) that start processes but are not marked e2e."""
    tree = ast.parse(path.read_text())
    if module_marked_e2e(tree):
        return []
    starters = process_starters(path, root)
    return [
        f"{path.relative_to(root.parent)}::{name}"
        for name, node, decorators in collected_tests(tree)
        if names_in(node) & starters and not any(marked_e2e(d) for d in decorators)
    ]


def test_every_test_that_starts_a_process_is_marked_e2e() -> None:
    modules = sorted(p for p in TESTS.rglob("test_*.py") if "fixtures" not in p.relative_to(TESTS).parts)
    assert len(modules) > 20
    unmarked = [test for path in modules for test in unmarked_process_tests(path)]
    assert not unmarked, (
        "these tests start processes but are not marked e2e (add @pytest.mark.e2e, or "
        "pytest.mark.e2e to the module's pytestmark):\n" + "\n".join(unmarked)
    )


def test_the_check_sees_fixtures_helpers_conftests_and_marks(tmp_path: Path) -> None:
    root = tmp_path / "tests"
    (root / "sub").mkdir(parents=True)
    (root / "conftest.py").write_text("def started(procs):\n    return procs.collector()\n")
    (root / "sub" / "conftest.py").write_text("def bed(started):\n    return started\n")
    module = root / "sub" / "test_sample.py"
    module.write_text(
        "import pytest\n"
        "def run(*args):\n    return subprocess.run(args)\n"
        "def helper():\n    return run('x')\n"
        "def test_conftest_fixture(bed): pass\n"
        "def test_helper(): helper()\n"
        "def test_cmd(): labscope_cmd('agent')\n"
        "@pytest.mark.e2e\ndef test_marked(bed): pass\n"
        "def test_plain(tmp_path): assert tmp_path\n"
        "@pytest.fixture\ndef testbed(procs): return procs\n"
        "class TestGroup:\n    def test_in_class(self, procs): pass\n"
    )
    names = [test.rsplit("::", 1)[1] for test in unmarked_process_tests(module, root)]
    assert names == ["test_conftest_fixture", "test_helper", "test_cmd", "TestGroup.test_in_class"]
    module.write_text(
        "import pytest\npytestmark = [pytest.mark.timeout(9), pytest.mark.e2e]\ndef test_fixture(procs): pass\n"
    )
    assert unmarked_process_tests(module, root) == []
