"""The layers, read off the code: imaging at the bottom, then the archive, the station, the interfaces.

Each module may import only from its own layer or the layers below it, and the project's modules import
each other without a cycle, counting imports inside functions too (a function-level import must not be
the way a cycle is hidden). The layers are the folders:

| layer | modules |
|---|---|
| imaging | ``workers/`` (stages, pipeline, PDF, external programs, durable files, errors), ``ocr_models/`` |
| base | ``scanner_service/exceptions.py``, ``scanner_service/settings.py`` |
| archive | ``scanner_service/archive/`` |
| station | ``scanner_service/station/`` |
| interfaces | ``scanner_service/api/``, ``scanner_service/cli.py`` |
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("workers", "ocr_models", "scanner_service")
LAYERS = ("imaging", "base", "archive", "station", "interfaces")


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] in ("workers", "ocr_models"):
        return "imaging"
    if len(parts) == 1 or parts[1] in ("exceptions", "settings"):
        return "base"
    if parts[1] in ("archive", "station", "api"):
        return {"api": "interfaces"}.get(parts[1], parts[1])
    if parts[1] in ("cli", "__main__"):
        return "interfaces"
    raise AssertionError(f"{module} is in no layer: put it in a layer's folder, or add it to this test's map")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if "versions" in parts:  # alembic migration scripts are data, loaded by alembic
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module an imported name refers to (a module, or a name inside a module)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> list[tuple[str, int, bool]]:
    """(imported project module, line, inside a function?) for every import statement of ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                names = [f"{base}.{a.name}" for a in child.names]
            for name in names:
                target = _resolve(name)
                if target is not None and target != module:
                    out.append((target, child.lineno, in_function))
            visit(child, nested)

    visit(tree, False)
    return out


GRAPH = {module: imports_of(module) for module in MODULES}


def test_every_module_is_in_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_from_a_higher_layer(module: str) -> None:
    mine = LAYERS.index(layer_of(module))
    wrong = [
        f"{MODULES[module].relative_to(ROOT)}:{line} imports {target} ({layer_of(target)})"
        for target, line, _ in GRAPH[module]
        if LAYERS.index(layer_of(target)) > mine
    ]
    assert not wrong, f"{module} is in the {layer_of(module)} layer, which must not import upwards:\n" + "\n".join(
        wrong
    )


def test_no_import_cycle() -> None:
    # Packages import their own modules in __init__ (re-exports); the edge from a module to its own
    # package is the interpreter's doing, not a dependency, so it is left out.
    edges = {
        m: {t for t, _, _ in GRAPH[m] if not (m.startswith(t + ".") and MODULES[t].name == "__init__.py")}
        for m in MODULES
    }
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                return stack[stack.index(t) :] + [t]
            if t not in state and (cycle := walk(t)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(MODULES):
        if m not in state and (cycle := walk(m)):
            raise AssertionError("import cycle: " + " -> ".join(cycle))
