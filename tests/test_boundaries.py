"""Module boundaries: what each entry point imports, no import cycles among gantrans' modules, and files and functions that fit in a head."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gantrans"


@pytest.mark.parametrize(
    "module, forbidden",
    [
        # Loading a model to translate needs neither the trainer nor the evaluator.
        ("gantrans.translate", ("gantrans.training", "gantrans.step", "gantrans.run_setup", "gantrans.evaluate")),
        # Evaluating a model needs the translator, not the trainer.
        ("gantrans.evaluate", ("gantrans.training", "gantrans.step", "gantrans.run_setup")),
        # The event records and their rendering are read without the trainer.
        ("gantrans.progress", ("gantrans.training",)),
    ],
)
def test_an_entry_point_does_not_import_what_it_does_not_need(module: str, forbidden: tuple[str, ...]) -> None:
    """A fresh interpreter (this process has imported everything already) imports `module` only."""
    check = f"import sys, {module}; print(' '.join(name for name in {forbidden!r} if name in sys.modules))"
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's code, not an installed copy
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=environment, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [], f"importing {module} imports {result.stdout.strip()}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_nodes(body: list[ast.stmt], deferred: bool) -> list[ast.Import | ast.ImportFrom]:
    """The import statements that run when the module is imported (class bodies, if/try/with blocks),
    not those under `if TYPE_CHECKING:`; with `deferred`, also those inside functions."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and is_type_checking(node):
            found += import_nodes(node.orelse, deferred)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not deferred:
            continue
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, [])
                found += import_nodes([child for child in children if isinstance(child, ast.AST)], deferred)
    return found


def import_graph(deferred: bool = False) -> dict[str, set[str]]:
    """gantrans module -> the gantrans modules it imports. `from gantrans.a import b` is an edge to
    gantrans.a.b when that is a module, else to gantrans.a. The parent packages Python imports on
    the way are not edges: a package's __init__ importing its own submodules is no cycle."""
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        edges: set[str] = set()
        for node in import_nodes(ast.parse(path.read_text(), str(path)).body, deferred):
            if isinstance(node, ast.Import):
                edges |= {alias.name for alias in node.names if alias.name in paths}
                continue
            base = node.module or ""
            if node.level:  # relative: from . import x, from ..a import b
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base
                if target in paths and target != module:
                    edges.add(target)
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once fully explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == "open":
                return path[path.index(successor) :] + [successor]
            if successor not in state and (cycle := visit(successor)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_the_imports() -> None:
    """A guard against a vacuous pass: the walk finds edges we know exist."""
    graph = import_graph()
    assert "gantrans.checkpoint" in graph["gantrans.translate"] and "gantrans.device" in graph["gantrans.translate"]
    assert "gantrans.methods.base" in graph["gantrans.methods.cyclegan"]
    assert "gantrans.metrics" not in graph["gantrans.features"]  # deferred (inside a function) ...
    assert "gantrans.metrics" in import_graph(deferred=True)["gantrans.features"]  # ... unless asked for
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycles_at_module_level() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_import_cycles_through_deferred_imports() -> None:
    """Imports inside functions hide a cycle from Python's import order, not from the design (the
    trainer once reached itself through evaluate -> translate this way)."""
    cycle = find_cycle(import_graph(deferred=True))
    assert cycle is None, "import cycle (counting imports inside functions): " + " -> ".join(cycle or [])


# Issue 13's budget: a file and a function fit in a head. A command's signature (its options, one per
# setting) is declaration, not logic, so a function is measured from its first statement after the docstring.
MAX_FILE_LINES, MAX_FUNCTION_LINES = 350, 60


def _body_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = function.body[1:] if ast.get_docstring(function) is not None and len(function.body) > 1 else function.body
    return function.end_lineno - body[0].lineno + 1


def test_no_file_or_function_over_the_budget() -> None:
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        if len(source.splitlines()) > MAX_FILE_LINES:
            too_long.append(f"{path.relative_to(PACKAGE.parent)}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _body_lines(node) > MAX_FUNCTION_LINES:
                too_long.append(f"{path.relative_to(PACKAGE.parent)}: {node.name} has {_body_lines(node)} lines")
    assert not too_long, f"over the budget ({MAX_FILE_LINES} lines a file, {MAX_FUNCTION_LINES} a function body): {too_long}"
