"""Mermaid text for a flow graph (``alora-flows draw``), pasteable into GitHub markdown.

Node ids are prefixed (``n_answer``) because mermaid reserves words such as ``end``; labels are
quoted and ``"``/``<``/``>`` escaped as mermaid entities so conditions like ``score < 0.4`` render.
"""

from __future__ import annotations

import networkx as nx

from alora_flows.flow.spec import END, START


def _escape(text: str) -> str:
    return (
        text.replace("&", "#amp;")
        .replace('"', "#quot;")
        .replace("<", "#lt;")
        .replace(">", "#gt;")
        .replace("\n", " ")
    )


def _node_id(name: str) -> str:
    if name in (START, END):
        return name
    return "n_" + "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def to_mermaid(graph: nx.DiGraph) -> str:
    """``flowchart TD`` text: one line per node (shape by kind) and per edge (condition label)."""
    lines = ["flowchart TD", f"    {START}([START])", f"    {END}([END])"]
    for name, data in graph.nodes(data=True):
        if name in (START, END):
            continue
        kind = data.get("kind", "")
        detail = data.get("detail") or ""
        label = f"{name}<br/><i>{kind}{': ' + _escape(detail) if detail else ''}</i>"
        outputs = data.get("outputs") or []
        if outputs:
            label += f"<br/>→ {_escape(', '.join(outputs))}"
        left, right = data.get("shape") or ('["', '"]')  # the node kind's own shape
        lines.append(f"    {_node_id(name)}{left}{label}{right}")
    edges = sorted(
        graph.edges(data=True), key=lambda e: (list(graph.nodes).index(e[0]), e[2].get("order", 0))
    )
    for frm, to, data in edges:
        label = data.get("label") or ""
        arrow = f'-->|"{_escape(label)}"|' if label else "-->"
        lines.append(f"    {_node_id(frm)} {arrow} {_node_id(to)}")
    return "\n".join(lines) + "\n"
