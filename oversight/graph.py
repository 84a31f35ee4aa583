"""Call graphs: one networkx DiGraph per question.

Nodes are model calls (role, model, the Call, its result) or deterministic steps (quote
verification, aggregation). An edge u -> v means u's output appears in v's input. Graphs grow while
they run: a node is added when a protocol makes a call, so a decomposition tree appears as it is
expanded. Every graph is saved with its record (node-link JSON) and can be drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import networkx as nx


class CallGraph:
    def __init__(self, question_id: str):
        self.question_id = question_id
        self.g = nx.DiGraph(question_id=question_id)
        self._counter = 0

    def add_node(self, kind: str, label: str, deps: Iterable[str] = (), **attrs: Any) -> str:
        node_id = f"{self._counter}:{label}"
        self._counter += 1
        self.g.add_node(node_id, kind=kind, label=label, **attrs)
        for dep in deps:
            if dep not in self.g:
                raise KeyError(f"graph {self.question_id}: dependency {dep!r} of {node_id!r} does not exist")
            self.g.add_edge(dep, node_id)
        return node_id

    def set(self, node_id: str, **attrs: Any) -> None:
        self.g.nodes[node_id].update(attrs)

    def nodes(self, kind: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        return [(n, d) for n, d in self.g.nodes(data=True) if kind is None or d.get("kind") == kind]

    def to_json(self) -> dict[str, Any]:
        return nx.node_link_data(self.g, edges="edges")

    @staticmethod
    def from_json(data: dict[str, Any]) -> nx.DiGraph:
        return nx.node_link_graph(data, edges="edges")


def call_costs(graphs: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Model calls and tokens in saved graphs (node-link JSON), whether a backend or the call cache
    answered them: what a protocol costs, independent of what happened to be cached. `judge_calls`
    are the calls labelled "judge"; the rest are the protocol's own."""
    totals = {"calls": 0, "judge_calls": 0, "prompt_tokens": 0, "output_tokens": 0}
    for graph in graphs:
        for node in graph.get("nodes", ()):
            if node.get("kind") != "call":
                continue
            out = node.get("output") or {}
            totals["calls"] += 1
            totals["judge_calls"] += node.get("label") == "judge"
            totals["prompt_tokens"] += out.get("prompt_tokens", 0)
            totals["output_tokens"] += out.get("output_tokens", 0)
    return totals


def draw(graph: nx.DiGraph | dict[str, Any], path: str | Path) -> Path:
    """Draw a call graph (from a record's `graph` field or a DiGraph) to an image file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = CallGraph.from_json(graph) if isinstance(graph, dict) else graph
    try:
        layers = {n: len(nx.ancestors(g, n)) for n in g}
        for n, depth in layers.items():
            g.nodes[n]["layer"] = depth
        pos = nx.multipartite_layout(g, subset_key="layer", align="horizontal")
        pos = {n: (x, -y) for n, (x, y) in pos.items()}
    except Exception:  # cycles cannot occur, but a custom graph may be odd; fall back to spring
        pos = nx.spring_layout(g, seed=0)
    fig, ax = plt.subplots(figsize=(max(6, len(g) * 0.6), 5))
    colors = ["#8fbcd4" if d.get("kind") == "call" else "#d9d98c" for _, d in g.nodes(data=True)]
    labels = {n: f"{d.get('role', d.get('label', n))}" for n, d in g.nodes(data=True)}
    nx.draw_networkx(g, pos=pos, ax=ax, node_color=colors, labels=labels, font_size=7, node_size=900)
    ax.set_axis_off()
    path = Path(path)
    fig.savefig(path, bbox_inches="tight", dpi=120)
    plt.close(fig)
    return path
