"""Dependencies point inward: adapters -> core -> events, and nothing imports in a circle.

Why a test: the layering is the architecture's one promise (events are the vocabulary, core
the pure domain, adapters the world), and an import added inside a function breaks it as
surely as one at the top. So every module of core/, events/ and adapters/ is read with `ast`
and every import counts, at any depth: in functions, under TYPE_CHECKING, in try blocks.
Names loaded by string (importlib, `python -m`) are no imports; the names some lists hold
for preloading are checked to exist instead (a stale one would be skipped silently).
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ("core", "events", "adapters")  # the packages the wheel holds
NOT_SHIPPED = ("tests", "tools", "bench")  # never imported by what ships


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    """Every module of the shipped packages, by dotted name."""
    found = {}
    for top in SHIPPED:
        for path in sorted((REPO / top).rglob("*.py")):
            found[module_name(path)] = path
    return found


def imported(path: Path, name: str, known: Iterable[str]) -> Iterator[str]:
    """The dotted names `path` imports, wherever the statement stands. `from a import b`
    names the module a.b when there is one, else a (b is then a name inside it)."""
    known = set(known)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield full if full in known else base


def graph() -> dict[str, set[str]]:
    """module -> the lamina modules it imports (itself excluded)."""
    mods = modules()
    edges: dict[str, set[str]] = {}
    for name, path in mods.items():
        targets = set()
        for target in imported(path, name, mods):
            top = target.split(".")[0]
            if top in SHIPPED + NOT_SHIPPED and target != name:
                targets.add(target)
        edges[name] = targets
    return edges


def unit(module: str) -> str:
    """The node a module belongs to in the package graph: core, events, and under adapters
    each subpackage, or top-level module, on its own."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "adapters" else parts[0]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _wrong(layer: str, allowed: tuple[str, ...]) -> list[str]:
    """`module imports target` for each import of `layer` that leaves `allowed`."""
    return sorted(f"{m} imports {t}" for m, ts in graph().items() if m.split(".")[0] == layer
                  for t in ts if t.split(".")[0] not in allowed)


def test_events_import_nothing_of_lamina() -> None:
    assert _wrong("events", ("events",)) == []


def test_core_imports_only_core_and_events() -> None:
    assert _wrong("core", ("core", "events")) == []


def test_what_ships_never_imports_tools_tests_or_benchmarks() -> None:
    assert _wrong("adapters", SHIPPED) == []


def test_no_module_imports_in_a_circle() -> None:
    assert cycles(graph()) == []


def test_no_package_imports_in_a_circle() -> None:
    packages: dict[str, set[str]] = {}
    for module, targets in graph().items():
        packages.setdefault(unit(module), set()).update(
            unit(t) for t in targets if unit(t) != unit(module))
    assert cycles(packages) == []


def test_the_modules_named_for_preloading_exist() -> None:
    """The fork server's and the Docker API service's preload lists name modules by string
    and skip or stumble on a missing one: a move must carry them along."""
    from adapters.cli.app import WARM_MODULES
    from adapters.dockerapi.server import PRELOAD

    missing = [name for name in (*WARM_MODULES, *PRELOAD)
               if importlib.util.find_spec(name) is None]
    assert missing == []


def test_the_walk_sees_imports_at_any_depth(tmp_path: Path) -> None:
    """The reader itself: a function-level, a TYPE_CHECKING and a relative import count."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    src = pkg / "mod.py"
    src.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import core.model\n"
                   "def f():\n    from adapters.storage import store\n"
                   "    from . import sibling\n")
    seen = set(imported(src, "pkg.mod", {"adapters.storage.store", "pkg.sibling"}))
    assert {"core.model", "adapters.storage.store", "pkg.sibling"} <= seen
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
