"""Prepared runs: the templater's work done when the image is built, checked at start.

What a container start writes depends only on the files under ``/dgr/attributes`` and
``/dgr/templates`` and on the override variables — unless a template asks for the
environment, the clock or chance (:data:`~dgr.templater.functions.START_TIME_NAMES`). So
the build renders the image's templates once, the way a start would without an override
(:func:`prepare`), and stores the outputs in ``/dgr/templater.prepared`` together with an
exact copy of what they were rendered from: every path, mode and byte under
``attributes/`` and ``templates/``. At start, :func:`run_prepared` reads the same tree
again; when it is identical, no override is set and the file was made for this very
templater (same Python, same bundle), it writes the stored outputs through the same code
as a normal run (``output.write_outputs``: same files, modes, checkCmd, errors). Anything
else — an attribute file a prestart-early script or a ConfigMap added, a changed template,
an override, a symlink, trace logging — and the run renders as usual.

The start-time half imports only modules Python has loaded anyway, plus ``marshal``
(built in): no Jinja2, PyYAML, pathlib or typing, which together cost ten times the rest of
a start (docs/internals.md). A start that renders still takes what the build computed:
templates compiled, YAML parsed, ``.cfg`` options read (:func:`use_compiled`). The file is
marshal format 2, which has no back-references, so the same inputs always give the same
bytes.
"""

from __future__ import annotations

import marshal
import os
import stat
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path
    from types import CodeType
    from typing import Any

    from jinja2 import Environment, nodes

    from dgr.templater.output import Output

FORMAT = 1
FILE_NAME = "templater.prepared"
"""The prepared run of DIR is DIR/templater.prepared (``/dgr/templater.prepared``)."""
IDENTITY_FILE = "identity"
"""A file next to this module, in the bundle only: the bundle's cache key (see internals)."""
OVERRIDE_VAR = "TEMPLATER_OVERRIDE"  # as dgr.templater.attributes.OVERRIDE_VAR (a test checks)
INPUTS = ("attributes", "templates")

Entry = tuple[str, int, bytes]
"""(path relative to DIR, st_mode or 0 when absent, content of a regular file)."""


class NotPrepared(Exception):  # noqa: N818 - a reason, not a failure
    """Why a run cannot be prepared; it is then rendered at every start."""


# --- at start --------------------------------------------------------------------------------


def run_prepared(
    directory: str, target_root: str, env: Mapping[str, str], override_var: str | None = None
) -> list[str] | None:
    """Write the outputs prepared for `directory` into target_root, return their paths —
    or None, writing nothing, when the run must be rendered now (see the module's doc).

    Errors while writing are those of a normal run (TemplateError).
    """
    outputs = prepared_outputs(directory, target_root, env, override_var)
    if outputs is None:
        return None
    from dgr.templater.output import write_outputs

    return write_outputs(_join(directory, "templates"), target_root, outputs)


def prepared_outputs(
    directory: str, target_root: str, env: Mapping[str, str], override_var: str | None = None
) -> list[Output] | None:
    """The outputs prepared for `directory`, when they are what rendering now would give;
    else None."""
    var = override_var or OVERRIDE_VAR
    if any(env.get(name, "").strip() for name in (var, f"{var}_BASE64")):
        return None  # (a superset of the variables dgr.templater.attributes.env_override reads)
    if not (_plain(directory) and _plain(target_root)):
        return None  # error messages name paths as pathlib prints them: leave it to it
    try:
        with open(_join(directory, FILE_NAME), "rb") as file:
            prepared = marshal.load(file)
        if (
            prepared["format"] != FORMAT
            or prepared["python"] != sys.version
            or prepared["identity"] != identity()
            or prepared["outputs"] is None
            or prepared["inputs"] != snapshot(directory)
        ):
            return None
        templates = _join(directory, "templates")
        from dgr.templater.output import Output

        return [Output(f"{templates}/{name}", *rest) for name, *rest in prepared["outputs"]]
    except Exception:  # noqa: BLE001 - missing, unreadable or foreign: render as usual
        return None


def identity() -> str | None:
    """The identity of the bundle this module runs from (None outside a bundle)."""
    try:
        with open(os.path.join(os.path.dirname(__file__), IDENTITY_FILE), encoding="utf-8") as file:
            return file.read().strip()
    except OSError:
        return None


def snapshot(directory: str) -> list[Entry] | None:
    """Every path under DIR/attributes and DIR/templates, sorted, with its st_mode and the
    content of regular files; None when one is a symlink or a special file (ConfigMap
    mounts are made of symlinks: they are read at every start)."""
    entries: list[Entry] = []
    for top in INPUTS:
        if not _scan(_join(directory, top), top, entries):
            return None
    return entries


