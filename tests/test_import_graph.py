"""The import graph of the project's packages, read from the source with ast (no import runs):
no module imports itself through others (no cycles, lazy imports inside functions included), and
the kernel (oversight/ outside oversight/app) imports no plugin package (protocols, judges,
trainers) and nothing of the app, so data and dependencies flow one way (docs/DESIGN: layers)."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("oversight", "protocols", "judges", "trainers")
PLUGINS_AND_APP = ("protocols", "judges", "trainers", "oversight.app")
#: edges another change removes; each one named with who removes it
KNOWN: set[tuple[str, str]] = set()
#: the distribution's front door: `import oversight; oversight.run(...)` reaches the notebook API
#: (oversight.app.api) through a lazy module __getattr__, run on first use only; no kernel module
#: calls it, so importing the kernel never imports the app
FRONT_DOOR = {("oversight", "oversight.app.api")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> nx.DiGraph:
    files = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(files)
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
            for target in _targets(node, package):
                found = _resolve(target, files)
                if found and found != name:
                    graph.add_edge(name, found, line=f"{path.relative_to(ROOT)}:{node.lineno}")
    return graph


def _runtime_imports(tree: ast.AST):
    """Every import statement, lazy ones in functions included, except `if TYPE_CHECKING:` blocks."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skip:
            yield node


def _targets(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
        base = ".".join([*parent, *([base] if base else [])])
    # `from pkg import name`: pkg.name if that is a module, else pkg itself (_resolve walks up)
    return [f"{base}.{alias.name}" if alias.name != "*" else base for alias in node.names]


def _resolve(target: str, files: dict[str, Path]) -> str | None:
    """The project module an import names: `pkg.mod.Name` -> `pkg.mod`; outside modules: None."""
    while target:
        if target in files:
            return target
        target = target.rpartition(".")[0]
    return None


def _is_under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_the_import_graph_has_no_cycles():
    graph = import_graph()
    graph.remove_edges_from(KNOWN)
    cycles = [c for c in nx.strongly_connected_components(graph) if len(c) > 1]
    described = []
    for component in cycles:
        sub = graph.subgraph(component)
        described.append("; ".join(f"{u} -> {v} ({sub.edges[u, v]['line']})" for u, v in sub.edges))
    assert not cycles, "import cycles:\n" + "\n".join(described)


def test_the_kernel_imports_no_plugin_and_no_app_module():
    graph = import_graph()
    upward = [f"{u} -> {v} ({graph.edges[u, v]['line']})" for u, v in graph.edges
              if _is_under(u, "oversight") and not _is_under(u, "oversight.app") and (u, v) not in KNOWN | FRONT_DOOR
              and any(_is_under(v, p) for p in PLUGINS_AND_APP)]
    assert not upward, "kernel modules importing plugins or the app:\n" + "\n".join(upward)


def test_the_graph_reader_sees_real_edges():
    # the checks above pass trivially if the reader finds nothing: it must see known arrows
    graph = import_graph()
    assert graph.has_edge("oversight.app.cli", "oversight.app.sweep")
    assert graph.has_edge("trainers.rrm", "oversight.plugins")
    assert graph.has_edge("oversight.app.report", "oversight.app.compare")  # a lazy import inside a function
    assert len(graph) > 60 and graph.number_of_edges() > 150
