"""The floor plan holds: no import cycle among the package's modules, no module over 450
lines, and the Python API never leans on the command line's argparse.

The import graph is read from the source (module-level and function-level imports alike,
except those under ``if TYPE_CHECKING:``, which never run)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

PACKAGE = Path(__file__).resolve().parent.parent / "s3pput"
MAX_LINES = 450


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_lines(tree: ast.AST) -> Set[int]:
    lines: Set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return lines


def imports_of(path: Path, modules: Set[str]) -> Set[str]:
    """The package modules PATH imports (at run time)."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: Set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> Dict[str, Set[str]]:
    paths = list(PACKAGE.rglob("*.py"))
    modules = {module_name(path) for path in paths}
    return {module_name(path): imports_of(path, modules) for path in paths}


def cycles(edges: Dict[str, Set[str]]) -> List[List[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    found: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in edges.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_among_the_packages_modules():
    edges = graph()
    # a package's __init__ importing its own modules is not a cycle through them
    edges = {node: {other for other in targets if not node.startswith(other + ".")}
             for node, targets in edges.items()}
    assert cycles(edges) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_is_over_450_lines():
    long = {str(path.relative_to(PACKAGE)): count for path in PACKAGE.rglob("*.py")
            if (count := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_python_api_does_not_import_argparse_or_the_command_line():
    edges = graph()
    assert "s3pput.cli" not in edges["s3pput.api"]
    assert "argparse" not in (PACKAGE / "api.py").read_text()
    assert "argparse" not in (PACKAGE / "options.py").read_text()


def test_the_command_line_imports_nothing_that_only_some_runs_need():
    # Each is milliseconds of every run's start: TLS (only HTTPS), tar (only archives),
    # RFC 2822 dates (only date headers), boto3 and Pillow (only when used), Dask.
    only_some = ["ssl", "tarfile", "email.utils", "uuid", "xml.sax.saxutils",
                 "urllib.request", "http.client", "botocore", "boto3", "PIL", "dask"]
    probe = ("import sys, s3pput.cli; "
             f"print([name for name in {only_some!r} if name in sys.modules])")
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                              check=True).stdout.strip()
    assert imported == "[]"
