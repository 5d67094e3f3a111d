"""The layering of README's "Layout": which package may import which, read from the source.

Every import counts, a function's lazy one too; only imports under `if TYPE_CHECKING:` (type
hints) are left out.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> modules it must never import (a name forbids the package and everything in it)
FORBIDDEN = {
    "extract": ["prefect", "duckdb", "warehouse", "monitoring", "reading", "flows", "dashboards", "tests", "bench"],
    "warehouse": ["prefect", "extract", "monitoring", "reading", "flows", "dashboards", "tests", "bench"],
    "monitoring": ["prefect", "duckdb", "warehouse", "reading", "flows", "dashboards", "tests", "bench"],
    "reading": ["prefect", "monitoring", "flows", "dashboards", "tests", "bench"],
    "dashboards": ["prefect", "flows", "tests", "bench"],
    "flows": ["tests", "bench"],  # the command line starts the dashboard, so it may name its package
    "bench": ["tests"],
}
# The settings are one module every reader may use.
ALLOWED = {"dashboards": ["flows.settings"]}


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, lazy ones included, `TYPE_CHECKING` blocks left out."""
    found = []

    def visit(node: ast.AST) -> None:
        if _type_checking_only(node):
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_only_what_its_layer_may(package):
    broken = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in imported_modules(path):
            if any(_within(module, allowed) for allowed in ALLOWED.get(package, [])):
                continue
            if any(_within(module, forbidden) for forbidden in FORBIDDEN[package]):
                broken.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not broken, "\n".join(broken)


def test_the_checker_sees_lazy_imports_and_skips_type_hints(tmp_path):
    source = tmp_path / "sample.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from flows.settings import Settings\n"
        "def f():\n    import prefect\n    from warehouse.connection import open_warehouse\n"
    )
    modules = [module for _, module in imported_modules(source)]
    assert "prefect" in modules and "warehouse.connection" in modules
    assert not any(module.startswith("flows") for module in modules)
