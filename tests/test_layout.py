"""The package's shape, checked so it stays readable as it grows: the root holds only flow
packages, no module imports in a circle, no module or function grows past what one reads
in a sitting (docs/architecture.md)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pipeline"
FLOW = [
    "config",
    "corpus",
    "prompts",
    "personas",
    "generation",
    "quality",
    "dedup",
    "negatives",
    "teacher",
    "dataset",
    "executors",
    "run",
    "embedding",
    "adapt",
    "selection",
    "export",
    "models",
    "cli",
]
MAX_MODULE_LINES = 420
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(path: Path) -> set[str]:
    """The package modules `path` imports when it is imported (not in functions, not
    for annotations only)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for inner in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
            if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("pipeline"):
                found.add(inner.module or "")
            elif isinstance(inner, ast.Import):
                found.update(a.name for a in inner.names if a.name.startswith("pipeline"))
    return found


def test_the_root_holds_only_the_flow_packages() -> None:
    entries = {p.name for p in PACKAGE.iterdir() if p.name != "__pycache__"}
    assert entries - {"__init__.py", "data"} == set(FLOW)


def test_no_module_imports_in_a_circle() -> None:
    modules = _modules()
    graph = {name: _imports(path) & modules.keys() for name, path in modules.items()}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError(" -> ".join([*path[path.index(name) :], name]))
        if name in done:
            return
        for dep in sorted(graph[name]):
            visit(dep, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_modules_and_functions_stay_readable() -> None:
    too_long = []
    for name, path in sorted(_modules().items()):
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}.{node.name}: {lines} lines")
    assert not too_long


def test_no_two_classes_share_a_name() -> None:
    seen: dict[str, str] = {}
    repeated = []
    for name, path in sorted(_modules().items()):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                if node.name in seen:
                    repeated.append(f"{node.name}: {seen[node.name]} and {name}")
                seen.setdefault(node.name, name)
    assert not repeated
