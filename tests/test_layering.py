"""One import direction: every import in swapwatch (module-level, inside functions, under
TYPE_CHECKING) follows the table below, and no two packages import each other, even indirectly.

A unit is a subpackage of swapwatch (`stream`, `faces`, ...) or one of its top-level modules
(`errors`, `timing`, ...); the root package itself is the unit `swapwatch`.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

import swapwatch

# Small shared modules at the bottom: anything may import them, they import nothing of ours
# (models finds bundled files and raises our errors).
SHARED = frozenset({"version", "errors", "timing", "native_logs", "sqlite_layout", "models"})

# Which units each unit may import (besides itself). Read top to bottom: the root package, which
# re-exports `__version__` and lazily the public API; cli and the __main__ shim; the public API
# (`api`) beside server, training, evaluation and datasets, which use stream and below; kyc (the
# KYC sessions' signals and challenges, which server and cli use); stream;
# the stages stream assembles; extension loading (`plugins`: the entry-point loader and the
# signal protocol, used by the packages whose extensions it loads); the shared modules.
ALLOWED: Mapping[str, frozenset[str]] = {
    "swapwatch": frozenset({"version", "api"}),
    "__main__": frozenset({"cli"}),
    "cli": SHARED
    | {"server", "cluster", "training", "evaluation", "datasets", "kyc", "stream"}
    | {"faces", "engines", "fusion", "events", "plugins"},
    "api": SHARED | {"stream", "faces", "engines", "fusion", "events", "plugins"},
    "server": SHARED
    | {"cluster", "kyc", "stream", "faces", "engines", "fusion", "events", "plugins"},
    # Streams as Ray actors: the actor side of the server's cluster mode, stream and below.
    "cluster": SHARED | {"stream", "faces", "engines", "fusion", "events", "plugins"},
    "training": SHARED
    | {"evaluation", "datasets", "stream", "faces", "engines", "fusion", "events", "plugins"},
    "evaluation": SHARED
    | {"datasets", "stream", "faces", "engines", "fusion", "events", "plugins"},
    "datasets": SHARED | {"stream", "faces", "engines", "fusion", "events", "plugins"},
    "kyc": SHARED | {"stream", "faces", "engines", "fusion", "events", "plugins"},
    "stream": SHARED | {"faces", "engines", "fusion", "events", "plugins"},
    "events": SHARED | {"fusion", "plugins"},
    "engines": SHARED | {"plugins"},
    "faces": SHARED,
    "fusion": SHARED,
    "plugins": SHARED,
    "models": frozenset({"errors"}),
    "version": frozenset(),
    "errors": frozenset(),
    "timing": frozenset(),
    "native_logs": frozenset(),
    "sqlite_layout": frozenset(),
}


@dataclass(frozen=True, slots=True)
class Import:
    module: str  # the importing module, dotted
    line: int
    target: str  # the imported module, dotted

    def __str__(self) -> str:
        return f"{self.module} (line {self.line}) imports {self.target}"


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path) -> Iterable[Import]:
    """Every import of the package rooted at `root` in the file `path`, wherever it stands."""
    package = root.name
    module = module_name(path, root)
    here = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                origin = ".".join([*base, node.module] if node.module else base)
            else:
                origin = node.module or ""
            # `from pkg import sub` imports the module pkg.sub when there is one.
            named = (f"{origin}.{alias.name}" for alias in node.names)
            targets = list(dict.fromkeys(n if is_module(n, root) else origin for n in named))
        else:
            continue
        for target in targets:
            if target == package or target.startswith(package + "."):
                yield Import(module, node.lineno, target)


def is_module(dotted: str, root: Path) -> bool:
    path = root.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def unit_of(dotted: str) -> str:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def import_graph(root: Path) -> list[Import]:
    return [imp for path in sorted(root.rglob("*.py")) for imp in imports_of(path, root)]


def violations(graph: Iterable[Import], allowed: Mapping[str, frozenset[str]]) -> list[str]:
    """One line per import against `allowed`, naming the module, its line and what it imports."""
    found = []
    for imp in graph:
        source, target = unit_of(imp.module), unit_of(imp.target)
        if source == target:
            continue
        if source not in allowed:
            found.append(f"{imp}: unit {source!r} is not in the layering table")
        elif target not in allowed[source]:
            found.append(f"{imp}: {source} may not import {target}")
    return found


def cycles(edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """The groups of units that import each other, directly or through others (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        if a != b:
            graph.setdefault(a, set()).add(b)
            graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def unit_edges(graph: Iterable[Import]) -> set[tuple[str, str]]:
    return {(unit_of(imp.module), unit_of(imp.target)) for imp in graph}


SWAPWATCH = Path(swapwatch.__file__).parent


def test_every_import_follows_the_layering() -> None:
    graph = import_graph(SWAPWATCH)
    assert len(graph) > 100  # the walk found the package's imports
    found = violations(graph, ALLOWED)
    assert not found, "imports against the layering:\n" + "\n".join(found)


def test_no_package_imports_another_that_imports_it_back() -> None:
    found = cycles(unit_edges(import_graph(SWAPWATCH)))
    assert not found, f"packages that import each other: {found}"


def test_the_layering_table_itself_has_no_cycle() -> None:
    """So loosening one row can never allow two packages to import each other."""
    assert cycles((a, b) for a, targets in ALLOWED.items() for b in targets) == []


def test_every_unit_of_the_package_has_a_row() -> None:
    units = {unit_of(module_name(path, SWAPWATCH)) for path in SWAPWATCH.rglob("*.py")}
    assert units - set(ALLOWED) == set()


# The checker on a tiny package: `top` may import `low`; `low` imports nothing.
TINY: Mapping[str, frozenset[str]] = {
    "pkg": frozenset(),
    "top": frozenset({"low"}),
    "low": frozenset(),
}


@pytest.mark.parametrize(
    ("path", "source", "expected"),
    [
        ("top/a.py", "from pkg.low import x\nimport pkg.low.b\n", None),
        ("top/a.py", "from ..low import b\n", None),
        ("low/b.py", "from pkg.top.a import f\n", "pkg.low.b (line 1) imports pkg.top.a"),
        ("low/b.py", "import pkg.top\n", "pkg.low.b (line 1) imports pkg.top: low may not"),
        ("low/b.py", "from pkg import top\n", "imports pkg.top: low may not import top"),
        ("low/b.py", "from ..top import a\n", "imports pkg.top.a: low may not import top"),
        (
            "low/b.py",
            "def f():\n    from pkg.top.a import g\n    return g\n",
            "pkg.low.b (line 2) imports pkg.top.a",
        ),
        (
            "low/__init__.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.top import a\n",
            "pkg.low (line 3) imports pkg.top.a",
        ),
        ("low/b.py", "import pkg\n", "pkg.low.b (line 1) imports pkg: low may not import pkg"),
        ("extra.py", "import pkg.low\n", "unit 'extra' is not in the layering table"),
    ],
)
def test_the_checker_names_each_import_against_the_table(
    tmp_path: Path, path: str, source: str, expected: str | None
) -> None:
    root = tmp_path / "pkg"
    for package in ("", "top", "low"):
        (root / package).mkdir(parents=True, exist_ok=True)
        (root / package / "__init__.py").touch()
    (root / "top" / "a.py").write_text("def f(): ...\n")
    (root / "low" / "b.py").write_text("x = 1\n")
    (root / path).write_text(textwrap.dedent(source))

    found = violations(import_graph(root), TINY)

    if expected is None:
        assert found == []
    else:
        assert len(found) == 1 and expected in found[0], found


def test_the_checker_finds_cycles_through_several_packages() -> None:
    edges = {("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "e")}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles(edges - {("c", "a")}) == []
