"""Imports run one way: each package imports only what its docstring's "May import:" line names.

The rule is written once, in the packages' own docstrings (tasks/__init__.py draws the whole
order); this test reads it from there and checks every import statement of every module (at any
depth, function-level imports included) against it, and that the declared rule has no cycle,
so that no package imports one above it. The event core imports no app at all.
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Packages whose rule is read from their docstring, innermost first where they nest.
PACKAGES = ["tasks.accounts", "tasks.chat", "tasks.realtime", "tasks.web", "tasks", "recurrence", "notifications", "audit"]
APPS = ["todo_project", *PACKAGES]
MAY_IMPORT = re.compile(r"^May import: (?P<names>[\w., ]+)\.$", re.MULTILINE)


def package_of(module):
    """The package ``module`` belongs to, the innermost of ours; None when it is none of ours."""
    for package in [*PACKAGES, "events", "todo_project"]:
        if module == package or module.startswith(package + "."):
            return package
    return None


def declared_imports(package):
    docstring = ast.get_docstring(ast.parse((ROOT / package.replace(".", "/") / "__init__.py").read_text()))
    match = MAY_IMPORT.search(docstring or "")
    assert match, f"{package}/__init__.py: its docstring must say what the package may import ('May import: ...')"
    return {name.strip() for name in match["names"].split(",")}


def modules_of(package):
    """(module name, path) of every module of ``package``, not of the packages nested in it."""
    folder = ROOT / package.replace(".", "/")
    for path in sorted(folder.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        if package_of(module) == package:
            yield module, path


def imported_modules(path, module):
    """Every module that ``path``'s import statements name (relative imports resolved)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package (a package's __init__ is its own)
                parts = module.split(".")
                base = parts[: len(parts) - node.level + (path.name == "__init__.py")]
                yield ".".join([*base, node.module] if node.module else base)
            else:
                yield node.module


def imports_across(package):
    """{(module, imported package)} for each import of ``package``'s modules into another of ours."""
    found = set()
    for module, path in modules_of(package):
        for name in imported_modules(path, module):
            target = package_of(name)
            if target is not None and target != package:
                found.add((module, target))
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_only_what_its_docstring_allows(package):
    allowed = declared_imports(package)
    assert allowed <= {"events", *PACKAGES}, f"{package} names packages that do not exist: {allowed}"
    forbidden = sorted((module, target) for module, target in imports_across(package) if target not in allowed)
    assert not forbidden, f"{package} imports what its docstring does not allow (module, package): {forbidden}"


def test_the_declared_layers_have_no_cycle_so_nothing_imports_a_package_above_it():
    declared = {package: declared_imports(package) - {"events"} for package in PACKAGES}

    def below(package, path=()):
        assert package not in path, f"the declared imports run in a circle: {' -> '.join([*path, package])}"
        for lower in declared[package]:
            below(lower, (*path, package))

    for package in PACKAGES:
        below(package)


def test_the_event_core_imports_no_app():
    forbidden = sorted((module, target) for module, target in imports_across("events") if target in APPS)
    assert not forbidden, f"events imports apps (module, app): {forbidden}"


def test_the_checker_sees_an_import_that_runs_back_up(tmp_path):
    """The check can fail: an upward import at function level is found like any other."""
    module = tmp_path / "services.py"
    module.write_text("def f():\n    from tasks.chat.services import chat_respond\n    from . import models\n")
    names = list(imported_modules(module, "tasks.services"))
    assert names == ["tasks.chat.services", "tasks"]
    assert package_of(names[0]) == "tasks.chat" and package_of(names[1]) == "tasks"
