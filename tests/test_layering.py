"""The import graph of ``src/ragotel`` has no cycle, and the analyzer's parts only import the parts below them."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ANALYZER = "ragotel.analyzer"

# The analyzer's parts from the bottom up, in the order of the data flow: a part may import its own modules and
# the parts of lower rows, never a part of its own row or above.
LAYERS: list[set[str]] = [
    {"vocabulary"},
    {"logfmt", "state", "config"},
    {"windows"},
    {"receive"},
    {"judge"},
    {"notify", "recover"},
    {"alerting"},
    {"api"},
    {"server"},
    {"__main__"},
]
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}
SDK_MODULES_THE_ANALYZER_MAY_IMPORT = {"ragotel.semconv"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SRC.joinpath("ragotel").rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """Every ragotel module ``name`` imports anywhere: top level, inside functions, under TYPE_CHECKING."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target.startswith("ragotel") and target != name:
                yield target


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: set(_imports(name, path, known)) for name, path in modules.items()}


def _part(module: str) -> str | None:
    if not module.startswith(ANALYZER + "."):
        return None
    return module[len(ANALYZER) + 1 :].split(".", maxsplit=1)[0]


def test_no_import_cycle_anywhere_in_src() -> None:
    """No module of ragotel imports, directly or through others, a module that imports it back."""
    graph = _graph()
    done: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            cycles.append([*path[path.index(node) :], node])
            return
        if node in done:
            return
        for child in sorted(graph.get(node, ())):
            visit(child, [*path, node])
        done.add(node)

    for module in sorted(graph):
        visit(module, [])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_every_analyzer_part_is_in_a_layer() -> None:
    """Each module under analyzer/ belongs to a declared part, so the layering below covers all of them."""
    parts = {_part(m) for m in _modules() if m.startswith(ANALYZER + ".")}
    assert parts <= set(RANK), f"undeclared analyzer parts: {sorted(parts - set(RANK))}"


@pytest.mark.parametrize("module", sorted(m for m in _modules() if m.startswith(ANALYZER)))
def test_analyzer_imports_only_downwards(module: str) -> None:
    """An analyzer module imports its own part and the parts below it, and of the SDK only ragotel.semconv."""
    own = _part(module)
    graph = _graph()
    wrong = []
    for target in sorted(graph[module]):
        if target == ANALYZER:
            continue
        part = _part(target)
        if part is None:
            if target not in SDK_MODULES_THE_ANALYZER_MAY_IMPORT:
                wrong.append(f"{target} (the analyzer may import only {sorted(SDK_MODULES_THE_ANALYZER_MAY_IMPORT)})")
        elif own is not None and part != own and RANK[part] >= RANK[own]:
            wrong.append(f"{target} (part {part!r} is not below {own!r})")
    assert not wrong, f"{module} imports upwards: " + "; ".join(wrong)
