"""How the test suite is put together: helpers come from one module, never from other test modules."""

from __future__ import annotations

import ast
import re
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
PRODUCT = sorted(ROOT.glob("bot/**/*.py")) + sorted(ROOT.glob("cogs/*.py"))
# Called by discord.py, httpcore or pydantic rather than by our code.
FRAMEWORK_HOOKS = {"callback", "from_custom_id", "connect_unix_socket", "setup_hook", "on_guild_available"}
FRAMEWORK_HOOKS |= {"on_guild_join", "cog_load", "cog_unload", "on_interaction", "on_message", "confirm"}
# Kept for people outside the bot: what a webhook receiver runs, and the invite link the README shows.
FOR_OUTSIDERS = {"bot.site.webhook.verify", "bot.app.invite_url"}
STATEMENTS_REWRITE: set[str] = set()


def framework_calls(decorator: ast.expr) -> bool:
    """A command, listener or check is called by discord.py; a property or static method is ours."""
    return not (isinstance(decorator, ast.Name) and decorator.id in {"property", "staticmethod", "classmethod"})


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def test_product_code_defines_nothing_only_tests_or_nobody_call() -> None:
    """Every top-level function and class in bot/ and cogs/ is used by the product; every public method by something."""
    trees = {module_name(path): ast.parse(path.read_text()) for path in PRODUCT}
    test_trees = [ast.parse(path.read_text()) for path in TESTS.rglob("*.py")]

    def names_used(tree: ast.Module) -> set[str]:
        return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)} | attributes_used(tree)

    def attributes_used(tree: ast.Module) -> set[str]:
        return {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}

    def imported_from(tree: ast.Module, module: str) -> set[str]:
        return {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == module
            for alias in node.names
        }

    attributes_anywhere = set().union(*(names_used(t) for t in [*trees.values(), *test_trees]))
    attributes_in_product = set().union(*(attributes_used(t) for t in trees.values()))
    unused = []
    for module, tree in trees.items():
        used_by_product = names_used(tree) | attributes_in_product
        used_by_product |= set().union(*(imported_from(other, module) for other in trees.values() if other is not tree))
        for node in tree.body:
            top_level = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            if top_level and node.name not in used_by_product and f"{module}.{node.name}" not in FOR_OUTSIDERS:
                unused.append(f"{module}.{node.name}")
            if isinstance(node, ast.ClassDef) and not module.startswith("cogs."):
                for method in node.body:
                    if (
                        isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef))
                        and not method.name.startswith("_")
                        and not any(framework_calls(decorator) for decorator in method.decorator_list)
                        and method.name not in FRAMEWORK_HOOKS
                        and method.name not in attributes_anywhere
                        and f"{module}.{node.name}.{method.name}" not in STATEMENTS_REWRITE
                    ):
                        unused.append(f"{module}.{node.name}.{method.name}")
    assert unused == [], unused


def test_each_repository_lives_in_the_module_named_for_its_table() -> None:
    """`ArticlesRepo` is in bot/store/articles.py, `FeedsRepo` in feeds.py: a reader finds a table's SQL by its name."""
    # Small key-value tables kept together; the site incident is what holds the outbox back.
    kept_with = {"GuildSettingsRepo": "settings", "MetaRepo": "settings", "SiteIncidentRepo": "outbox"}
    misplaced = {}
    for path in sorted((ROOT / "bot" / "store").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and node.name.endswith("Repo"):
                table = re.sub(r"(?<!^)(?=[A-Z])", "_", node.name.removesuffix("Repo")).lower()
                if kept_with.get(node.name, table) != path.stem:
                    misplaced[node.name] = path.name
    assert misplaced == {}


def test_errors_are_answered_through_the_one_policy() -> None:
    """Only bot/errors.py turns an error into an answer, and nobody re-wraps a message already written for members."""
    import importlib

    from bot.errors import UserFacingError

    offenders = []
    for path in PRODUCT:
        module = module_name(path)
        tree = ast.parse(path.read_text())
        if module != "bot.errors" and "describe_error" in names_used_in(tree):
            offenders.append(f"{module} decides how to answer an error itself (use answer_error / answers_errors)")
        loaded = importlib.import_module(module)
        for handler in (node for node in ast.walk(tree) if isinstance(node, ast.ExceptHandler)):
            caught = getattr(loaded, handler.type.id, None) if isinstance(handler.type, ast.Name) else None
            reraised = [node for node in handler.body if isinstance(node, ast.Raise) and node.exc is not None]
            rewraps = any(
                isinstance(node.exc, ast.Call) and getattr(node.exc.func, "id", "") == "UserFacingError"
                for node in reraised
            )
            if isinstance(caught, type) and issubclass(caught, UserFacingError) and rewraps:
                offenders.append(f"{module}:{handler.lineno} re-wraps {caught.__name__}, already a UserFacingError")
    assert offenders == []


def names_used_in(tree: ast.Module) -> set[str]:
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)} | {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names
    }


def test_loopback_servers_are_fixtures_of_conftest_only() -> None:
    """The fake Discord, the fake site and the feed server each have one fixture, in conftest.py."""
    servers = {"FakeDiscord", "FakeSite", "FeedServer"}
    fixtures: dict[str, list[str]] = {name: [] for name in servers}
    for path in TESTS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            is_fixture = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
                "fixture" in ast.unparse(decorator) for decorator in node.decorator_list
            )
            if is_fixture:
                made = {
                    call.func.id
                    for call in ast.walk(node)
                    if isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                }
                for name in servers & made:
                    fixtures[name].append(path.name)
    assert fixtures == {name: ["conftest.py"] for name in servers}


def test_every_module_is_a_file_a_person_can_hold() -> None:
    """No module in bot/ or cogs/ is over 700 lines (split by responsibility instead)."""
    too_long = {
        str(path.relative_to(ROOT)): lines for path in PRODUCT if (lines := len(path.read_text().splitlines())) > 700
    }
    assert too_long == {}


def test_no_helper_or_fixture_is_copied_between_test_modules() -> None:
    """A function or fixture with the same name and body in two test files belongs in conftest or helpers."""
    seen: dict[str, list[str]] = {}
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("test_"):
                body = node.body[1:] if ast.get_docstring(node) else node.body
                key = node.name + ast.dump(ast.Module(body=body, type_ignores=[]))
                seen.setdefault(key, []).append(f"{path.relative_to(TESTS)}:{node.name}")
    assert [places for places in seen.values() if len(places) > 1] == []


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
