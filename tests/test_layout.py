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


ROOT = TESTS.parent
STATEMENT_MODULES = ["cogs/statements.py", "bot/statements.py", "bot/store/statements.py"]


def test_statements_cog_reaches_the_store_only_through_its_service() -> None:
    """cogs/statements.py names no repository: it calls StatementService, which uses `store.statements`."""
    source = (ROOT / "cogs/statements.py").read_text()
    tree = ast.parse(source)
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    names |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert {name for name in names if name.endswith("Repo") or name in ("repo", "statements")} <= {"statements"}
    assert ".store.statements" not in source.replace("from bot.store.statements import", "")


def test_no_cog_imports_another_cog() -> None:
    offenders = {
        path.name: module
        for path in (ROOT / "cogs").glob("*.py")
        for module in imported_modules(path)
        if module.startswith("cogs")
    }
    assert offenders == {}
