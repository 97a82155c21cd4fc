"""What goes from a project folder into its image, prepared on the host before it is copied.

A staged folder is laid out like the image (owned by root) and copied into the image rootfs
from inside the sandbox (see build.run_steps), so that symlinks already in the image
resolve inside the image. Paths of the project that lead outside it are refused.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from dgr import userns
from dgr.errors import BuildError

ATTRIBUTE_SUFFIXES = (".yml", ".yaml")


def has_scripts(directory: Path) -> bool:
    return directory.is_dir() and any(p.is_file() for p in directory.iterdir())


def inside_project(project: Path, rel: str) -> Path | None:
    """`project/rel` if it exists; a BuildError if it is a link that leaves the project."""
    path = project / rel
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
    from dgr.attributes import write_order_file

    for runlevel in ("prestart-early", "prestart-late"):
        src = inside_project(project, f"runlevels/{runlevel}")
        if src is not None:
            _copy_tree(src, stage / "dgr" / "runlevels" / runlevel)
    for name, folder in extra_attributes:
        _stage_attributes(folder, stage, name, order)
    attributes = inside_project(project, "attributes")
    if attributes is not None:
        _stage_attributes(attributes, stage, app, order)
    templates = inside_project(project, "templates")
    if templates is not None:
        _copy_tree(templates, stage / "dgr" / "templates")
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
            _copy_tree(src, stage / "dgr" / "runlevels" / runlevel)
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
        dest = stage / runlevel
        dest.mkdir(parents=True)
        for script in sorted(src.iterdir()):
            if script.name.startswith(".") or not script.is_file():
                continue
            inside_project(project, f"runlevels/{runlevel}/{script.name}")
            shutil.copyfile(script, dest / script.name)
            (dest / script.name).chmod(0o755)
            found = True
    if not found:
        return None
    userns.current().give_tree(stage)
    return stage


def _stage_attributes(folder: Path, stage: Path, name: str, order: list[str]) -> None:
    """Copy the attribute files of `folder` (flattened) to dgr/attributes/<name>/, in order."""
    dest = stage / "dgr" / "attributes" / name
    dest.mkdir(parents=True, exist_ok=True)
    for path in attribute_sources(folder):
        shutil.copyfile(path, dest / path.name)
        order.append(f"{name}/{path.name}")


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith("..") for part in path.relative_to(root).parts)


def _copy_tree(src: Path, dest: Path) -> None:
    shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True)