def _scan(path: str, relative: str, entries: list[Entry]) -> bool:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        entries.append((relative, 0, b""))
        return True
    if stat.S_ISREG(mode):
        with open(path, "rb") as file:
            entries.append((relative, mode, file.read()))
        return True
    if not stat.S_ISDIR(mode):
        return False
    entries.append((relative, mode, b""))
    return all(_scan(f"{path}/{name}", f"{relative}/{name}", entries) for name in sorted(os.listdir(path)))


def _plain(path: str) -> bool:
    """Whether path is written as ``str(pathlib.Path(path))`` would write it."""
    parts = path.split("/")
    if path.startswith("/"):
        parts = parts[1:] if path != "/" else []
    return path != "" and not path.startswith("//") and all(part not in ("", ".") for part in parts)


def _join(directory: str, name: str) -> str:
    return f"/{name}" if directory == "/" else f"{directory}/{name}"


# --- at build time ---------------------------------------------------------------------------


def prepare(
    directory: str, *, identity: str | None = None, directory_at_start: str | None = None
) -> tuple[bytes, str | None]:
    """The content of the prepared-run file for `directory` (laid out as /dgr: attributes/
    and templates/), and None — or, when the run cannot be prepared, a file that says so
    (it must still shadow a dependency's) and the reason.

    The file holds two marshal objects: the prepared run (header, inputs, outputs), and
    what a start that renders can use (see :func:`use_compiled`). `identity` is that of the
    bundle that will run at start (see :func:`identity`); `directory_at_start` is the
    directory as the templater will be given it then (template file names are part of the
    compiled code); default: `directory`.
    """
    from pathlib import Path

    root = Path(directory)
    attributes = _Attributes(root / "attributes")
    run = {"format": FORMAT, "python": sys.version, "identity": identity, "inputs": None, "outputs": None}
    reason = None
    try:
        inputs = snapshot(directory)
        if inputs is None:
            raise NotPrepared("a symlink or special file under attributes/ or templates/")
        run["outputs"] = _render(root / "templates", attributes)
        run["inputs"] = inputs
    except NotPrepared as exc:
        reason = str(exc)
    compiled = _compile(root / "templates", _join(directory_at_start or directory, "templates"), attributes)
    return marshal.dumps(run, 2) + marshal.dumps(compiled, 2), reason


def write_prepared(
    directory: Path, destination: Path, *, identity: str | None = None, directory_at_start: str | None = None
) -> str | None:
    """Write the prepared run of `directory` (see :func:`prepare`) as destination/FILE_NAME,
    mode 0644; return why it could not be prepared, or None."""
    data, reason = prepare(str(directory), identity=identity, directory_at_start=directory_at_start)
    destination.mkdir(parents=True, exist_ok=True)
    target = destination / FILE_NAME
    target.write_bytes(data)
    target.chmod(0o644)
    return reason


class _Attributes:
    """The attributes as a start without override reads them, and what that takes: the
    files' texts, the merged tree, the resolved tree, the texts attribute templates render
    to; `error` when they do not load."""

    def __init__(self, folder: Path) -> None:
        from dgr.errors import DgrError
        from dgr.templater.attributes import (
            collect_attribute_files,
            load_attributes,
            resolve_attribute_templates,
        )

        self.texts: list[str] = []
        self.tree: dict[str, Any] = {}
        self.resolved: dict[str, Any] = {}
        self.error: DgrError | None = None
        try:
            files = collect_attribute_files(folder)
            self.tree = load_attributes(files, {}, resolve=False)
            self.texts += [path.read_text(encoding="utf-8") for path in files]
            self.resolved = resolve_attribute_templates(self.tree, rendered=self.texts)
        except DgrError as exc:
            self.error = exc


