"""What goes from a project folder into its image, prepared on the host before it is copied.

A staged folder is laid out like the image (owned by root) and copied into the image rootfs
from inside the sandbox (see build.run_steps), so that symlinks already in the image
resolve inside the image. No symlink of the project is followed out of it: a link in
`attributes/`, `templates/` or `runlevels/` that stays in the project is staged as the
file or folder it points to, one that leads out of it (or nowhere) is an error naming the
link. (`files/` is copied inside the sandbox, where links resolve in the image: kept as
links.)

:func:`check_inputs` reads what the image's start will read — attribute files, templates,
their `.cfg` — so that a syntax error fails the build, not the container's start.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from dgr import userns
from dgr.errors import AttributesError, BuildError, TemplateError
from dgr.templater import make_environment
from dgr.templater.attributes import attribute_templates, read_attribute_file, write_order_file
from dgr.templater.templates import find_templates, read_options

ATTRIBUTE_SUFFIXES = (".yml", ".yaml")


class LinkOutError(BuildError):
    """A symlink of the project leads out of it."""


def has_scripts(directory: Path) -> bool:
    return directory.is_dir() and any(p.is_file() for p in directory.iterdir())


def inside_project(project: Path, rel: str) -> Path | None:
    """`project/rel` if it exists; a BuildError if it is a link that leaves the project."""
    path = project / rel
    if path.is_symlink():
        _check_link(path, project.resolve())
    if not path.exists():
        return None
    if not path.resolve().is_relative_to(project.resolve()):
        raise BuildError(
            f"{rel} points outside the project ({path.resolve()})",
            path=path,
            hint="copy the content into the project instead of linking it",
        )
    return path


def attribute_sources(folder: Path) -> list[Path]:
    """The attribute files of `folder` (recursively; `..*` ConfigMap folders skipped), sorted."""
    return [
        path
        for path in sorted(folder.rglob("*"))
        if path.suffix in ATTRIBUTE_SUFFIXES and path.is_file() and not _hidden(path, folder)
    ]


def refuse_links_out(root: Path, folder: Path) -> None:
    """LinkOutError for the first symlink under `folder` (or `folder` itself) that leads
    out of `root`, to nothing, or into a folder that holds it (a loop); links that stay
    inside are fine (they are followed)."""
    real_root = root.resolve()
    _check_link(folder, real_root)
    if folder.is_dir():
        _check_folder(folder, real_root, (folder.resolve(),))


def _check_folder(folder: Path, real_root: Path, above: tuple[Path, ...]) -> None:
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        path = Path(entry.path)
        _check_link(path, real_root)
        if not entry.is_dir():  # follows links, checked above
            continue
        real = path.resolve()
        if real in above:
            raise LinkOutError(
                "a symlink to a folder that holds it (a loop)",
                path=path,
                hint="remove the link",
            )
        _check_folder(path, real_root, (*above, real))


def _check_link(path: Path, real_root: Path) -> None:
    if not path.is_symlink():
        return
    target = os.readlink(path)
    try:
        resolved = path.resolve()
    except (RuntimeError, OSError):  # a loop of links
        raise LinkOutError("a symlink loop", path=path, hint="fix or remove the link") from None
    if not resolved.is_relative_to(real_root):
        raise LinkOutError(
            f"a symlink to {target!r}, outside the project (not followed)",
            path=path,
            hint="copy the file into the project instead of linking to it",
        )
    if not resolved.exists():
        raise LinkOutError(
            f"a symlink to {target!r}, which does not exist", path=path, hint="fix or remove the link"
        )


def check_inputs(project: Path, extra_attributes: Sequence[tuple[str, Path]] = ()) -> None:
    """Refuse links out of the project under `attributes/`, `templates/` and `runlevels/`,
    and read what a start of the image will read, so that errors fail the build: every
    attribute file (YAML, a map with `default:`/`override:` maps, the syntax of attribute
    templates), every template and partial (Jinja2 syntax) and every template `.cfg` (keys,
    uid, gid, mode, checkCmd). Errors name the file and, when known, the line. Rendering
    itself waits for the start: attributes may still come from prestart scripts or overrides.
    """
    folders = [(folder.parent, folder) for _, folder in extra_attributes]
    folders += [(project, project / name) for name in ("attributes", "templates", "runlevels")]
    for root, folder in folders:
        if os.path.lexists(folder):
            refuse_links_out(root, folder)
        if folder.name == "attributes" and folder.is_dir():
            for path in attribute_sources(folder):
                check_attribute_file(path)
    if (project / "templates").is_dir():
        check_templates(project / "templates")


def check_attribute_file(path: Path) -> None:
    """An AttributesError naming `path` (and the line) when it would not load at start."""

    sections = read_attribute_file(path)
    sources = [source for section in sections if section for source in attribute_templates(section)]
    if not sources:
        return
    from jinja2 import TemplateSyntaxError

    env = make_environment()
    for source in sources:
        try:
            env.parse(source)
        except TemplateSyntaxError as exc:
            raise AttributesError(
                f"template syntax error in the attribute value {source!r}: {exc.message}", path=path
            ) from None


def check_templates(templates: Path) -> None:
    """A TemplateError naming the file and line of the first template, partial or `.cfg` of
    `templates` that would fail at start whatever the attributes."""
    from jinja2 import TemplateSyntaxError

    found = find_templates(templates)
    env = make_environment(templates)
    for template in found:
        if template.cfg is not None:
            read_options(template.cfg)
    names = {t.source for t in found} | {p for p in templates.rglob("*.partial") if p.is_file()}
    for path in sorted(names):
        try:
            env.parse(path.read_text(encoding="utf-8"), path.relative_to(templates).as_posix(), str(path))
        except TemplateSyntaxError as exc:
            raise TemplateError(
                f"template syntax error: {exc.message}", path=exc.filename or path, line=exc.lineno
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise TemplateError(f"cannot read template: {exc}", path=path) from None


def stage_project(
    project: Path,
    stage: Path,
    app: str,
    order: list[str],
    extra_attributes: Sequence[tuple[str, Path]] = (),
) -> Path:
    """Stage the project's prestart runlevels, attributes and templates into `stage`.

    `order` lists the attribute files below the image (its dependencies'); the image's own
    (and `extra_attributes`, which rank between the dependencies' and the image's) are
    appended and the result is written as the order file. `files/` is not staged: it can
    be large, and is copied from the project directly.
    """

    for runlevel in ("prestart-early", "prestart-late"):
        src = inside_project(project, f"runlevels/{runlevel}")
        if src is not None:
            _copy_tree(project, src, stage / "dgr" / "runlevels" / runlevel)
    for name, folder in extra_attributes:
        _stage_attributes(folder.parent, folder, stage, name, order)
    attributes = inside_project(project, "attributes")
    if attributes is not None:
        _stage_attributes(project, attributes, stage, app, order)
    templates = inside_project(project, "templates")
    if templates is not None:
        _copy_tree(project, templates, stage / "dgr" / "templates")
    (stage / "dgr" / "attributes").mkdir(parents=True, exist_ok=True)
    write_order_file(stage / "dgr" / "attributes", order)
    userns.current().give_tree(stage)  # the image's root owns them, whoever owns the project
    return stage


def stage_inherit_runlevels(project: Path, stage: Path) -> Path | None:
    """Stage the project's inherit-build-* runlevels (stored in the image for dependents)."""
    found = False
    for runlevel in ("inherit-build-early", "inherit-build-late"):
        src = inside_project(project, f"runlevels/{runlevel}")
        if src is not None and has_scripts(src):
            _copy_tree(project, src, stage / "dgr" / "runlevels" / runlevel)
            found = True
    if not found:
        return None
    userns.current().give_tree(stage)  # the image's root owns them, whoever owns the project
    return stage


BUILD_RUNLEVELS = ("builder", "build", "build-late")


def stage_build_runlevels(project: Path, stage: Path) -> Path | None:
    """Stage the scripts of the `builder`, `build` and `build-late` runlevels, executable.

    The sandboxes see them at `$ACI_HOME/runlevels/` (read-only, over the project's): their
    root cannot chmod the project's files, and needs no right on them beyond reading.
    """
    found = False
    for runlevel in BUILD_RUNLEVELS:
        src = inside_project(project, f"runlevels/{runlevel}")
        if src is None or not src.is_dir():
            continue
        refuse_links_out(project, src)
        dest = stage / runlevel
        dest.mkdir(parents=True)
        for script in sorted(src.iterdir()):
            if script.name.startswith(".") or not script.is_file():
                continue
            shutil.copyfile(script, dest / script.name)
            (dest / script.name).chmod(0o755)
            found = True
    if not found:
        return None
    userns.current().give_tree(stage)
    return stage


def _stage_attributes(root: Path, folder: Path, stage: Path, name: str, order: list[str]) -> None:
    """Copy the attribute files of `folder` (flattened) to dgr/attributes/<name>/, in order
    (no link followed out of `root`)."""
    refuse_links_out(root, folder)
    dest = stage / "dgr" / "attributes" / name
    dest.mkdir(parents=True, exist_ok=True)
    for path in attribute_sources(folder):
        shutil.copyfile(path, dest / path.name)
        order.append(f"{name}/{path.name}")


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith("..") for part in path.relative_to(root).parts)


def _copy_tree(root: Path, src: Path, dest: Path) -> None:
    """Copy `src` to `dest`, links that stay in `root` as what they point to (see the module)."""
    refuse_links_out(root, src)
    shutil.copytree(src, dest, symlinks=False, dirs_exist_ok=True)
