"""Attributes: collecting attribute files, merging them, overriding and resolving them.

An attribute file is a ``*.yml``/``*.yaml`` file whose top level is a map with a ``default:``
and an optional ``override:`` map (other root keys are ignored). The tree a template sees is,
lowest precedence first: every file's ``default`` in file order, every file's ``override`` in
file order, then the JSON object of the environment override. Maps merge key by key; any other
value (a list too) replaces the earlier one. Finally string values that are templates
(``"{{ dns.nameservers[0] }}"``) are rendered against the whole tree.

File order inside an image comes from ``/dgr/attributes/.dgr-order`` (written by the build,
see :func:`write_order_file`), so which layer wins never depends on how images are named.

Imported at every container start that renders: stdlib only; PyYAML is loaded only for a
document the build has not parsed already (see dgr.templater.yamlio), Jinja2 only when an
attribute value is a template.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dgr.errors import AttributesError
from dgr.templater.yamlio import parse_yaml

ORDER_FILE = ".dgr-order"
"""Name of the file, at the top of an attributes folder, that lists files in precedence order."""

OVERRIDE_VAR = "TEMPLATER_OVERRIDE"
"""Default environment variable holding the JSON override (``<VAR>_BASE64`` holds base64)."""

ATTRIBUTE_SUFFIXES = (".yml", ".yaml")
_TEMPLATE_MARKERS = ("{{", "{%")

Tree = dict[str, Any]

# --- collecting files ------------------------------------------------------------------------------


def collect_attribute_files(root: Path) -> list[Path]:
    """Attribute files under root, lowest precedence first; [] when root does not exist.

    Order: when ``root/.dgr-order`` exists, the files it lists (in its order), then every
    other attribute file (those written at container start) in path order. Without it, path
    order (depth first, names sorted at every level).

    Entries whose name starts with ``..`` are skipped and symlinks are followed, so a
    Kubernetes ConfigMap mount (``..2024_01_01/x.yml``, ``..data -> ..2024_01_01``,
    ``x.yml -> ..data/x.yml``) contributes each file once, at any depth.
    """
    found = sorted(_walk(root, root, set()), key=lambda p: p.relative_to(root).parts)
    order_file = root / ORDER_FILE
    if not order_file.is_file():
        return found
    by_rel = {p.relative_to(root).as_posix(): p for p in found}
    listed: list[Path] = []
    for rel in read_order_file(root):
        path = by_rel.pop(rel, None)
        if path is not None:  # a listed file may be gone; nothing to merge then
            listed.append(path)
    return listed + [p for p in found if p.relative_to(root).as_posix() in by_rel]


def _walk(root: Path, folder: Path, seen: set[tuple[int, int]]) -> Iterable[Path]:
    try:
        info = folder.stat()
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise AttributesError(f"cannot read attribute folder: {exc.strerror}", path=folder) from None
    if (info.st_dev, info.st_ino) in seen:  # a symlink loop
        return
    seen = seen | {(info.st_dev, info.st_ino)}
    for entry in entries:
        if entry.name.startswith(".."):
            continue
        path = folder / entry.name
        if entry.is_dir():  # follows symlinks
            yield from _walk(root, path, seen)
        elif entry.name.endswith(ATTRIBUTE_SUFFIXES) and entry.is_file():
            yield path


def read_order_file(root: Path) -> list[str]:
    """The relative paths listed in ``root/.dgr-order`` (lowest precedence first); [] when
    there is no such file. Blank lines and ``#`` comments are ignored."""
    try:
        lines = (root / ORDER_FILE).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def write_order_file(root: Path, files: Sequence[Path | str]) -> Path:
    """Write ``root/.dgr-order`` listing files (lowest precedence first); return its path.

    files are paths under root, absolute or relative to it. The build calls this with
    dependencies' files first, then the image's own, then the pod's.
    """
    lines = []
    for file in files:
        path = Path(file)
        rel = path.relative_to(root) if path.is_absolute() else path
        if rel.is_absolute() or ".." in rel.parts:
            raise AttributesError(f"attribute file {file} is not under {root}")
        lines.append(rel.as_posix())
    target = root / ORDER_FILE
    tmp = target.with_name(ORDER_FILE + ".tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    tmp.replace(target)
    return target


# --- loading and merging ------------------------------------------------------------------------


def merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> Tree:
    """A new map: base with top merged in. Maps merge recursively; anything else in top
    (lists, scalars, null) replaces. Neither argument is modified."""
    result = dict(base)
    for key, value in top.items():
        current = result.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            result[key] = merge(current, value)
        else:
            result[key] = value
    return result


def read_attribute_file(path: Path) -> tuple[Tree | None, Tree | None]:
    """The ``default`` and ``override`` maps of one file (None when absent, null or empty).

    Bad YAML, a top level that is not a map, or a ``default``/``override`` that is not a map
    is an :class:`AttributesError` naming the file (and line when YAML knows it).
    """
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise AttributesError(f"invalid YAML: {exc}", path=path) from None
    except OSError as exc:
        raise AttributesError(f"cannot read attribute file: {exc.strerror}", path=path) from None
    except Exception as exc:
        import yaml  # loaded: the text was parsed

        if isinstance(exc, yaml.MarkedYAMLError):
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            message = f"invalid YAML: {exc.problem or exc.context}"
            raise AttributesError(message, path=path, line=line) from None
        if isinstance(exc, yaml.YAMLError):
            raise AttributesError(f"invalid YAML: {exc}", path=path) from None
        raise
    if data is None:
        return None, None
    if not isinstance(data, dict):
        raise AttributesError(
            f"the top level must be a map with 'default:' (and 'override:'), not {_describe(data)}",
            path=path,
        )
    return _section(data, "default", path), _section(data, "override", path)


def _section(data: Mapping[str, Any], key: str, path: Path) -> Tree | None:
    value = data.get(key)
    if value is None:  # "default:" left empty: nothing to merge (the original wiped everything)
        return None
    if not isinstance(value, dict):
        raise AttributesError(f"'{key}:' must be a map, not {_describe(value)}", path=path, key=key)
    return value


def _describe(value: Any) -> str:
    kinds = {list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return kinds.get(type(value), type(value).__name__)


def merge_files(files: Iterable[Path]) -> Tree:
    """Every file's defaults merged in order, then every file's overrides on top."""
    defaults: Tree = {}
    overrides: Tree = {}
    for path in files:
        default, override = read_attribute_file(path)
        if default is not None:
            defaults = merge(defaults, default)
        if override is not None:
            overrides = merge(overrides, override)
    return merge(defaults, overrides)


def env_override(env: Mapping[str, str], var: str | None = None) -> Tree | None:
    """The attribute map given in the environment, or None.

    Without var: ``TEMPLATER_OVERRIDE_BASE64`` when non-empty, else ``TEMPLATER_OVERRIDE``.
    With var: ``<var>_BASE64`` when non-empty, else ``<var>`` (a var ending in ``_BASE64`` is
    read as base64). A ``*_BASE64`` variable holds base64 of the JSON, with or without a
    ``base64,`` prefix; the plain one holds JSON, or ``base64,`` + base64 (as the original).
    The JSON must be an object; anything else is an :class:`AttributesError` naming the
    variable.
    """
    var = var or OVERRIDE_VAR
    candidates = [var] if var.endswith("_BASE64") else [var + "_BASE64", var]
    for name in candidates:
        raw = env.get(name, "")
        if raw.strip():
            return _parse_override(name, raw.strip(), encoded=name.endswith("_BASE64"))
    return None


def _parse_override(name: str, raw: str, *, encoded: bool) -> Tree:
    if raw.startswith("base64,"):
        raw, encoded = raw[len("base64,") :], True
    if encoded:
        import base64
        import binascii

        try:
            raw = base64.b64decode("".join(raw.split()), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise AttributesError(f"${name} is not valid base64 of UTF-8 JSON: {exc}") from None
    import json

    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise AttributesError(f"${name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise AttributesError(f"${name} must hold a JSON object ({{...}}), not {_describe(value)}")
    return value


def load_attributes(
    files: Iterable[Path],
    env: Mapping[str, str] | None = None,
    *,
    override_var: str | None = None,
    resolve: bool = True,
) -> Tree:
    """The attribute tree templates see: files merged (see :func:`merge_files`), the
    environment override on top (see :func:`env_override`; env defaults to os.environ),
    then attribute templates resolved (see :func:`resolve_attribute_templates`)."""
    tree = merge_files(files)
    override = env_override(os.environ if env is None else env, override_var)
    if override is not None:
        tree = merge(tree, override)
    return resolve_attribute_templates(tree) if resolve else tree


# --- attribute templates ------------------------------------------------------------------------

Path_ = tuple[str | int, ...]


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and any(marker in value for marker in _TEMPLATE_MARKERS)


def _with_pending(value: Any, path: Path_, sources: dict[Path_, str]) -> Any:
    """A copy of value where each template string is a Pending placeholder (noted in sources)."""
    from dgr.templater.values import Pending

    if _is_template(value):
        sources[path] = value
        return Pending(path)
    if isinstance(value, dict):
        return {k: _with_pending(v, (*path, k), sources) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_pending(v, (*path, i), sources) for i, v in enumerate(value)]
    return value


def attribute_templates(value: Any) -> list[str]:
    """Every string of value (a tree, list or scalar) that is an attribute template."""
    if isinstance(value, dict):
        return [source for v in value.values() for source in attribute_templates(v)]
    if isinstance(value, list):
        return [source for v in value for source in attribute_templates(v)]
    return [value] if _is_template(value) else []


def _has_template(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_has_template(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_template(v) for v in value)
    return _is_template(value)


def format_key(path: Path_) -> str:
    """``("dns", "servers", 0)`` → ``dns.servers[0]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def resolve_attribute_templates(tree: Tree, *, rendered: list[str] | None = None) -> Tree:
    """A copy of tree where every string value holding ``{{``/``{%`` is rendered.

    The context is the whole tree (top-level keys as variables, and ``attrs`` for the tree
    itself). A template that uses another templated value gets it rendered first, on demand,
    so chains of any length work; a cycle is an :class:`AttributesError` naming its keys.
    A rendered value is read back as YAML when that gives a number, boolean, list or map
    (``"{{ 3 * 3 }}"`` → 9); otherwise it stays the rendered string. Output is not rendered
    again, so ``{% raw %}`` can put a literal ``{{`` in a value. Keys are never rendered.
    `rendered`, when given, receives every rendered text (the build notes them, see
    dgr.templater.yamlio.KNOWN_DOCUMENTS).
    """
    if not _has_template(tree):
        return tree
    from dgr.templater.render import AttributeRenderer

    sources: dict[Path_, str] = {}
    work: Tree = _with_pending(tree, (), sources)
    renderer = AttributeRenderer(work)
    for path in sources:
        _resolve(path, work, sources, renderer, [], rendered)
    return work


def _resolve(
    path: Path_,
    work: Tree,
    sources: dict[Path_, str],
    renderer: Any,
    stack: list[Path_],
    rendered: list[str] | None = None,
) -> None:
    from dgr.templater.values import NeedsResolution, Pending

    if not isinstance(_get(work, path), Pending):
        return  # already resolved as another value's dependency
    stack.append(path)
    while True:
        try:
            text = renderer.render(sources[path], key=format_key(path))
            break
        except NeedsResolution as need:
            if need.path in stack:
                cycle = [*stack[stack.index(need.path) :], need.path]
                raise AttributesError(
                    "attribute templates refer to each other in a cycle: "
                    + " -> ".join(format_key(p) for p in cycle),
                    key=format_key(need.path),
                ) from None
            _resolve(need.path, work, sources, renderer, stack, rendered)
    stack.pop()
    if rendered is not None:
        rendered.append(text)
    _set(work, path, _read_back(sources[path], text))


def _read_back(source: str, text: str) -> Any:
    """The value of a rendered attribute: YAML when that yields a non-string value."""
    if text == source or not text.strip():
        return text
    try:
        value = parse_yaml(text)
    except Exception as exc:
        import yaml  # loaded: the text was parsed

        if isinstance(exc, yaml.YAMLError):
            return text
        raise
    if isinstance(value, str) or (value is None and text.strip() not in ("null", "~", "Null", "NULL")):
        return text  # keep "#fff", "a: b c" and friends exactly as rendered
    return value


def _get(tree: Any, path: Path_) -> Any:
    for part in path:
        tree = tree[part]
    return tree


def _set(tree: Any, path: Path_, value: Any) -> None:
    _get(tree, path[:-1])[path[-1]] = value
