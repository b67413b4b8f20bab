"""The project's import graph: imports flow pik -> consumers/producers -> infra -> schemas, and
no two modules import each other (directly or round a longer loop), not even from inside a
function."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RANK = {"schemas": 0, "infra": 1, "consumers": 2, "producers": 2, "pik": 3}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for package in RANK for p in sorted((ROOT / package).rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The project module ``name`` refers to (``pik.kit.Kit`` -> ``pik.kit``), if any."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(
    path: Path, *, module_level: bool, type_checking: bool = False
) -> Iterator[tuple[int, str]]:
    """(line, project module) for each import, skipping ``if TYPE_CHECKING:`` blocks unless
    ``type_checking``; with ``module_level``, only those that run when the module is imported."""

    def visit(node: ast.AST, top: bool) -> Iterator[tuple[int, str]]:
        for child in ast.iter_child_nodes(node):
            if (
                not type_checking
                and isinstance(child, ast.If)
                and "TYPE_CHECKING" in ast.unparse(child.test)
            ):
                continue
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                names = [child.module, *(f"{child.module}.{a.name}" for a in child.names)]
            if names and (top or not module_level):
                for name in names:
                    if name.split(".")[0] in RANK and (target := _resolve(name)):
                        yield child.lineno, target
            inner = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            yield from visit(child, top and not inner)

    yield from visit(ast.parse(path.read_text()), True)


def test_the_walk_sees_the_project() -> None:
    assert {"pik.kit", "consumers.ingest", "infra.errors", "schemas.envelope"} <= set(MODULES)
    lines = dict(_imports(MODULES["consumers.ingest"], module_level=True))
    assert "schemas.codec" in lines.values()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_flow_downward(module: str) -> None:
    layer = module.split(".")[0]
    upward = sorted(
        {
            f"line {line}: {target}"
            for line, target in _imports(MODULES[module], module_level=False)
            if RANK[target.split(".")[0]] > RANK[layer]
            or (RANK[target.split(".")[0]] == RANK[layer] and target.split(".")[0] != layer)
        }
    )
    assert not upward, f"{module} imports above its layer: {upward}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
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


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_module_level_import_cycle() -> None:
    graph = {
        module: {t for _, t in _imports(path, module_level=True)} - {module}
        for module, path in MODULES.items()
    }
    assert _cycles(graph) == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if RANK[m.split(".")[0]] > 1))
def test_nothing_above_infra_imports_the_aws_sdk(module: str) -> None:
    sdk = [
        f"line {node.lineno}"
        for node in ast.walk(ast.parse(MODULES[module].read_text()))
        if (isinstance(node, ast.Import) and any(a.name.split(".")[0] in _SDK for a in node.names))
        or (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in _SDK)
    ]
    assert not sdk, f"{module} imports boto3/botocore ({sdk}): translate in infra/"


_SDK = {"boto3", "botocore"}


def test_no_import_cycle_even_through_function_local_or_type_checking_imports() -> None:
    graph = {
        module: {t for _, t in _imports(path, module_level=False, type_checking=True)} - {module}
        for module, path in MODULES.items()
    }
    assert _cycles(graph) == []
