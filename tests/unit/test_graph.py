from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dgr.graph import graph_dot, write_graph
from dgr.manifest_reader import parse_manifest

TEXT = """
name: example.com/aci-app:2
builder: {dependencies: [example.com/aci-builder:1]}
tester:
  builder: {dependencies: [example.com/tester-tools]}
  aci: {dependencies: [example.com/aci-curl:3]}
aci: {dependencies: [example.com/aci-base:1, example.com/aci-java]}
"""


def test_graph_edges_and_colours() -> None:
    dot = graph_dot(parse_manifest(TEXT, Path("aci-manifest.yml")))
    assert dot == (
        "digraph {\n"
        '  "aci-base:1" -> "aci-app:2"\n'
        '  "aci-java" -> "aci-app:2"\n'
        '  "aci-builder:1" -> "aci-app:2"[color=red,penwidth=2.0]\n'
        '  "tester-tools" -> "aci-app:2"[color=green,penwidth=2.0]\n'
        '  "aci-curl:3" -> "aci-app:2"[color=blue,penwidth=2.0]\n'
        "}\n"
    )


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz not installed")
def test_png_written_when_dot_exists(tmp_path: Path) -> None:
    written = write_graph(parse_manifest(TEXT, Path("aci-manifest.yml")), tmp_path)
    assert [p.name for p in written] == ["graph.dot", "graph.png"]
    assert (tmp_path / "graph.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
