"""The layers of da/ (docs/architecture.md#layers-every-import-points-down): every import points down.

The contract is ``[tool.importlinter]`` in pyproject.toml; these tests run it, prove that it can
fail (an upward import added to a copy of da/ breaks it), and find no import cycle among da's
modules. Both count imports under ``TYPE_CHECKING`` and inside functions. An import inside a
function is kept only in the apps, for start-up time, with a comment saying so.
"""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
from importlinter.api import read_configuration

import da

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(da.__file__).parent
#: The apps, where an import inside a function may stay when it buys start-up time.
APPS = ("cli.py", "__main__.py", "evaluate.py", "bench/")
#: Imports of da inside functions outside the apps: none.
KNOWN_INNER_IMPORTS: set[tuple[str, str]] = set()


def lint_imports(project: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the da/ and pyproject.toml of ``project`` (no cache written)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(project), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
               "--no-cache", "--no-logo"]
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=300)


def test_the_layers_contract_is_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


UPWARD = {  # a module of a lower layer, an import of an upper one added to it, and the broken pair
    "errors.py": ("from da.composition import train  # noqa: F401\n", "da.errors is not allowed to import da.composition"),
    "train/run.py": ("from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from da.stages.base import Stage as S\n",
                     "da.train is not allowed to import da.stages"),
    "data/domain.py": ("\n\ndef _upward() -> None:\n    from da.train import run  # noqa: F401\n",
                       "da.data is not allowed to import da.train"),
    "config/types.py": ("from da.registry import ADAPTERS  # noqa: F401\n", "da.config.types -> da.registry"),
}


def test_the_contract_fails_on_an_upward_import(tmp_path):
    """A copy of da/ with an upward import in each of three lower layers (at the top of a module,
    under TYPE_CHECKING and inside a function) and da.config reading a registry: each is reported."""
    shutil.copytree(PACKAGE, tmp_path / "da", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    for module, (text, _) in UPWARD.items():
        with open(tmp_path / "da" / module, "a") as f:
            f.write(text)
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout
    for module, (_, message) in UPWARD.items():
        assert message in result.stdout, f"{module}: {message!r} not reported:\n{result.stdout}"


def import_graph() -> grimp.ImportGraph:
    """da's import graph (imports under TYPE_CHECKING and inside functions included), without the
    imports the contract ignores."""
    graph = grimp.build_graph("da", cache_dir=None)
    contracts = read_configuration(str(ROOT / "pyproject.toml"))["contracts_options"]
    for contract in contracts:
        for expression in contract.get("ignore_imports", []):
            importer, imported = (part.strip() for part in expression.split("->"))
            graph.remove_import(importer=importer, imported=imported)
    return graph


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan 1972, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycles_finds_a_cycle_and_only_cycles():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_the_modules_of_da():
    graph = import_graph()
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    found = cycles(edges)
    assert not found, "import cycles among da's modules:\n" + "\n".join(
        f"  {len(c)} modules: {', '.join(c)}" for c in found)


def inner_imports(path: Path) -> list[tuple[int, str]]:
    """Imports of ``da`` modules inside functions of ``path``: (line, module)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                names = ([a.name for a in inner.names] if isinstance(inner, ast.Import)
                         else [inner.module or ""] if isinstance(inner, ast.ImportFrom) and not inner.level else [])
                out += [(inner.lineno, n) for n in names if n == "da" or n.startswith("da.")]
    return out


def test_no_import_of_da_inside_a_function_outside_the_apps():
    """Never to dodge a cycle: outside the apps every import of da is at the top of its module."""
    found = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith(APPS):
            continue
        found |= {(relative, ".".join(module.split(".")[:2])) for _, module in inner_imports(path)}
    assert found == KNOWN_INNER_IMPORTS, f"imports of da inside functions: {sorted(found - KNOWN_INNER_IMPORTS)}; " \
                                         f"gone from the known list: {sorted(KNOWN_INNER_IMPORTS - found)}"


def test_an_import_inside_a_function_of_an_app_says_why():
    """In the apps an import inside a function stays for start-up time, with a comment on it or on a
    line just above its group."""
    silent = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if not relative.startswith(APPS):
            continue
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)) and not commented(lines, inner.lineno - 1):
                    silent.add(f"{relative}:{inner.lineno}")
    assert not silent, f"imports inside functions without a comment saying why: {sorted(silent)}"


def commented(lines: list[str], i: int) -> bool:
    """Line ``i`` has a comment, or the block of imports (and blank lines) it is in starts under one."""
    if "#" in lines[i]:
        return True
    while i > 0 and (lines[i - 1].strip().startswith(("import ", "from ")) or not lines[i - 1].strip()):
        i -= 1
    return i > 0 and lines[i - 1].strip().startswith("#")
