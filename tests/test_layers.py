"""The import graph keeps to its layers: no cycles, no import from a higher layer.

docs/architecture.md lists these layers; tests/test_docs.py checks it is current.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "digest"

# Lowest first. A package may import packages of its own layer or below, never above. A name
# ending in "." stands for a package and everything in it.
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    (
        "core: shared by every capability, imports nothing else of ours",
        frozenset({"digest", "digest.core."}),
    ),
    ("the store: all SQL, behind the Backend protocol", frozenset({"digest.store."})),
    ("configuration", frozenset({"digest.config."})),
    ("rendering", frozenset({"digest.render."})),
    (
        "feeds in, mail out, bounces back",
        frozenset({"digest.feeds.", "digest.mail.", "digest.bounces."}),
    ),
    ("readers", frozenset({"digest.readers."})),
    ("the archive", frozenset({"digest.archive."})),
    ("the issue", frozenset({"digest.issue."})),
    ("reports", frozenset({"digest.reports."})),
    ("running the job", frozenset({"digest.run."})),
    ("public and editor's web apps", frozenset({"digest.web."})),
    (
        "metrics: the state's gauges and the listener, on a port of their own",
        frozenset({"digest.metrics."}),
    ),
    (
        "the command line",
        frozenset({"digest.cli.", "digest.__main__", "digest.entry"}),
    ),
)


def module_name(path: Path) -> str:
    parts = ("digest", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The digest modules a file imports, at any depth in the file (lazy imports count)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            # `from digest import pipeline` imports the module digest.run.pipeline.
            names += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(name for name in names if name == "digest" or name.startswith("digest."))
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {
        name: {imported for imported in imports_of(path) if imported in modules} - {name}
        for name, path in modules.items()
    }


def layer_of(module: str) -> int | None:
    for number, (_, members) in enumerate(LAYERS):
        for member in members:
            if module == member or (member.endswith(".") and module.startswith(member)):
                return number
            if member.endswith(".") and module == member[:-1]:
                return number
    return None


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(name for name in graph() if layer_of(name) is None)
    assert unplaced == [], f"add these to LAYERS (then `python scripts/docs_pages.py`): {unplaced}"


def test_no_module_imports_from_a_higher_layer() -> None:
    upward = []
    for module, imported in graph().items():
        own = layer_of(module)
        for other in imported:
            theirs = layer_of(other)
            if own is not None and theirs is not None and theirs > own:
                upward.append(f"{module} ({LAYERS[own][0]}) imports {other} ({LAYERS[theirs][0]})")
    assert upward == []


def test_the_core_imports_nothing_else_of_ours() -> None:
    leaks = {
        module: sorted(other for other in imported if layer_of(other) != 0)
        for module, imported in graph().items()
        if layer_of(module) == 0
    }
    assert {module: found for module, found in leaks.items() if found} == {}


def test_there_are_no_import_cycles() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for other in sorted(edges[module]):
            if state.get(other) == 1:
                cycles.append([*path[path.index(other) :], other])
            elif other not in state:
                visit(other, [*path, other])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The rule itself works: a core file importing the running of the job is found."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from digest.run import send\n", encoding="utf-8")
    assert "digest.run.send" in imports_of(sample)
    assert layer_of("digest.run.send") == 9 and layer_of("digest.metrics.endpoint") == 11
    assert layer_of("digest.core.tokens") == 0
    assert layer_of("digest.store.ledger") == 1 and layer_of("digest.store") == 1
