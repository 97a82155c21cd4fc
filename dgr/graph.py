"""`dgr graph`: the dependency graph of an image as Graphviz dot (and png when `dot` exists).

Edges as in the original: aci dependencies in black, builder dependencies red, tester
builder dependencies green, tester aci dependencies blue. Names keep their version.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from dgr.manifest import Manifest
from dgr.names import ImageName
from dgr.process import run
from dgr.reference import OciReference

EDGE_STYLES = (
    ("aci", ""),
    ("builder", "[color=red,penwidth=2.0]"),
    ("tester builder", "[color=green,penwidth=2.0]"),
    ("tester", "[color=blue,penwidth=2.0]"),
)


def _node(name: ImageName | OciReference) -> str:
    if isinstance(name, OciReference):
        return str(name)
    return f"{name.tiny_name}:{name.version}" if name.version else name.tiny_name


def graph_dot(manifest: Manifest) -> str:
    """The dot text of `manifest`'s dependencies."""
    groups = {
        "aci": manifest.aci.dependencies,
        "builder": manifest.builder.dependencies,
        "tester builder": manifest.tester.builder.dependencies,
        "tester": manifest.tester.dependencies,
    }
    me = _node(manifest.name)
    lines = ["digraph {"]
    for kind, style in EDGE_STYLES:
        for dep in groups[kind]:
            lines.append(f'  "{_node(dep)}" -> "{me}"{style}')
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_graph(manifest: Manifest, target: Path) -> list[Path]:
    """Write `target/graph.dot`, and `graph.png` when Graphviz is installed."""
    target.mkdir(parents=True, exist_ok=True)
    dot_file = target / "graph.dot"
    dot_file.write_text(graph_dot(manifest))
    written = [dot_file]
    if shutil.which("dot"):
        png = target / "graph.png"
        run(["dot", "-Tpng", str(dot_file), "-o", str(png)], what="dot (graphviz)")
        written.append(png)
    return written
