"""How the test suite is put together: helpers come from one module, never from other test modules."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    return found + [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]


def test_tests_import_helpers_not_other_test_modules_or_conftest() -> None:
    offenders = {
        path.name: module
        for path in TESTS.glob("*.py")
        for module in imported_modules(path)
        if module.startswith(("tests.test_", "tests.conftest", "tests.clock")) or module == "conftest"
    }
    assert offenders == {}


def test_one_fake_clock_and_one_wait_helper() -> None:
    """The fake clock and `eventually` are defined once, in tests/helpers.py."""
    definitions: dict[str, list[str]] = {"FakeClock": [], "eventually": [], "until": []}
    for path in TESTS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in definitions:
                definitions[node.name].append(path.name)
    assert definitions == {"FakeClock": ["helpers.py"], "eventually": ["helpers.py"], "until": []}
