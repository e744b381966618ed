"""No import cycles between optbench's modules.

Every ``*.py`` file under ``src/optbench`` is read with :mod:`ast` (nothing is imported) and each
``import`` statement found anywhere in it -- at module level, inside functions and methods, in
``try``/``except ImportError`` fallbacks -- becomes an edge of a module graph:

* ``import optbench.a.b`` is an edge to ``optbench.a.b`` (to its longest prefix that is a
  module of the tree, should the full name not be one);
* ``from optbench.a import b`` is an edge to ``optbench.a.b`` when that is a module (a
  submodule imported by name), otherwise to ``optbench.a`` (a name taken from its
  ``__init__``); relative imports (``from . import b``, ``from ..c import d``) are resolved
  against the importing module's package first;
* imports of anything outside ``optbench`` are ignored.

Not counted:

* imports in the body of ``if TYPE_CHECKING:`` (or ``if typing.TYPE_CHECKING:``): they never
  execute, so they cannot create a runtime cycle, and moving a type-only import there is the
  intended way to break one (the ``else`` branch of such an ``if`` does execute and counts);
* the edges Python's import system implies from a module to its own parent packages
  (importing ``optbench.a.b`` first initializes ``optbench.a``): every submodule would otherwise
  form a cycle with a package ``__init__`` that imports it. An *explicit* import of a parent
  package (``from optbench.a import name`` inside ``optbench.a.b``) is counted: it reads the
  parent while that parent may be half initialized.

The graph's strongly connected components of more than one module are the cycles. The failure
message lists each component with, for each of its edges, the shortest cycle through that edge,
every step shown with the file and line of the import statement, so that each listed chain can
be cut where it is reported. The intended layering is described in docs/architecture.md.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "optbench"


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at ``path:line`` (``where``: ``module`` or ``function``)."""

    source: str
    target: str
    path: str
    line: int
    where: str

    def describe(self) -> str:
        """``source -> target  (path:line, where-level)``."""
        return f"{self.source} -> {self.target}  ({self.path}:{self.line}, {self.where}-level import)"


def module_names(root: Path, package: str) -> dict[str, Path]:
    """``{dotted module name: file}`` of every ``.py`` file of ``root/package`` (a package's
    ``__init__.py`` is named after the package)."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _imports(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every executed import statement of ``tree`` with ``"module"`` or ``"function"`` (inside a
    function or method body); bodies of ``if TYPE_CHECKING:`` are skipped."""
    stack: list[tuple[ast.AST, str]] = [(tree, "module")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, where
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            children: list[ast.AST] = list(node.orelse)
        else:
            children = list(ast.iter_child_nodes(node))
        inner = "function" if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) else where
        stack.extend((child, inner) for child in reversed(children))


def _base_package(module: str, is_package: bool, level: int) -> str:
    """The package a relative import of ``level`` dots in ``module`` starts from."""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    if level - 1 > len(parts) - 1:
        raise ValueError(f"relative import beyond the top-level package in {module}")
    return ".".join(parts[:len(parts) - (level - 1)])


def _known_prefix(name: str, known: Mapping[str, Path]) -> str | None:
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return None


def _is_ancestor(package: str, module: str) -> bool:
    return module.startswith(package + ".")


def import_edges(root: Path, package: str, shown_from: Path | None = None) -> list[Edge]:
    """Every import edge between modules of ``root/package`` (rules in the module doc); files
    are shown relative to ``shown_from`` (default: the parent of ``root``)."""
    known = module_names(root, package)
    edges: list[Edge] = []
    for module, path in known.items():
        is_package = path.name == "__init__.py"
        shown = str(path.relative_to(shown_from or root.parent))
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, where in _imports(tree):
            targets: list[str | None] = []
            if isinstance(node, ast.Import):
                targets = [_known_prefix(alias.name, known) for alias in node.names]
            else:
                if node.level:
                    base = _base_package(module, is_package, node.level)
                    source = f"{base}.{node.module}" if node.module else base
                else:
                    source = node.module or ""
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    targets.append(submodule if submodule in known else _known_prefix(source, known))
            for target in targets:
                if target is None or target == module:
                    continue
                edges.append(Edge(module, target, shown, node.lineno, where))
    return edges


