"""The package's layering: imports only run downward (nn -> ops -> reference -> core).

Each lower layer may import only from the layers below it; a violation names the file
and the import. Imports inside functions count too (they are still dependencies)."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "jaxbp"

# layer -> the jaxbp modules/packages it may import from (besides itself)
ALLOWED = {
    "core": set(),
    "reference": {"core"},
    "ops": {"core", "reference"},
    "init": {"core"},
    "nn": {"core", "ops", "init"},
}


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
