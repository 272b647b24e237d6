"""Every dependency rig declares is one rig imports: a declared package nobody uses is
weight on every install (and a promise the code does not keep)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_top_levels() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "rig").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def test_each_declared_dependency_is_imported_by_rig() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {_normal(re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0]) for spec in declared}
    providers = importlib.metadata.packages_distributions()
    used = {_normal(dist) for module in _imported_top_levels() for dist in providers.get(module, [])}
    assert names <= used, f"declared but never imported: {sorted(names - used)}"
    assert "fabric" not in names  # rig's guest access is paramiko with its own deadlines (rig/guest.py)
