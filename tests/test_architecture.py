"""The layout keeps its shape: the import contract holds, and it would catch a violation.

The contract itself is in pyproject.toml ([tool.importlinter]); docs/ARCHITECTURE.md draws it.
Each violation below is planted in a copy of the package, so a contract that stopped seeing
one (a typo in a layer name, a function-level import it skips) fails here.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--no-cache", "--config", str(tree / "pyproject.toml")],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _copy(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "ospp", tree / "ospp", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_the_contract_holds() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "line", "says"),
    [
        # a cycle between two modules of one package, through an import inside a function
        ("machine/seal.py", "def _cycle():\n    from ospp.machine import checks\n", "cycles"),
        ("core/clock.py", "from ospp.machine import store\n", "not allowed to import"),
        ("protocol/keys.py", "from ospp.kmshost import state\n", "not allowed to import"),
        ("machine/client.py", "from ospp.cli import base\n", "not allowed to import"),
        ("kmshost/state.py", "from ospp.machine import store\n", "not allowed to import"),
        ("dns/discovery.py", "from ospp.authority import port\n", "not allowed to import"),
    ],
)
def test_the_contract_fails_on_a_violation(
    tmp_path: Path, module: str, line: str, says: str
) -> None:
    tree = _copy(tmp_path)
    path = tree / "ospp" / module
    path.write_text(path.read_text(encoding="utf-8") + "\n\n" + line, encoding="utf-8")
    result = _lint(tree)
    assert result.returncode != 0
    assert says in result.stdout


def test_the_cli_opens_no_socket_loop_or_database() -> None:
    """The CLI parses and prints: sockets, event loops and SQL live in the roles."""
    forbidden = {"socket", "asyncio", "sqlite3", "selectors"}
    found = []
    for path in sorted((ROOT / "ospp" / "cli").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
            elif isinstance(node, ast.Attribute) and node.attr in ("execute", "executemany"):
                names = ["sql:" + node.attr]
            found += [
                f"{path.name}:{getattr(node, 'lineno', 0)} {n}" for n in names if n in forbidden
            ]
            found += [
                f"{path.name}:{getattr(node, 'lineno', 0)} {n}"
                for n in names
                if n.startswith("sql:")
            ]
    assert found == []


def test_the_architecture_names_every_module() -> None:
    """docs/ARCHITECTURE.md is the map a maintainer reads first: each module is named in its
    package's row of "Who owns what" (as `name`) or by its path (`package/name`,
    `package.name`). One it does not name (added since, or renamed) fails here, as the man
    pages and completions fail when they drift from the CLI. A word elsewhere does not count:
    `clock` in core's row is not ospp/cli/clock.py."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    rows = {m[1]: m[0] for m in re.finditer(r"^\| `(\w+)` \|.*$", text, flags=re.M)}
    unnamed = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "ospp").rglob("*.py"))
        if path.stem not in ("__init__", "__main__")
        and f"{path.parent.name}/{path.stem}" not in text
        and f"{path.parent.name}.{path.stem}" not in text
        and f"`{path.stem}`" not in rows.get(path.parent.name, "")
    ]
    assert unnamed == []
