"""The layering of DESIGN.md: data -> model -> training loop with method plugins -> metrics and reports. A
method, the contribution code, a model or the data layer never imports the loop (``poise.train``) or anything
above it; the helpers they share live below it in ``poise.runtime``."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "poise"
ABOVE = ("poise.train", "poise.epoch", "poise.run", "poise.checkpoint", "poise.run_dir", "poise.selection",
         "poise.bench", "poise.cli", "poise.continual", "poise.calibration", "poise.api")
LOWER = ("data", "models", "contrib", "methods", "runtime.py", "fisher.py", "optim.py", "metrics.py", "objective.py",
         "config.py", "memory.py")


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of the file (function-level imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def is_above(name: str) -> bool:
    """``name`` is one of ``ABOVE`` or inside it (``poise.run`` is above; ``poise.runtime`` is not)."""
    return any(name == a or name.startswith(a + ".") for a in ABOVE)


def lower_files():
    for entry in LOWER:
        path = PACKAGE / entry
        yield from (sorted(path.rglob("*.py")) if path.is_dir() else [path])


@pytest.mark.parametrize("path", list(lower_files()), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_lower_layers_never_import_the_loop_or_above(path):
    bad = sorted(n for n in imported_modules(path) if is_above(n))
    assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}: move the helper below the loop (poise.runtime)"


def test_the_check_would_catch_a_method_that_imports_the_loop(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from poise.train import to_device\n")
    assert any(is_above(n) for n in imported_modules(bad))
