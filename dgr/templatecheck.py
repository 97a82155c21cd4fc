"""The `templates` check of an image: its templates rendered on the host as its prestart
would, with the default attributes and then with each `tests/overrides/*.json`; an error
names the project or dependency file it comes from."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from dgr.errors import DgrError
from dgr.images import BuildResult
from dgr.templater import run as render
from dgr.testimage import app_test_environment


def _merge_layers(layers: Sequence[Path], rel: str, dest: Path) -> None:
    """Copy `rel` of every layer (bottom first, upper wins) into `dest` (no whiteouts)."""

    def ignore(directory: str, names: list[str]) -> list[str]:
        skipped = []
        for name in names:
            path = os.path.join(directory, name)
            if not (os.path.islink(path) or os.path.isdir(path) or os.path.isfile(path)):
                skipped.append(name)  # overlay whiteouts (character devices)
        return skipped

    dest.mkdir(parents=True, exist_ok=True)
    for layer in layers:
        source = layer / rel
        if source.is_dir() and not source.is_symlink():
            shutil.copytree(source, dest, symlinks=True, ignore=ignore, dirs_exist_ok=True)


def _template_origin(path: str | None, merged: Path, result: BuildResult) -> str | None:
    """The project or dependency file that `path` (in the merged templates copy) came from."""
    if path is None or not Path(path).is_relative_to(merged):
        return path
    rel = Path(path).relative_to(merged)
    own = result.manifest.project / "templates" / rel
    if own.exists():
        return str(own)
    for layer in reversed(result.layers):
        candidate = layer / "dgr" / "templates" / rel
        if candidate.exists():
            return str(candidate)
    return path


def override_files(project: Path) -> list[Path]:
    """The project's template overrides (tests/overrides/*.json), sorted by name."""
    folder = project / "tests" / "overrides"
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def check_templates(result: BuildResult, work: Path) -> list[str]:
    """Render the image's templates as its prestart would, on the host, into `work`.

    Once with the default attributes (those of the image and its dependencies, app and
    tester environment), then once per tests/overrides/*.json given as TEMPLATER_OVERRIDE.
    checkCmd is not run (it belongs inside the container). Returns what was rendered
    (`default`, then the override file names); raises TemplateError/AttributesError naming
    the override in the hint.
    """
    attributes = work / "attributes"
    templates = work / "templates"
    _merge_layers(result.layers, "dgr/attributes", attributes)
    _merge_layers(result.layers, "dgr/templates", templates)
    env = app_test_environment(result.manifest)
    env.pop("TEMPLATER_OVERRIDE", None)
    env.pop("TEMPLATER_OVERRIDE_BASE64", None)
    variants: list[tuple[str, str | None]] = [("default", None)]
    variants += [(f.name, f.read_text(encoding="utf-8")) for f in override_files(result.manifest.project)]
    rendered = []
    for name, override in variants:
        out = work / "rendered" / name
        out.mkdir(parents=True)
        variant_env = dict(env)
        if override is not None:
            variant_env["TEMPLATER_OVERRIDE"] = override
        try:
            render(
                attributes, templates, out, variant_env, override_var="TEMPLATER_OVERRIDE", run_checks=False
            )
        except DgrError as exc:
            if override is not None:
                hint = f"with the override tests/overrides/{name}"
                exc.hint = f"{hint}; {exc.hint}" if exc.hint else hint
            exc.path = _template_origin(exc.path, templates, result)
            raise
        rendered.append(name)
    return rendered
