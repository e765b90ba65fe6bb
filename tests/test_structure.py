"""The package's import graph: no import cycles, and no import from a lower layer into a higher one.

Every module of ``ml4ge`` is parsed with :mod:`ast` (nothing is imported). An edge ``A -> B`` is any import of an
``ml4ge`` module ``B`` anywhere in ``A``: at module level, inside functions, and under ``if TYPE_CHECKING`` (a
type-only import is still a dependency of the code's meaning, and the cycles it hides are the ones that come back
as run-time imports). Relative imports are resolved against ``A``'s package.

Packages: importing ``a.b.c`` also runs ``a/__init__.py`` and ``a/b/__init__.py``, but an edge goes only to the
named module ``a.b.c`` (``from a.b import c`` names ``a.b.c`` when ``c`` is a submodule, else ``a.b``). Counting the
parent packages too would make every package whose ``__init__`` imports its own submodules a cycle. What could hide
that way, a lower module pulling in a higher layer through a package's ``__init__``, is checked apart: no package
sits in a higher layer than a module inside it.

Layers, top to bottom (a module may import its own layer and the layers below; cycles are refused everywhere):

=========  ==============================================================================================
entry      ``cli``: parses ``--mode`` and runs the recipe.
recipes    ``recipes`` (the registry of modes) and every ``recipes.*`` module; and the demo's stage modules
           ``demo.pipeline``, ``demo.truth_stages``, ``demo.group_stages``, ``demo.recipe_runner``, because the
           demo's stages *run* recipes: they are recipe clients, like ``recipes.demo`` which runs them.
arguments  ``arguments``: the flag definitions the recipes read. It names no recipe.
analyses   what recipes are made of beyond the model: ``compare``, ``explore``, ``interpret.*``, ``genetics.*``
           and the demo's library (cohort generator, run context ``demo.context``, report, truth checks).
           They take data and settings, never the flag parser, and import no recipe.
engine     models, data and training: ``models.*``, ``pipeline``, ``workers``, ``training``, ``strategy``,
           ``tensormaps.*`` (the catalogue), ``lookup``, ``tensorize``, ``splits``, ``latents``, ``templates``, ...
foundation modules every layer uses and which know nothing of the others: ``registry``, ``tensormap`` (the
           class), ``hd5``, ``atomic``, ``arrays``, ``normalizers``, ``readers``, ``defaults``, ...
=========  ==============================================================================================

Every module must be placed: a new module fails :func:`test_every_module_has_a_layer` until it is added here.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "ml4ge"

# Top to bottom. A pattern names a module and everything below it; the longest matching pattern places a module.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("entry", ("ml4ge.cli",)),
    ("recipes", ("ml4ge.recipes", "ml4ge.demo.pipeline", "ml4ge.demo.truth_stages", "ml4ge.demo.recipe_runner",
                 "ml4ge.demo.legibility", "ml4ge.demo.brain_age_study", "ml4ge.demo.group_stages",
                 "ml4ge.demo.concurrent_stages")),
    ("arguments", ("ml4ge.arguments", "ml4ge.runs")),
    ("analyses", ("ml4ge.compare", "ml4ge.plots_compare", "ml4ge.group_metrics", "ml4ge.explore", "ml4ge.interpret",
                  "ml4ge.genetics", "ml4ge.demo", "ml4ge.brain_age")),
    ("engine", ("ml4ge.models", "ml4ge.pipeline", "ml4ge.workers", "ml4ge.batch_reading", "ml4ge.watchdog",
                "ml4ge.training", "ml4ge.checkpoints", "ml4ge.strategy",
                "ml4ge.tensormaps", "ml4ge.lookup", "ml4ge.tensorize", "ml4ge.registration", "ml4ge.templates",
                "ml4ge.splits", "ml4ge.latents", "ml4ge.synthetic", "ml4ge.plots", "ml4ge.schedules",
                "ml4ge.training_settings", "ml4ge.template_building", "ml4ge.predictor_data", "ml4ge.predictor_metrics",
                "ml4ge.plots_sweep")),
    ("foundation", ("ml4ge", "ml4ge.registry", "ml4ge.tensormap", "ml4ge.hd5", "ml4ge.atomic", "ml4ge.arrays",
                    "ml4ge.normalizers", "ml4ge.readers", "ml4ge.skipped", "ml4ge.progress", "ml4ge.defaults",
                    "ml4ge.grids", "ml4ge.quiet", "ml4ge.nifti")),
)


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int


def module_files(root: Path, package: str) -> dict[str, tuple[Path, bool]]:
    """``{dotted module name: (file, is_package)}`` for every ``.py`` file under ``root/package``."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def _known(name: str, modules) -> str | None:
    """``name`` or its nearest enclosing module that exists (``pkg.mod.function`` -> ``pkg.mod``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imported(node: ast.AST, module: str, is_package: bool, package: str, modules) -> list[str]:
    if isinstance(node, ast.Import):
        return [_known(alias.name, modules) for alias in node.names if alias.name.split(".")[0] == package]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = module if is_package else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        base = f"{base}.{node.module}" if node.module else base
    else:
        base = node.module or ""
    if base.split(".")[0] != package:
        return []
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else _known(base, modules)
            for alias in node.names]


def import_graph(root: Path, package: str = PACKAGE) -> tuple[set[str], list[Edge]]:
    """The modules of ``package`` under ``root`` and every import edge between them (self-imports dropped)."""
    modules = module_files(root, package)
    edges = []
    for module, (path, is_package) in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            for target in _imported(node, module, is_package, package, modules):
                if target and target != module:
                    edges.append(Edge(module, target, node.lineno))
    return set(modules), edges


def _adjacency(modules: set[str], edges: list[Edge]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {module: set() for module in modules}
    for edge in edges:
        graph[edge.source].add(edge.target)
    return graph


def _strong_components(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)
    return components


def _shortest_cycle(graph: dict[str, set[str]], start: str, allowed: set[str]) -> list[str]:
    """The shortest chain ``start -> ... -> start`` inside ``allowed``."""
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph[node] & allowed):
            if child == start:
                chain = [node]
                while chain[-1] != start:
                    chain.append(previous[chain[-1]])
                return [*reversed(chain), start]
            if child not in previous:
                previous[child] = node
                queue.append(child)
    return []


def import_cycles(modules: set[str], edges: list[Edge]) -> list[list[str]]:
    """Each distinct shortest cycle through a module of a cyclic component, as a chain ``a -> b -> ... -> a``."""
    graph = _adjacency(modules, edges)
    cycles, seen = [], set()
    for component in _strong_components(graph):
        if len(component) == 1:
            continue
        for start in sorted(component):
            chain = _shortest_cycle(graph, start, component)
            key = frozenset(zip(chain, chain[1:]))
            if chain and key not in seen:
                seen.add(key)
                cycles.append(chain)
    return cycles


def layer_of(module: str) -> str | None:
    """The layer whose longest pattern matches ``module``, or None."""
    best, best_length = None, -1
    for name, patterns in LAYERS:
        for pattern in patterns:
            if (module == pattern or module.startswith(pattern + ".")) and len(pattern) > best_length:
                best, best_length = name, len(pattern)
    return best


RANK = {name: rank for rank, (name, _) in enumerate(reversed(LAYERS))}  # foundation 0 ... entry 5


def upward_imports(edges: list[Edge]) -> list[str]:
    """``'a (layer) -> b (higher layer), line n'`` for every import from a lower layer into a higher one."""
    found = []
    for edge in edges:
        source, target = layer_of(edge.source), layer_of(edge.target)
        if RANK[target] > RANK[source]:
            found.append(f"{edge.source} ({source}) imports {edge.target} ({target}), line {edge.line}")
    return sorted(set(found))


# The real package ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def graph():
    return import_graph(ROOT)


def test_every_module_has_a_layer(graph):
    modules, _ = graph
    unplaced = sorted(module for module in modules if layer_of(module) is None)
    assert not unplaced, f"place these modules in LAYERS of {Path(__file__).name}: {unplaced}"


def test_no_import_cycles(graph):
    cycles = import_cycles(*graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(chain) for chain in cycles)


def test_no_import_from_a_lower_layer_into_a_higher_one(graph):
    found = upward_imports(graph[1])
    assert not found, "imports from a lower layer into a higher one:\n" + "\n".join(found)


def test_no_package_sits_above_its_own_modules(graph):
    """Importing ``a.b.c`` runs ``a/b/__init__.py``: a package above its modules would be an unseen upward edge."""
    modules, _ = graph
    above = sorted(f"{module} ({layer_of(module)}) holds {inner} ({layer_of(inner)})" for module in modules
                   for inner in modules if inner.startswith(module + ".")
                   and RANK[layer_of(module)] > RANK[layer_of(inner)])
    assert not above, "\n".join(above)


def test_the_cli_imports_in_a_fresh_interpreter():
    result = subprocess.run([sys.executable, "-c", "import ml4ge.cli"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


# The walker itself, on a package made for it -------------------------------------------------------------------
def _write_package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_walker_resolves_relative_function_level_and_type_only_imports(tmp_path):
    _write_package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/low.py": "import os\n",
        "pkg/sub/__init__.py": "from . import inner\n",
        "pkg/sub/inner.py": "from ..low import thing\n",
        "pkg/high.py": """
            from typing import TYPE_CHECKING
            import pkg.sub.inner
            if TYPE_CHECKING:
                from pkg import low
            def later():
                from .sub import inner, missing_name
        """,
    })
    modules, edges = import_graph(tmp_path, "pkg")
    assert modules == {"pkg", "pkg.low", "pkg.sub", "pkg.sub.inner", "pkg.high"}
    pairs = {(edge.source, edge.target) for edge in edges}
    assert pairs == {("pkg.sub", "pkg.sub.inner"), ("pkg.sub.inner", "pkg.low"), ("pkg.high", "pkg.sub.inner"),
                     ("pkg.high", "pkg.low"), ("pkg.high", "pkg.sub")}
    assert import_cycles(modules, edges) == []


def test_walker_reports_each_cycle_as_a_chain(tmp_path):
    _write_package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg import b\n",
        "pkg/b.py": "def f():\n    from pkg.c import g\n",
        "pkg/c.py": "from .a import x\n",
        "pkg/d.py": "import pkg.e\n",
        "pkg/e.py": "from . import d\n",
    })
    cycles = import_cycles(*import_graph(tmp_path, "pkg"))
    assert sorted(cycles) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"], ["pkg.d", "pkg.e", "pkg.d"]]


def test_upward_imports_are_named_with_their_layers_and_line():
    edges = [Edge("ml4ge.interpret.setup", "ml4ge.recipes.interpret", 7), Edge("ml4ge.cli", "ml4ge.hd5", 3)]
    assert upward_imports(edges) == [
        "ml4ge.interpret.setup (analyses) imports ml4ge.recipes.interpret (recipes), line 7"]
