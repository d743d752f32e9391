"""The `backend` package's imports point one way: no module and no subpackage import cycle.

The graph is read from the source with `ast`, not by importing. Every `import` of a `backend`
module counts, inside functions too, and so do those under `if TYPE_CHECKING:`: they never run,
but a type one layer needs from a layer above is a dependency all the same (a cycle hidden
behind `TYPE_CHECKING` is still a cycle). Importing `a.b.c` also runs the packages `a` and
`a.b`, so an edge to a module is an edge to each of its parent packages too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.paths import REPO_ROOT

PACKAGE = "backend"
# The serving layers, each above the next: the routes, the WebSocket sessions, the per-frame
# pipeline, the models it calls.
SERVING_LAYERS = ("backend.api", "backend.session", "backend.pipeline", "backend.inference")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """Absolute names of every module `tree` imports (relative imports resolved)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")
                base = parts[: len(parts) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target
            # `from backend.pipeline import multimodal` imports the submodule too.
            yield from (f"{target}.{alias.name}" for alias in node.names)


def with_parents(name: str) -> Iterator[str]:
    parts = name.split(".")
    for end in range(1, len(parts) + 1):
        yield ".".join(parts[:end])


def module_graph() -> dict[str, set[str]]:
    """Module -> the `backend` modules (and their packages) it imports."""
    files = {module_name(path): path for path in sorted((REPO_ROOT / PACKAGE).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        names = imported_names(tree, module, path.name == "__init__.py")
        graph[module] = {
            parent for name in names for parent in with_parents(name) if parent in files
        } - {module}
    return graph


def layer_graph(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same edges between the layers: `backend.<subpackage>` or a top-level module."""

    def layer(module: str) -> str:
        return ".".join(module.split(".")[:2])

    graph: dict[str, set[str]] = {layer(module): set() for module in modules}
    for module, targets in modules.items():
        graph[layer(module)] |= {layer(t) for t in targets if t != PACKAGE}
    graph.pop(PACKAGE, None)
    return {name: targets - {name, PACKAGE} for name, targets in graph.items()}


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every node `start` imports, directly or through others."""
    seen: set[str] = set()
    stack = [start]
    while stack:
        for child in graph.get(stack.pop(), set()) - seen:
            seen.add(child)
            stack.append(child)
    return seen


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path `a -> ... -> a`, or None (iterative depth-first search)."""
    done: set[str] = set()
    for root in sorted(graph):
        if root in done:
            continue
        path, on_path = [root], {root}
        stack = [iter(sorted(graph[root]))]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                stack.pop()
                done.add(path[-1])
                on_path.discard(path.pop())
            elif child in on_path:
                return [*path[path.index(child) :], child]
            elif child not in done:
                path.append(child)
                on_path.add(child)
                stack.append(iter(sorted(graph[child])))
    return None


def test_the_graph_is_read_from_the_source() -> None:
    """The walk sees a known edge, the parent package, relative, guarded and local imports."""
    graph = module_graph()
    assert "backend.api.deps" in graph["backend.api.routes.health"]
    assert "backend.api" in graph["backend.api.routes.health"]
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "from ..other import name\n"
        "if TYPE_CHECKING:\n"
        "    from backend.typed import Thing\n"
        "def later():\n"
        "    import backend.lazy\n"
    )
    names = set(imported_names(tree, "backend.pkg.mod", is_package=False))
    assert {"backend.pkg.sibling", "backend.other.name", "backend.typed", "backend.lazy"} <= names
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_module_of_backend_imports_itself_through_others() -> None:
    cycle = find_cycle(module_graph())
    if cycle:
        pytest.fail("import cycle: " + " -> ".join(cycle))


def test_the_layers_of_backend_point_one_way() -> None:
    """E.g. api -> session -> pipeline -> inference, and nothing below imports back up."""
    cycle = find_cycle(layer_graph(module_graph()))
    if cycle:
        pytest.fail("layer cycle: " + " -> ".join(cycle))


def test_the_serving_layers_import_only_downwards() -> None:
    """api -> session -> pipeline -> inference: each uses the next, none reaches one above."""
    graph = layer_graph(module_graph())
    for index, layer in enumerate(SERVING_LAYERS):
        above = reachable(graph, layer) & set(SERVING_LAYERS[:index])
        assert not above, f"{layer} imports {sorted(above)}, above it"
        below = SERVING_LAYERS[index + 1 : index + 2]
        assert set(below) <= graph[layer], f"{layer} no longer uses {below}"


def test_the_pipeline_calls_models_through_the_detector_interface_only() -> None:
    """No pipeline module reaches the Triton client: the runtime hands it `Detector`s."""
    graph = module_graph()
    reaching = sorted(
        module
        for module in graph
        if module.startswith("backend.pipeline")
        and "backend.inference.triton_models" in reachable(graph, module)
    )
    assert not reaching, f"these reach backend.inference.triton_models: {reaching}"
