"""The package's folders are its parts, and imports run one way through them: data, methods,
store, trial, report, sweep (each may import those before it, never one after), with the
shared configuration (`config`, `arguments`, `errors`) beside them all and `cli` on top; no
import cycle among modules; no module over 320 lines."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "novelty"
PARTS = ("data", "methods", "store", "trial", "report", "sweep")
SHARED = {"novelty", "novelty.config", "novelty.arguments", "novelty.errors"}
# the registries the shared configuration reads (torch-free): the datasets' and the methods' names
REGISTRIES = {"novelty.data.datasets", "novelty.methods", "novelty.methods.params"}
TOP = {"novelty.cli", "novelty.grid", "novelty.launch"}  # the CLI; the import paths sweep files use


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    """Whether `name` (novelty.x.y) is a module or package of ours (`from . import methods`)."""
    path = PACKAGE.parent / name.replace(".", "/")
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def imports(path: Path, top_level_only: bool) -> set[str]:
    """The novelty modules `path` imports (relative imports resolved), anywhere in it or at its top level."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    out = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("novelty"):
                out.add(target)
                out.update(f"{target}.{a.name}" for a in node.names if is_module(f"{target}.{a.name}"))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("novelty"))
    return out


def part(module: str) -> str:
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 and pieces[1] in PARTS else ""


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def test_the_package_is_its_parts():
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == set(PARTS)
    loose = {m for m in MODULES if m.count(".") == 1 and not part(m)}
    assert loose == (SHARED | TOP) - {"novelty"}, loose


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_one_way(module):
    mine = part(module)
    for target in imports(MODULES[module], top_level_only=False):
        if module in TOP or target in SHARED:
            continue
        if module in SHARED:
            assert target in REGISTRIES, f"{module} (shared) imports {target}"
            continue
        theirs = part(target)
        assert theirs, f"{module} imports {target}, which belongs to no part"
        assert PARTS.index(theirs) <= PARTS.index(mine), \
            f"{module} ({mine}) imports {target} ({theirs}): a part may import only the parts before it"


def test_no_import_cycles():
    graph = {m: {t for t in imports(p, top_level_only=True) if t in MODULES and t != m} for m, p in MODULES.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in graph[m]:
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(t):] + [t]))
            if not state.get(t):
                visit(t, path + [t])
        state[m] = 2

    for m in graph:
        if not state.get(m):
            visit(m, [m])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_320_lines(module):
    assert len(MODULES[module].read_text().splitlines()) <= 320
