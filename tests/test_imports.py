"""Dependencies point down: every import of every taulib module (function-level and type-checking ones included),
against the package's layers, and no import cycle.

A module may import its own layer and the layers below it. A metric family's declaration (taulib/metrics/<family>/
settings.py, with taulib.metrics.declaration and .catalogue) sits at the configuration's layer, since the
configuration composes the families' parameters; the family's computation sits in the metrics layer above it. An
upward import still to be moved would be listed in REMAINING_UPWARD, exactly: an edge that disappears must leave
the list (so it cannot come back unnoticed), and a new upward import or a new cycle fails. None remains.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "taulib"
# lowest first: a module's layer is that of its top-level module or package
LAYERS = (
    ("atomic", "progress", "provenance", "versions", "precision", "schedules", "timing", "strict_model"),
    ("config", "sae", "corpus"),
    ("activations", "train"),
    ("metrics",),
    ("sweep", "interop"),
    ("analysis",),
    ("groundtruth", "plots", "playground", "study"),
    ("parameter_docs", "cli", "__main__"),
)
REMAINING_UPWARD: set[tuple[str, str]] = set()


@functools.cache
def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The taulib modules `path` imports anywhere in its body (a `from taulib import x` names module x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        found |= {name for name in names if name in modules and name != "taulib"}
    return found


# a metric family's declaration (its parameters, columns and version) is configuration: the config composes the
# families' parameters, so these sit at its layer and import nothing that computes
DECLARATION_MODULES = re.compile(r"taulib\.metrics(\.declaration|\.catalogue|\.\w+\.settings|\.\w+)?")


def _layer(module: str) -> int:
    top = "config" if DECLARATION_MODULES.fullmatch(module) and _is_declaration(module) else module.split(".")[1]
    return next(index for index, names in enumerate(LAYERS) if top in names)


def _is_declaration(module: str) -> bool:
    """The declaration modules, and the packages that hold them (taulib.metrics and each family's folder)."""
    path = _modules().get(module)
    return path is not None and (path.name in ("declaration.py", "catalogue.py", "settings.py", "__init__.py"))


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items() if name != "taulib"}


def test_every_module_has_a_layer():
    unplaced = [name for name in _graph() if not any(name.split(".")[1] in names for names in LAYERS)]
    assert not unplaced, f"modules in no layer of tests/test_imports.py: {unplaced}"


def test_no_module_imports_a_layer_above_its_own():
    upward = {(module, target) for module, targets in _graph().items() for target in targets if _layer(target) > _layer(module)}
    assert upward == REMAINING_UPWARD, f"new upward imports: {sorted(upward - REMAINING_UPWARD)}; gone (remove from the list): {sorted(REMAINING_UPWARD - upward)}"


def test_no_import_cycle_but_the_remaining_upward_edges():
    """Without the remaining upward edges the import graph has no cycle (Tarjan's strongly connected components)."""
    graph = {module: targets - {t for m, t in REMAINING_UPWARD if m == module} for module, targets in _graph().items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


def test_the_check_sees_a_function_level_import(tmp_path):
    """The walk reads imports inside functions too (where a cycle hides from Python's import machinery)."""
    module = tmp_path / "example.py"
    module.write_text("def late():\n    from taulib.study import run\n")
    assert _imports(module, {"taulib.study.run": module}) == {"taulib.study.run"}
