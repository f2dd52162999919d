"""The package's structure: no import cycles between recjob's modules, no module importing a package above it
(each shared name lives in a module of its own, e.g. recjob.names), and stages never import each other."""
import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "recjob"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _resolve(name: str, modules: dict) -> str | None:
    """The recjob module an imported name lands in (a module, or the package that defines the name)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """Module -> the recjob modules it imports anywhere in its text (TYPE_CHECKING and function bodies too)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        edges = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                if target.startswith("recjob"):
                    found = _resolve(target, modules)
                    if found and found != name:
                        edges.add(found)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert _cycles(import_graph()) == []


def test_no_module_imports_a_package_above_it():
    upward = [(m, t) for m, targets in import_graph().items() for t in targets if m.startswith(t + ".")]
    assert upward == []


def test_stages_never_import_each_other():
    graph = import_graph()
    stages = {m for m in graph if m.startswith("recjob.stages.")}
    assert [(m, t) for m in stages for t in graph[m] if t in stages] == []


def test_the_checker_finds_a_cycle_and_an_upward_import():
    """The checks above can fail: a planted cycle and an upward import are found."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = import_graph()
    assert "recjob.names" in graph["recjob.cli"] and "recjob.models.base" in graph["recjob.models.softmax"]
