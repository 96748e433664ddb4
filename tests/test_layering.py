"""The package's layering: imports only run downward (nn -> ops -> reference -> core), no
module imports itself through others (no cycles, anywhere in jaxbp or benchmarks), and the
package root holds the library's modules only.

Each lower layer may import only from the layers below it; a violation names the file
and the import. Imports inside functions count too (they are still dependencies: a
function-level import is how a cycle hides)."""

from __future__ import annotations

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = REPO / "jaxbp"

# layer -> the jaxbp modules/packages it may import from (besides itself)
ALLOWED = {
    "core": set(),
    "validation": set(),
    "reference": {"core"},
    "ops": {"core", "reference", "validation"},
    "init": {"core"},
    "nn": {"core", "ops", "init", "validation"},
}

# What the package root may hold: the library's modules and subpackages. Applications live
# outside it (experiments/, benchmarks/) or in a subpackage named for what they are (tutorial).
LIBRARY_ROOT = {
    "__init__", "core", "validation", "init", "precision", "progress", "cli", "gradcheck",
    "reference", "ops", "nn", "models", "diagnostics", "train", "data", "checkpoint", "theory",
    "studies", "tutorial",
}  # fmt: skip


def _imported_jaxbp_modules(path: pathlib.Path) -> set[str]:
    """Top-level jaxbp subpackages/modules imported by the file (``jaxbp.ops.dense`` -> ``ops``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == "jaxbp":
                if len(parts) > 1:
                    found.add(parts[1])
                else:
                    found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "jaxbp" and len(parts) > 1:
                    found.add(parts[1])
    return found


def _files(layer: str) -> list[pathlib.Path]:
    directory = PACKAGE / layer
    return sorted(directory.rglob("*.py")) if directory.is_dir() else [PACKAGE / f"{layer}.py"]


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_lower_layers_import_only_from_below(layer):
    for path in _files(layer):
        forbidden = _imported_jaxbp_modules(path) - ALLOWED[layer] - {layer}
        assert not forbidden, (
            f"{path.relative_to(PACKAGE.parent)} imports {sorted(forbidden)}; {layer} may import only {sorted(ALLOWED[layer])}"
        )


def test_no_module_is_over_400_lines():
    long = {
        str(p.relative_to(PACKAGE.parent)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert not long, f"split these modules (one job each): {long}"


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(*packages: str) -> dict[str, set[str]]:
    """``{module: modules it imports}`` over the ``packages`` (directories under the repository
    root), every import counted wherever it sits; ``from a.b import c`` names ``a.b.c`` when that
    is a module, else ``a.b``."""
    files = {_module_name(path): path for package in packages for path in (REPO / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    child = f"{node.module}.{alias.name}"
                    targets.add(child if child in files else node.module)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[module] = {target for target in targets if target in files and target != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle ``[a, b, ..., a]`` of ``graph``, or None (depth-first search, white/grey/black)."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module], _ = "grey", path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "grey":
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[module], _ = "black", path.pop()
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_and_only_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles_in_the_package_or_the_benchmarks():
    graph = import_graph("jaxbp", "benchmarks")
    assert "jaxbp.nn._combinators" in graph["jaxbp.nn._attention"]  # the graph sees real imports
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle)} (split the modules by concern)"


def test_the_package_root_holds_only_library_modules():
    present = {path.stem for path in PACKAGE.glob("*.py")} | {
        path.name for path in PACKAGE.iterdir() if (path / "__init__.py").exists()
    }
    assert present <= LIBRARY_ROOT, f"not library modules, move them out of jaxbp/: {sorted(present - LIBRARY_ROOT)}"
