"""The package's layering, checked on the source: an import only ever points down.

stats <- data, train, registry <- serve, monitor <- pipeline <- loop <- cli. Modules at the top of
``raymlops/`` (exceptions, config, audit, ray_session, ...) and ``store/`` sit below every layer.
Every import counts: module level, inside functions and under ``TYPE_CHECKING``."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "raymlops"
RANK = {"stats": 0, "data": 1, "train": 1, "registry": 1, "serve": 2, "monitor": 2, "pipeline": 3, "loop": 4,
        "cli": 5, "ui": 5}


def imported_modules(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every raymlops module a file imports (relative imports resolved)."""
    package = list(path.relative_to(root.parent).with_suffix("").parts[:-1])
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            if module == "raymlops":  # from raymlops import audit, monitor, ...
                out += [(node.lineno, f"raymlops.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, module))
    return [(line, name) for line, name in out if name.split(".")[0] == "raymlops"]


def upward_imports(root: Path = PACKAGE) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        me = RANK.get(parts[0]) if len(parts) > 1 else None
        if me is None:
            continue
        for line, name in imported_modules(path, root):
            seg = name.split(".")
            if len(seg) > 1 and RANK.get(seg[1], -1) > me:
                bad.append(f"{path.relative_to(root.parent)}:{line} imports {name}")
    return bad


def test_no_module_imports_a_higher_layer() -> None:
    assert upward_imports() == []


def test_the_check_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "raymlops"
    (pkg / "data").mkdir(parents=True)
    (pkg / "data" / "x.py").write_text("def f():\n    from ..pipeline import runner\n    import raymlops.cli\n")
    (pkg / "data" / "ok.py").write_text("from raymlops.stats import drift\nfrom raymlops import exceptions\n")
    found = upward_imports(pkg)
    assert found == ["raymlops/data/x.py:2 imports raymlops.pipeline", "raymlops/data/x.py:3 imports raymlops.cli"]
