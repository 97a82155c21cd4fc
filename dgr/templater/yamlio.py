"""YAML as attribute files and `.cfg` files read it: one loader, and what the build parsed.

Below both dgr.templater.attributes and the templater's renderer and functions, which all
read YAML with it. Imported at every container start that renders: it imports nothing until used
(PyYAML is loaded only for a document the build has not parsed already).
"""

from __future__ import annotations

import functools
from typing import Any

KNOWN_DOCUMENTS: dict[str, bytes] = {}
"""YAML documents parsed at build time: text → marshal of :func:`parse_yaml`'s value. Filled
by the templater at container start from its prepared file (dgr.templater.prepared), so that
PyYAML is imported only for a document it has not seen (an attribute file written at start,
a ConfigMap); empty anywhere else."""


@functools.cache
def yaml_loader() -> Any:
    """The attribute files' YAML loader: safe YAML 1.1 with three changes that suit
    configuration values (built on first use: PyYAML is imported only when needed).

    * Map keys are always strings, taken as written (``80:`` is "80", ``on:`` is "on"), so a
      YAML key and the same key in a JSON override merge, and templates can name them.
    * Dates stay strings (as in the original tool): ``2024-01-01`` prints as written.
    * ``10:20`` is a string, not the base-60 number 620.
    """
    import re

    import yaml

    class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[str, Any]:
            self.flatten_mapping(node)  # honours "<<: *anchor" merge keys
            mapping: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise yaml.constructor.ConstructorError(
                        None, None, "map keys must be plain strings or numbers", key_node.start_mark
                    )
                mapping[key_node.value] = self.construct_object(value_node, deep=deep)
            return mapping

    Loader.add_constructor(
        "tag:yaml.org,2002:map", lambda loader, node: loader.construct_mapping(node, deep=True)
    )
    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    for tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
        # Re-register numbers without the YAML 1.1 base-60 forms ("10:20" → 620).
        for first in list(Loader.yaml_implicit_resolvers):
            Loader.yaml_implicit_resolvers[first] = [
                (t, r) for t, r in Loader.yaml_implicit_resolvers[first] if t != tag
            ]
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:int",
        re.compile(
            r"""^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$""", re.X
        ),
        list("-+0123456789"),
    )
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(
            r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
            |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""",
            re.X,
        ),
        list("-+0123456789."),
    )
    return Loader


def parse_yaml(text: str) -> Any:
    """Parse one YAML document with the attribute loader; raises yaml.YAMLError."""
    known = KNOWN_DOCUMENTS.get(text)
    if known is not None:
        import marshal

        return marshal.loads(known)
    import yaml

    return yaml.load(text, Loader=yaml_loader())  # noqa: S506 - a SafeLoader