def strongly_connected(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of ``graph`` with more than one node, each sorted,
    the list sorted by first node."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def _shortest_path(graph: Mapping[str, set[str]], start: str, goal: str, within: set[str]) -> list[str]:
    """Nodes of a shortest ``start`` .. ``goal`` path inside ``within`` (breadth first)."""
    previous: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            path = [node]
            while previous[path[-1]] is not None:
                path.append(previous[path[-1]])  # type: ignore[arg-type]
            return path[::-1]
        for child in sorted(graph.get(node, ())):
            if child in within and child not in previous:
                previous[child] = node
                queue.append(child)
    raise AssertionError(f"no path {start} -> {goal} inside its component")


def cycle_report(edges: list[Edge]) -> list[str]:
    """One block of text per import cycle (strongly connected component), empty when none."""
    graph: dict[str, set[str]] = {}
    first: dict[tuple[str, str], Edge] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        first.setdefault((edge.source, edge.target), edge)
    blocks = []
    for component in strongly_connected(graph):
        members = set(component)
        chains: dict[tuple[str, ...], None] = {}
        for source in component:
            for target in sorted(graph[source] & members):
                cycle = [source, *_shortest_path(graph, target, source, members)]  # ends at source
                turn = cycle.index(min(cycle[:-1]))  # one rotation per cycle
                chains.setdefault(tuple(cycle[turn:-1] + cycle[:turn + 1]), None)
        lines = [f"cycle among {len(component)} modules: {', '.join(component)}"]
        for chain in chains:
            lines.append("  " + " -> ".join(chain))
            lines.extend("      " + first[a, b].describe() for a, b in zip(chain, chain[1:], strict=False))
        blocks.append("\n".join(lines))
    return blocks


# ----------------------------------------------------------------------------- the check


def test_optbench_has_no_import_cycles() -> None:
    edges = import_edges(SRC, PACKAGE)
    assert len(module_names(SRC, PACKAGE)) > 50 and len(edges) > 100  # the tree was read
    blocks = cycle_report(edges)
    assert not blocks, f"{len(blocks)} import cycle(s) in src/{PACKAGE}:\n\n" + "\n\n".join(blocks)


#: Packages a package must never import (function-level imports included): runs execute plans for
#: search and study, search tunes through runs and knows nothing of studies (docs/architecture.md).
FORBIDDEN = {
    "optbench.runs": ("optbench.search", "optbench.study", "optbench.analysis", "optbench.report", "optbench.cli"),
    "optbench.search": ("optbench.study", "optbench.analysis", "optbench.report", "optbench.cli"),
}


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_runs_and_search_never_import_the_layers_above_them() -> None:
    wrong = [edge.describe() for edge in import_edges(SRC, PACKAGE)
             for lower, above in FORBIDDEN.items()
             if _within(edge.source, lower) and any(_within(edge.target, a) for a in above)]
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


# ----------------------------------------------------------------------------- the checker itself


def _tree(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _pairs(edges: list[Edge]) -> set[tuple[str, str]]:
    return {(e.source, e.target) for e in edges}


def test_resolution_of_absolute_relative_and_submodule_imports(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "pkg/__init__.py": "from pkg.a import thing\n",
        "pkg/a.py": "import os\nimport pkg.sub.deep\nfrom pkg.sub import deep, name\nthing = 1\n",
        "pkg/sub/__init__.py": "from . import deep\nfrom .deep import x\nfrom .. import a\nname = 2\n",
        "pkg/sub/deep.py": "from ..a import thing\nx = 3\n",
    })
    edges = import_edges(root, "pkg", root)
    assert _pairs(edges) == {
        ("pkg", "pkg.a"),
        ("pkg.a", "pkg.sub.deep"), ("pkg.a", "pkg.sub"),  # deep is a module, name comes from __init__
        ("pkg.sub", "pkg.sub.deep"), ("pkg.sub", "pkg.a"),
        ("pkg.sub.deep", "pkg.a"),
    }
    assert all(e.where == "module" for e in edges)
    located = {(e.source, e.target): (e.path, e.line) for e in edges}
    assert located["pkg.sub.deep", "pkg.a"] == ("pkg/sub/deep.py", 1)


def test_function_level_counts_type_checking_does_not(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": ("from typing import TYPE_CHECKING\nimport typing\n"
                     "if TYPE_CHECKING:\n    from pkg.b import B\n"
                     "if typing.TYPE_CHECKING:\n    import pkg.c\nelse:\n    import pkg.d\n"
                     "def f():\n    from pkg.b import g\n    return g\n"
                     "class K:\n    def m(self):\n        import pkg.c\n"),
        "pkg/b.py": "", "pkg/c.py": "", "pkg/d.py": "",
    })
    edges = import_edges(root, "pkg", root)
    assert {(e.source, e.target, e.where) for e in edges} == {
        ("pkg.a", "pkg.d", "module"), ("pkg.a", "pkg.b", "function"), ("pkg.a", "pkg.c", "function")}


def test_implied_parent_edges_are_not_counted_explicit_ones_are(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/store/__init__.py": "from pkg.store.sql import Store\n",
        "pkg/store/sql.py": "from pkg.store import claims\nStore = 1\n",  # a submodule: no cycle
        "pkg/store/claims.py": "",
    })
    assert cycle_report(import_edges(root, "pkg", root)) == []
    (root / "pkg/store/sql.py").write_text("from pkg.store import claims, helper\nStore = 1\n")
    blocks = cycle_report(import_edges(root, "pkg", root))
    assert len(blocks) == 1
    assert "pkg.store -> pkg.store.sql -> pkg.store" in blocks[0]
    assert "pkg/store/sql.py:1" in blocks[0] and "pkg/store/__init__.py:1" in blocks[0]


def test_cycles_are_reported_with_every_edge(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "import pkg.b\n",
        "pkg/b.py": "import pkg.c\n",
        "pkg/c.py": "def f():\n    import pkg.a\n    import pkg.b\n",
        "pkg/x.py": "import pkg.y\n", "pkg/y.py": "from pkg import x\n",
        "pkg/z.py": "import pkg.a\n",  # reaches a cycle without being in one
    })
    blocks = cycle_report(import_edges(root, "pkg", root))
    assert len(blocks) == 2
    first, second = blocks
    assert first.startswith("cycle among 3 modules: pkg.a, pkg.b, pkg.c")
    assert "  pkg.a -> pkg.b -> pkg.c -> pkg.a\n" in first + "\n"
    assert "  pkg.b -> pkg.c -> pkg.b" in first
    assert "pkg.c -> pkg.a  (pkg/c.py:2, function-level import)" in first
    assert "pkg.z" not in first + second
    assert second.startswith("cycle among 2 modules: pkg.x, pkg.y")
    assert "pkg.y -> pkg.x  (pkg/y.py:1, module-level import)" in second


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ({"a": {"a"}}, []),
    ({"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "e": {"d"}}, [["a", "b", "c"], ["d", "e"]]),
])
def test_strongly_connected_components(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert strongly_connected(graph) == expected
