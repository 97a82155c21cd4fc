"""Regular expressions compiled when the bundle is built, for a start that renders.

Importing Jinja2 and PyYAML compiles some 45 regular expressions, and the ``re`` module
compiles in Python: 8 ms of every start that renders (one with an override, a ConfigMap
or a template read at start). What ``re.compile`` computes from a pattern and its flags is
plain data (the ``_sre`` code, groups and group names), so the bundle's build records it
(:func:`record`, in the run that probes the modules to bundle) next to this module, and a
start that renders puts the ready patterns in ``re``'s own cache (:func:`install`) before
importing anything: ``re.compile`` then finds them there.

This uses ``re``'s internals (``re._cache``, ``re._parser``, ``re._compiler``,
``_sre.compile``), which change between Python versions: the file is used only by the
interpreter that wrote it (same ``sys.version``, same stdlib, since the bundle is made from
it), and any surprise means compiling as usual.
"""

from __future__ import annotations

import marshal
import os
import sys

FILE_NAME = "regexes.marshal"


def install(path: str | None = None) -> int:
    """Put the recorded patterns in ``re``'s cache; return how many (0 without a file
    written by this interpreter, e.g. outside a bundle)."""
    path = path or os.path.join(os.path.dirname(__file__), FILE_NAME)
    try:
        with open(path, "rb") as file:
            version, patterns = marshal.load(file)
        if version != sys.version:
            return 0
        import _sre  # type: ignore[import-not-found]
        import re

        cache = re._cache  # type: ignore[attr-defined]
        for pattern, flags, final_flags, code, groups, group_index, index_group in patterns:
            cache[type(pattern), pattern, flags] = _sre.compile(
                pattern, final_flags, code, groups, group_index, index_group
            )
        return len(patterns)
    except Exception:  # noqa: BLE001 - no file, or not ours: compile as usual
        return 0


def record(path: str) -> int:
    """Write what ``re``'s cache holds now (every pattern compiled so far) to path, in
    compilation order; return how many. As ``re._compiler.compile`` computes it."""
    import re
    from re import _compiler, _parser  # type: ignore[attr-defined]

    patterns = []
    for kind, pattern, flags in list(re._cache):  # type: ignore[attr-defined]
        if kind is not str and kind is not bytes:
            continue
        parsed = _parser.parse(pattern, flags)
        code = [int(op) for op in _compiler._code(parsed, flags)]
        group_index = dict(parsed.state.groupdict)
        index_group: list[str | None] = [None] * parsed.state.groups
        for name, index in group_index.items():
            index_group[index] = name
        final_flags = int(flags | parsed.state.flags)
        patterns.append(
            (
                pattern,
                int(flags),
                final_flags,
                code,
                parsed.state.groups - 1,
                group_index,
                tuple(index_group),
            )
        )
    with open(path, "wb") as file:
        file.write(marshal.dumps((sys.version, patterns), 2))
    return len(patterns)