def _render(
    templates: Path, attributes: _Attributes
) -> list[tuple[str, str, str, int | None, int | None, int | None, str | None]]:
    """Render as a start without override would, but into memory; NotPrepared when that
    fails or depends on more than the files."""
    from jinja2 import FileSystemLoader

    from dgr.errors import DgrError
    from dgr.templater.attributes import attribute_templates
    from dgr.templater.render import make_environment
    from dgr.templater.templates import render_templates

    class RecordingLoader(FileSystemLoader):
        """Notes the source of every template loaded: rendered, included or imported."""

        def get_source(self, environment: Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
            source, filename, uptodate = super().get_source(environment, template)
            loaded[template] = source
            return source, filename, uptodate

    if attributes.error is not None:
        raise NotPrepared(f"rendering fails at build time: {attributes.error}")
    for source in attribute_templates(attributes.tree):
        _check_pure(make_environment().parse(source), "an attribute template")
    if not templates.is_dir():
        return []
    loaded: dict[str, str] = {}
    env = make_environment(templates)
    env.loader = RecordingLoader(str(templates))
    try:
        outputs, _ = render_templates(templates, attributes.resolved, env=env)
    except DgrError as exc:
        raise NotPrepared(f"rendering fails at build time: {exc}") from None
    for name, source in loaded.items():
        _check_pure(env.parse(source, name), name)
    prefix = f"{templates}/"
    return [
        (
            item.source.removeprefix(prefix),
            item.output,
            item.content,
            item.uid,
            item.gid,
            item.mode,
            item.check_cmd,
        )
        for item in outputs
    ]


def _compile(templates: Path, templates_at_start: str, attributes: _Attributes) -> dict[str, dict[str, Any]]:
    """What a start that renders can take from the build (see render.Precompiled): the code
    of every file under templates/ that compiles, by loader name, for the file name the
    loader will give it at start; the code of every attribute template; the options of
    every valid ``.cfg``; the YAML documents the build parsed (attribute files, rendered
    attribute templates), when they hold plain data."""
    from dgr.templater.attributes import attribute_templates
    from dgr.templater.render import make_environment
    from dgr.templater.templates import read_options
    from dgr.templater.yamlio import parse_yaml

    env = make_environment(templates)
    files: dict[str, tuple[str, str, CodeType]] = {}
    options: dict[str, tuple[int | None, int | None, int | None, str | None]] = {}
    for path in sorted(templates.rglob("*")):
        name = path.relative_to(templates).as_posix()
        filename = f"{templates_at_start}/{name}"
        try:
            source = path.read_text(encoding="utf-8")
            if name.endswith(".cfg"):
                read = read_options(path)
                options[source] = (read.uid, read.gid, read.mode, read.check_cmd)
            files[name] = (filename, source, env.compile(source, name, filename))
        except Exception:  # noqa: BLE001 - a folder, not text, not valid: done at start, if needed
            continue
    strings: dict[str, CodeType] = {}
    for source in attribute_templates(attributes.tree):
        try:
            strings[source] = env.compile(source)
        except Exception:  # noqa: BLE001 - reported when rendered at start
            continue
    documents: dict[str, bytes] = {}
    for text in attributes.texts:
        try:
            value = parse_yaml(text)
            if not _shares_containers(value, set()):
                documents[text] = marshal.dumps(value, 2)
        except Exception:  # noqa: BLE001 - invalid, or not plain data: parsed at start
            continue
    return {"templates": files, "attribute_templates": strings, "options": options, "documents": documents}


def _shares_containers(value: object, seen: set[int]) -> bool:
    """Whether a dict or list appears twice in value (a YAML alias): marshal format 2 would
    make two of it."""
    if isinstance(value, (dict, list, set, tuple)):
        if id(value) in seen:
            return True
        seen.add(id(value))
        items = value.values() if isinstance(value, dict) else value
        return any(_shares_containers(item, seen) for item in items)
    return False


def use_compiled(directory: str) -> bool:
    """Have this process render with the code compiled for `directory` at build time, when
    its file was made for this templater; whether it was."""
    try:
        with open(_join(directory, FILE_NAME), "rb") as file:
            header = marshal.load(file)
            if (header["format"], header["python"], header["identity"]) != (FORMAT, sys.version, identity()):
                return False
            compiled = marshal.load(file)
    except Exception:  # noqa: BLE001 - missing or foreign: compile as usual
        return False
    from dgr.templater.render import PRECOMPILED
    from dgr.templater.yamlio import KNOWN_DOCUMENTS

    PRECOMPILED.files = dict(compiled["templates"])
    PRECOMPILED.strings = dict(compiled["attribute_templates"])
    PRECOMPILED.options = dict(compiled["options"])
    KNOWN_DOCUMENTS.clear()
    KNOWN_DOCUMENTS.update(compiled["documents"])
    return True


def _check_pure(template: nodes.Template, what: str) -> None:
    """NotPrepared when the template uses a start-time name, or reaches Python internals
    (a ``__dunder__`` attribute) through which it could read anything."""
    from jinja2 import nodes

    from dgr.templater.functions import START_TIME_NAMES

    for node in template.find_all((nodes.Name, nodes.Filter, nodes.Test, nodes.Getattr, nodes.Const)):
        if isinstance(node, (nodes.Name, nodes.Filter, nodes.Test)) and node.name in START_TIME_NAMES:
            raise NotPrepared(f"{what} uses {node.name}, which is read at start")
        text = node.attr if isinstance(node, nodes.Getattr) else getattr(node, "value", None)
        if isinstance(text, str) and text.startswith("__"):
            raise NotPrepared(f"{what} uses {text}")
